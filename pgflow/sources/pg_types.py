"""The Postgres type a column is recorded as where its values leave Postgres (Delta).

Written into each Delta field's metadata under PG_TYPE_KEY, so that a sync back into Postgres
creates the column with this exact type. It is the type a faithful replica can declare in
any database: built-in types as format_type() spells them (modifiers kept, e.g.
numeric(12,2), character varying(20), timestamp(3) with time zone, integer[]); domains as
their base type; enums and other user-defined types (and arrays of them) as text / text[],
since the target database need not have them.
"""

from __future__ import annotations

import re

from pgflow.sources.catalog import FIRST_USER_OID, Column

PG_TYPE_KEY = "pgflow.pg_type"
# format_type() output of built-in types: one word, or one of the few two-word names, with
# digit modifiers, "with(out) time zone", interval fields and [] suffixes. The metadata of a
# Delta table is input: only this shape is ever put into DDL (never "text primary key").
_FIELD = r"(year|month|day|hour|minute|second)"
_BUILT_IN_SHAPE = re.compile(
    r"^(double precision|character varying|bit varying|[a-z][a-z0-9_]*)"
    r"(\(\d+(,\d+)?\))?"
    rf"( {_FIELD}( to {_FIELD})?(\(\d+\))?)?"
    r"( with(out)? time zone)?"
    r"(\[\])*$"
)


def recorded_type(column: Column) -> str:
    """The built-in Postgres type `column`'s values are recorded as (see the module doc)."""
    if column.element_oid:
        if column.element_kind == "e" or column.element_oid >= FIRST_USER_OID:
            return "text[]"
        if column.base_type_oid < FIRST_USER_OID:
            return column.base_type_sql  # keeps the element's modifier: numeric(10,2)[]
        return f"{column.element_type_sql}[]"
    if column.kind == "e" or column.base_type_oid >= FIRST_USER_OID:
        return "text"
    return column.base_type_sql


def is_built_in_shape(type_sql: str) -> bool:
    """True when `type_sql` reads as a built-in type's format_type() spelling (safe in DDL)."""
    return len(type_sql) <= 100 and _BUILT_IN_SHAPE.match(type_sql) is not None
