"""Reading a target as comparable values: rows, relations, stored position (Postgres or Delta)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from deltalake import DeltaTable
from psycopg import sql

import pgflow.flows.delta_load as delta_load
from pgflow.config.model import TableName
from pgflow.sinks.delta.state import read_state
from pgflow_tests.reliability.kills.scenarios import PIPELINE, TARGET

PROBE_APP = "pgflow-kills-probe"
PINNED = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3"


def pg_snapshot(uri: str, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The sink's target as comparable values: row count and digest, user relations, position."""
    with psycopg.connect(uri, options=PINNED, application_name=PROBE_APP, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '20s'")
        relations = _relations(conn)
        staging, untagged = _staging_tables(conn)
        snapshot: dict[str, Any] = {
            "rows": None,
            "digest": None,
            "relations": relations,
            "position": None,
            "staging": staging,
            "untagged_staging": untagged,  # staging tables without the orphan mark
        }
        if str(TARGET) in relations:
            snapshot["rows"], snapshot["digest"] = _rows_digest(conn, exclude)
        if "_pgflow.pipeline_state" in relations:
            row = conn.execute(
                "SELECT kind, source, value, value_type, pipeline, updated_at::text"
                " FROM _pgflow.pipeline_state WHERE target_schema = %s AND target_table = %s",
                (TARGET.schema, TARGET.name),
            ).fetchone()
            snapshot["position"] = _normalized_position(row[:5] if row else None)
            snapshot["written"] = row[5] if row else None  # now() of the run that wrote it
    return snapshot


def _relations(conn: psycopg.Connection[Any]) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'i', 'I')"
            " AND n.nspname NOT IN ('information_schema', '_pgflow_staging')"
            " AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1"
        )
    ]


def _staging_tables(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """Staging tables, and those of them without the orphan mark."""
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE obj_description(c.oid, 'pg_class') IS NULL)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = '_pgflow_staging' AND c.relkind = 'r'"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def _rows_digest(conn: psycopg.Connection[Any], exclude: tuple[str, ...]) -> tuple[int, str]:
    """The target's row count and the md5 of its sorted row texts (without `exclude`)."""
    columns = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (str(TARGET),),
        )
        if r[0] not in exclude
    ]
    row_text = sql.SQL("ROW({})::text").format(
        sql.SQL(", ").join(sql.Identifier("t", c) for c in columns)
    )
    query = sql.SQL(
        "SELECT count(*), coalesce(md5(string_agg(r, E'\\n' ORDER BY r)), '')"
        " FROM (SELECT {} AS r FROM {} t) s"
    ).format(row_text, TARGET.identifier())
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0], row[1]


def _normalized_position(row: tuple[Any, ...] | None) -> list[Any] | None:
    if row is None:
        return None
    kind, source, value, value_type, pipeline = row
    if value_type == "delta_sync_v1":  # drop the id of the run that wrote it
        value = json.dumps({k: v for k, v in json.loads(value).items() if k != "run"})
    return [kind, source, value, value_type, pipeline]


def delta_snapshot(path: Path) -> dict[str, Any]:
    """A Delta target as comparable values: version, rows and digest, run and position."""
    if not DeltaTable.is_deltatable(str(path)):
        return {"version": None, "rows": None, "digest": None, "run": 0, "position": None}
    table = DeltaTable(str(path))
    frame = pl.read_delta(str(path), version=table.version())
    frame = frame.sort(sorted(frame.columns))
    digest = hashlib.md5(frame.select(sorted(frame.columns)).write_csv().encode()).hexdigest()
    state = read_state(table, PIPELINE)
    position = None if state.position is None else list(asdict(state.position).values())
    return {
        "version": table.version(),
        "rows": frame.height,
        "digest": digest,
        "run": state.run,
        "position": position,
    }


def uncommitted_files(target: Path, before: Path) -> int:
    """Data files in the Delta folder `target` that BEFORE (the folder `before`) lacks and no
    commit references."""
    on_disk = {str(p.relative_to(target)) for p in target.rglob("*.parquet")}
    before_files = {str(p.relative_to(before)) for p in before.rglob("*.parquet")}
    referenced: set[str] = set()
    if DeltaTable.is_deltatable(str(target)):
        referenced = set(delta_load.data_files(DeltaTable(str(target))))
    return len(on_disk - before_files - referenced)


def position_number(value: str) -> int:
    """A position value as a number: an xmin checkpoint, or an LSN ("16/B374D848")."""
    if "/" in value:
        high, low = value.split("/")
        return (int(high, 16) << 32) + int(low, 16)
    return int(value)


def id_qty_postgres(uri: str, table: TableName) -> set[tuple[int, int]]:
    query = sql.SQL("SELECT id, qty FROM {}").format(table.identifier())
    with psycopg.connect(uri, application_name=PROBE_APP) as conn:
        return {(int(a), int(b)) for a, b in conn.execute(query)}


def id_qty_delta(path: Path) -> set[tuple[int, int]]:
    frame = pl.read_delta(str(path)).select("id", "qty")
    return {(int(a), int(b)) for a, b in frame.iter_rows()}
