"""The cache of the source schemas a spec file's wildcards expand against.

`<spec dir>/<spec stem>.tables.json`, next to the spec, so that loading the code location
needs no source connection and gives every process (code server, run workers, daemon) the
same assets. `pgflow specs refresh` rewrites it; a code location started without it lists
the source once and writes it. It is plain, sorted JSON, one table per line, so that a
refresh reads as a diff (tables added, dropped) when the folder is under version control.

A table gone from the source stays in the cache with the time the refresh found it gone:
its asset stays and reports the drop, and its warehouse copy is never silently retired.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pgflow.config.cache_files import read_entries, replace_file
from pgflow.config.model import RELATION_KINDS
from pgflow.config.wildcards import ListedTable, SchemaListing

FORMAT = "pgflow.tables/1"


class CacheError(ValueError):
    """The cache file cannot be read (not JSON, another format): refresh it."""


def cache_path(spec_file: Path) -> Path:
    return spec_file.with_name(f"{spec_file.stem}.tables.json")


def read_cache(spec_file: Path) -> dict[tuple[str, str], SchemaListing]:
    """The listings cached for `spec_file`, by (connection id, schema); {} when none."""
    path = cache_path(spec_file)

    def error(reason: str) -> CacheError:
        return CacheError(
            f"{path} is not a pgflow table cache ({reason}); delete it and run `pgflow specs "
            "refresh`"
        )

    listings = read_entries(path, FORMAT, "listings", _listing, error) or []
    return {listing.cache_key: listing for listing in listings}


def write_cache(spec_file: Path, listings: Iterable[SchemaListing]) -> Path:
    """Replace the cache of `spec_file` atomically (a reader sees the old or the new file)."""
    ordered = sorted(listings, key=lambda listing: listing.cache_key)
    return replace_file(cache_path(spec_file), _render(ordered))


def refreshed(old: SchemaListing | None, new: SchemaListing) -> SchemaListing:
    """`new`, plus the tables `old` had that the source no longer has, marked dropped."""
    if old is None:
        return new
    present = {table.name for table in new.tables}
    gone = [
        table if table.dropped_at else _dropped(table, new.listed_at)
        for table in old.tables
        if table.name not in present
    ]
    tables = sorted([*new.tables, *gone], key=lambda table: table.name)
    return SchemaListing(new.connection_id, new.schema, new.exists, tuple(tables), new.listed_at)


def _dropped(table: ListedTable, when: str) -> ListedTable:
    return ListedTable(table.name, table.kind, table.key, table.readable, when)


def _render(listings: list[SchemaListing]) -> str:
    """Sorted JSON, one table per line."""
    blocks = []
    for listing in listings:
        tables = ",\n".join(
            "    " + json.dumps(_table_entry(t), ensure_ascii=False, sort_keys=True)
            for t in sorted(listing.tables, key=lambda table: table.name)
        )
        head = {
            "connection_id": listing.connection_id,
            "schema": listing.schema,
            "exists": listing.exists,
            "listed_at": listing.listed_at,
        }
        head_text = json.dumps(head, ensure_ascii=False, sort_keys=True)[:-1]
        body = f'"tables": [\n{tables}\n  ]' if tables else '"tables": []'
        blocks.append(f"  {head_text}, {body}}}")
    joined = ",\n".join(blocks)
    return f'{{"format": "{FORMAT}", "listings": [\n{joined}\n]}}\n'


def _table_entry(table: ListedTable) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": table.name, "kind": table.kind, "key": list(table.key)}
    if not table.readable:
        entry["readable"] = False
    if table.dropped_at:
        entry["dropped_at"] = table.dropped_at
    return entry


def _listing(entry: dict[str, Any]) -> SchemaListing:
    tables = tuple(_table(t) for t in entry["tables"])
    return SchemaListing(
        str(entry["connection_id"]),
        str(entry["schema"]),
        bool(entry["exists"]),
        tables,
        str(entry["listed_at"]),
    )


def _table(entry: dict[str, Any]) -> ListedTable:
    kind = entry["kind"]
    if kind not in RELATION_KINDS:
        raise ValueError(f"table {entry['name']!r} has kind {kind!r}")
    return ListedTable(
        name=str(entry["name"]),
        kind=kind,
        key=tuple(str(column) for column in entry["key"]),
        readable=bool(entry.get("readable", True)),
        dropped_at=entry.get("dropped_at"),
    )
