"""The COPY format of a load, chosen once from the column types: the one home of that rule.

Binary COPY (raw send/receive bytes, no per-row parsing) when every column's type is the same
built-in type (or enum) on both ends and Postgres' own binary send/receive round-trips every
value of it; otherwise text COPY, whose output/input functions round-trip every value (with
the settings `set_portable_text_format` pins on both ends).

Binary send/receive does not round-trip (PostgreSQL 15, found by probing every built-in type's
edge values; see pgflow_tests/sinks/postgres/test_copy_format_types.py):
- tsquery: the empty query ('', or one of stop words only) is sent as 0 items, which
  tsqueryrecv refuses ("malformed tsquery: operand not found");
- int2vector, oidvector: an empty vector is sent as a 0-dimension array, which their receive
  functions refuse ("invalid int2vector data");
- aclitem (and gtsvector): no binary send/receive function at all.
Arrays of these fail alike. Every other built-in type survives binary, edge values included
(empty tsvector, empty arrays, non-default bounds, several dimensions, NaN and infinities).
"""

from __future__ import annotations

from pgflow.sources.base import CopyFormat
from pgflow.sources.catalog import Column, TableInfo

# Built-in type OIDs (fixed in every database) that must travel as text.
TEXT_ONLY_TYPES: dict[int, str] = {
    22: "int2vector",
    30: "oidvector",
    1033: "aclitem",
    3615: "tsquery",
    3642: "gtsvector",
}


def needs_text(column: Column) -> bool:
    """True when a value of `column` may not survive binary send/receive (arrays included)."""
    return column.base_type_oid in TEXT_ONLY_TYPES or column.element_oid in TEXT_ONLY_TYPES


def _binary_compatible(source: TableInfo, target: TableInfo) -> bool:
    """True when raw binary COPY bytes from the source are valid input for the target."""
    for column in source.columns:
        target_column = target.column(column.name)
        if target_column is None or column.wire_type is None or needs_text(column):
            return False
        if column.wire_type != target_column.wire_type:
            return False
        if column.base_type_sql != target_column.base_type_sql and column.kind != "e":
            return False  # same OID, other typmod (e.g. numeric(12,2) vs numeric(10,2))
    return True


def choose(source: TableInfo, target: TableInfo) -> CopyFormat:
    """The format of every COPY of one load (all its streams), decided from the catalog."""
    return "binary" if _binary_compatible(source, target) else "text"
