"""A failed first load leaves no folder behind, and a folder such a load left is reused.

A first load that fails before its commit leaves what the writer made on the way: the table's
folder, data files no commit references, perhaps a `_delta_log` with no complete commit in it
(a temporary file, an empty commit file from a process killed mid-write, a checkpoint hint).
Every later run would trip over it (delta-rs: "No files in log segment", "No table metadata
or protocol found"). So, for local paths:

- the folder a failed first load created is removed again, unless a commit landed in it;
- before a first load, a `_delta_log` that holds no complete commit is cleared, so the load
  creates the table as if the folder were new (data files no commit references are left:
  they are not part of any table, and VACUUM removes them).

A folder with any non-empty commit file is never touched: that is a table, readable or not,
and its errors are the user's to see. Object stores are left as they are (a failed write
there leaves only unreferenced data files).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LOG_DIR = "_delta_log"


def local_folder(path: str, storage_options: dict[str, str] | None) -> Path | None:
    """The local folder of `path`, or None for an object-store URI."""
    if path.startswith("file://"):
        return Path(path.removeprefix("file://"))
    if "://" in path or storage_options:
        return None
    return Path(path)


def has_commit(folder: Path) -> bool:
    """Whether `_delta_log` holds a commit (or checkpoint) with content: then it is a table."""
    log_dir = folder / LOG_DIR
    if not log_dir.is_dir():
        return False
    first = log_dir / f"{0:020}.json"  # two stats, not a listing, for every table that has it
    if (first.is_file() and first.stat().st_size > 0) or (log_dir / "_last_checkpoint").is_file():
        return True
    for entry in log_dir.iterdir():
        name = entry.name
        committed = name.endswith(".json") and name[:20].isdigit()
        if (committed or ".checkpoint" in name) and entry.stat().st_size > 0:
            return True
    return False


def clear_uncommitted_log(folder: Path) -> None:
    """Remove a `_delta_log` a failed first load left without a commit in it."""
    log_dir = folder / LOG_DIR
    if log_dir.is_dir() and not has_commit(folder):
        shutil.rmtree(log_dir)
        log.warning("%s: removed the transaction log a failed first load left (no commit)", folder)


@contextmanager
def first_write(path: str, storage_options: dict[str, str] | None) -> Iterator[None]:
    """Around a load that creates the table at `path`: start from a clean folder, and remove
    the folder again when the load fails and had created it."""
    folder = local_folder(path, storage_options)
    if folder is None or has_commit(folder):  # an object store, or a table already
        yield
        return
    existed = folder.exists()
    clear_uncommitted_log(folder)
    try:
        yield
    except BaseException:
        if folder.exists() and not has_commit(folder):
            if existed:
                clear_uncommitted_log(folder)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        raise
