"""Small SQL helpers for tests: run a statement, fetch rows, render a table as text."""

from __future__ import annotations

import psycopg


def execute(uri: str, statement: str, params: object = None) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(statement, params)


def fetch(uri: str, query: str, params: object = None) -> list[tuple]:
    with psycopg.connect(uri) as conn:
        return conn.execute(query, params).fetchall()


def table_text(uri: str, table: str, order_by: str = "1") -> list[str]:
    """Every row as Postgres renders it, in fixed settings: equal text means equal values."""
    with psycopg.connect(
        uri, options="-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3"
    ) as conn:
        return [r[0] for r in conn.execute(f"SELECT t::text FROM {table} t ORDER BY {order_by}")]


def drop_slots(uri: str, *names: str) -> None:
    """Drop the named replication slots that exist: a slot left behind pins WAL."""
    execute(
        uri,
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
        " WHERE slot_name = ANY(%s)",
        (list(names),),
    )


def slot_name_for(uri: str) -> str:
    """A slot name unique in the cluster (tests share it), from the test's own database."""
    return "pgflow_" + psycopg.conninfo.conninfo_to_dict(uri)["dbname"]
