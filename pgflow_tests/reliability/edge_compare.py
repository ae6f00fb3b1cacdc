"""Comparing a load's target with its source, for the data edge-case tests: rows as Postgres
renders them in fixed settings (equal text means equal values), and which columns differ when
they do not. The data itself: edge_data.py; running the loads: edge_runs.py.
"""

from __future__ import annotations

import psycopg


def rows_text(uri: str, query: str) -> list[tuple]:
    """`query`'s rows in fixed settings (UTC, ISO, exact floats, hex bytea)."""
    with psycopg.connect(
        uri,
        options="-c TimeZone=UTC -c DateStyle=ISO,YMD -c extra_float_digits=3"
        " -c IntervalStyle=postgres -c bytea_output=hex",
    ) as conn:
        return conn.execute(query).fetchall()


def table_rows(uri: str, table: str, order_by: str = "1") -> list[str]:
    return [r[0] for r in rows_text(uri, f"SELECT t::text FROM {table} t ORDER BY {order_by}")]


def assert_same_rows(source_uri: str, source: str, sink_uri: str, target: str) -> int:
    """Source and target hold the same rows, compared row by row; returns the row count."""
    want = table_rows(source_uri, source)
    have = table_rows(sink_uri, target)
    if want != have:
        raise AssertionError(
            f"{target} differs from {source} ({len(want)} vs {len(have)} rows): "
            + "; ".join(column_differences(source_uri, source, sink_uri, target)[:8])
        )
    return len(want)


def column_differences(source_uri: str, source: str, sink_uri: str, target: str) -> list[str]:
    """Each (id, column) whose text differs, with both values (cut to 120 characters)."""

    def cells(uri: str, table: str) -> dict[tuple, str | None]:
        names = [
            r[0]
            for r in rows_text(
                uri,
                "SELECT attname FROM pg_attribute WHERE attrelid = "
                f"'{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            )
        ]
        listed = ", ".join(f'"{n}"::text' for n in names)
        found = {}
        for row in rows_text(uri, f"SELECT {listed} FROM {table} ORDER BY 1"):
            for name, value in zip(names, row, strict=True):
                found[(row[0], name)] = value
        return found

    want, have = cells(source_uri, source), cells(sink_uri, target)
    found = []
    for key in sorted(set(want) | set(have), key=str):
        if want.get(key, "<missing>") != have.get(key, "<missing>"):
            w, h = str(want.get(key, "<missing>")), str(have.get(key, "<missing>"))
            found.append(f"id {key[0]} column {key[1]}: source {w[:120]!r}, target {h[:120]!r}")
    return found or ["the row texts differ, the JSON forms do not"]
