"""The JSON files pgflow keeps beside a spec (`.tables.json`, `.queries.json`): read with their
format checked, replaced atomically. One home for both caches' file handling."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def read_entries(
    path: Path,
    fmt: str,
    list_key: str,
    entry: Callable[[Any], T],
    error: Callable[[str], Exception],
) -> list[T] | None:
    """The entries under `list_key` of the cache at `path`, each made by `entry`; None when
    there is no file. A file of another format, or not JSON, raises `error(reason)`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        document = json.loads(text)
        if document.get("format") != fmt:
            raise ValueError(f"format {document.get('format')!r}, expected {fmt!r}")
        return [entry(item) for item in document[list_key]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise error(str(exc)) from exc


def render_lines(fmt: str, list_key: str, items: Iterable[dict[str, Any]]) -> str:
    """The file's text: plain sorted JSON, one entry per line, so a refresh reads as a diff."""
    lines = ",\n".join(
        "  " + json.dumps(item, ensure_ascii=False, sort_keys=True) for item in items
    )
    return f'{{"format": "{fmt}", "{list_key}": [\n{lines}\n]}}\n'


def replace_file(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (a reader sees the old or the new file)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
