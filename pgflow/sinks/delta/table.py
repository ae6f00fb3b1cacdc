"""The Delta table a load writes: opening it, its data files, and whether the read still fits it."""

from __future__ import annotations

import re

from deltalake import DeltaTable

from pgflow.config.model import StrategySpec
from pgflow.connections.delta_writes import write_storage_options
from pgflow.sinks.delta.first_write import LOG_DIR, local_folder
from pgflow.sources.arrow import ArrowRead

# Data files as writers name them (part-<n>-<uuid>...): what a failed first load may leave.
# A data file a failed first load left; on a local disk also while it was being written
# (object_store writes `<name>#<n>` and renames it once complete).
DATA_FILE = re.compile(r"^part-[^/]*\.parquet(#\d+)?$")
# Words in object-store errors that mean the credentials were refused; HTTP 403 only as a
# status on its own, not inside a port (127.0.0.1:40312), a bucket or a duration (1.403s).
REFUSED = ("forbidden", "invalidaccesskeyid", "signaturedoesnotmatch", "accessdenied")
REFUSED_STATUS = re.compile(r"(?<![\w.:/-])403(?![\w.:])")
SECRET_OPTIONS = ("secret", "token", "password", "key")
# Not delta-rs' own "Generic DeltaTable error" (a merge that cannot be planned, say): that is
# no store failure, and worth no retry.
STORE_ERROR = re.compile(r"Generic (?!DeltaTable )\w+ error|error sending request")


class SchemaChanged(ValueError):
    """The source's columns no longer fit the Delta table; nothing was written."""


class NotADeltaTable(ValueError):
    """The path holds files but no Delta table: pgflow does not write a table over them."""


class DeltaStorageError(RuntimeError):
    """The object store could not be reached or refused the request (secrets left out).

    `transient`: a network failure, worth a retry of the run (connections.errors); refused
    credentials are not.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def check_columns(
    table: DeltaTable, read: ArrowRead, strategy: StrategySpec, path: str, *, partial: bool = False
) -> None:
    """Columns the source gained are added unless on_schema_change is fail; none may go,
    unless the read is `partial` (update, delete: the table's other columns keep their values).

    Type changes are left to delta-rs, which refuses a batch that does not fit the table.
    """
    have = [field.name for field in table.schema().fields]
    gained = [name for name in read.schema.names() if name not in have]
    lost = [] if partial else [name for name in have if name not in read.schema]
    if gained and strategy.on_schema_change == "fail":
        raise SchemaChanged(
            f"the source has new column(s) {', '.join(gained)} that the Delta table at {path} "
            "lacks, and sink.strategy.on_schema_change is fail; nothing was written. Set it to "
            "add_columns, or run once with reset to rebuild the table"
        )
    if lost:
        raise SchemaChanged(
            f"the Delta table at {path} has column(s) {', '.join(lost)} that the source no "
            "longer has; nothing was written. Run once with reset to rebuild the table from "
            "the source"
        )


def open_table(path: str, storage_options: dict[str, str] | None = None) -> DeltaTable | None:
    """The Delta table at `path` opened for writing, or None when there is none yet.

    An s3:// table gets the options that keep its commits safe (write_storage_options).
    A local folder with other files in it is refused, not written over; object stores are
    not listed (pgflow has no listing client), only their Delta log is looked at.
    """
    options = write_storage_options(path, storage_options)
    try:
        if not DeltaTable.is_deltatable(path, options):
            check_no_foreign_files(path, storage_options)
            return None
        return DeltaTable(path, storage_options=options)
    except NotADeltaTable:
        raise
    except Exception as error:
        if is_storage_failure(error) or is_refused(error):
            raise storage_error(path, error, options) from None
        detail = scrub(str(error).splitlines()[0] if str(error) else "", options)
        raise NotADeltaTable(
            f"the Delta path {path} has a _delta_log that delta-rs cannot read as a table "
            f"({detail[:300]}); pgflow does not write over it. Point sink.path at a new or "
            "empty location, or repair or remove that _delta_log"
        ) from None


def check_no_foreign_files(path: str, storage_options: dict[str, str] | None) -> None:
    """Refuse a location that holds files no failed first load of pgflow leaves."""
    foreign = sorted(name for name in _listing(path, storage_options) if _foreign(name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise NotADeltaTable(
            f"the Delta path {path} exists and holds {len(foreign)} file(s) ({shown}) but no "
            "Delta table; pgflow does not write a table over other files. Point sink.path "
            "at a new or empty location, or move those files away"
        )


def _listing(path: str, storage_options: dict[str, str] | None) -> list[str]:
    """The files under `path`, relative to it (an object store that cannot be listed: none)."""
    folder = local_folder(path, storage_options)
    if folder is None:
        return _store_listing(path, storage_options)
    if not folder.is_dir():
        return []
    return [f.relative_to(folder).as_posix() for f in folder.rglob("*") if f.is_file()]


def _store_listing(path: str, storage_options: dict[str, str] | None) -> list[str]:
    root = path.rstrip("/")
    if any(char in root for char in "*?[]{}"):  # the listing would read it as a pattern
        return []
    try:
        # polars' path expansion is the one object-store listing pgflow has (no pyarrow, no
        # boto3); it is private and leaves out empty objects. Missing or failing: no check
        # (the write itself then reports an unreachable store).
        from polars.io._expand_paths import _expand_paths

        listed = _expand_paths(f"{root}/**/*", storage_options=storage_options).collect()
    except Exception:
        return []
    return [p[len(root) + 1 :] for p in listed.get_column("path").to_list() if p.startswith(root)]


def _foreign(name: str) -> bool:
    parts = name.split("/")
    return parts[0] != LOG_DIR and DATA_FILE.match(parts[-1]) is None


def is_storage_failure(error: BaseException) -> bool:
    """An object store's failure, as delta-rs reports it (an OSError, or object_store's
    "Generic <store> error" inside a DeltaError, e.g. a data file's upload)."""
    return isinstance(error, OSError) or STORE_ERROR.search(str(error)) is not None


def is_refused(error: BaseException) -> bool:
    text = str(error).lower()
    return any(word in text for word in REFUSED) or REFUSED_STATUS.search(text) is not None


def storage_error(
    path: str, error: BaseException, storage_options: dict[str, str] | None
) -> DeltaStorageError:
    """A clear error for an object store that failed, its detail without any secret."""
    detail = scrub(
        str(error).splitlines()[0] if str(error) else type(error).__name__, storage_options
    )
    if is_refused(error):
        return DeltaStorageError(
            f"the object store refused the credentials for the Delta table at {path} "
            f"({detail[:300]}). Check PGFLOW_DELTA_AWS_ACCESS_KEY_ID, "
            "PGFLOW_DELTA_AWS_SECRET_ACCESS_KEY (and PGFLOW_DELTA_AWS_SESSION_TOKEN, "
            "PGFLOW_DELTA_AWS_REGION, PGFLOW_DELTA_AWS_ENDPOINT_URL) for this bucket",
            transient=False,
        )
    return DeltaStorageError(
        f"the object store of the Delta table at {path} failed ({detail[:300]}). A Delta "
        "commit is one object: the table holds this load's commit whole or not at all, and "
        "the next run goes on from the position it holds. Check PGFLOW_DELTA_AWS_ENDPOINT_URL "
        "and the network, then run again",
        transient=True,
    )


def scrub(text: str, storage_options: dict[str, str] | None) -> str:
    """`text` with the value of every secret-like storage option replaced by ***."""
    for name, value in (storage_options or {}).items():
        if value and any(word in name.lower() for word in SECRET_OPTIONS) and "_id" not in name:
            text = text.replace(value, "***")
    return text


def data_files(table: DeltaTable | None) -> dict[str, int]:
    """The table's current data files and their sizes."""
    if table is None:
        return {}
    actions = table.get_add_actions(flatten=False)
    return dict(zip(actions["path"].to_pylist(), actions["size_bytes"].to_pylist(), strict=True))
