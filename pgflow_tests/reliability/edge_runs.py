"""Running loads of every source kind for the data edge-case tests (full, column cursor, xmin,
CDC; each session in its own TimeZone), and the figures line one test reports. The data:
edge_data.py; comparing targets: edge_compare.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcResult, CdcSettings, CdcTarget
from pgflow.flows.cdc.run import replicate
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow.sources.xmin import XminSource
from pgflow_tests.reliability.edge_data import SINK_SESSION_TZ, SOURCE_SESSION_TZ

# -- running loads ------------------------------------------------------------------------


@contextmanager
def session(uri: str, time_zone: str, **kwargs: Any) -> Iterator[psycopg.Connection]:
    with psycopg.connect(uri, options=f"-c TimeZone={time_zone}", **kwargs) as conn:
        yield conn


def load(
    source_uri: str,
    sink_uri: str,
    table: TableName,
    target: TableName,
    strategy: StrategySpec,
    make_source: Callable[[psycopg.Connection, TableName], PostgresTableSource] = (
        PostgresTableSource
    ),
    pipeline: str = "edge",
) -> LoadResult:
    """One load, the loader's sessions in time zones other than the servers'."""
    with (
        session(source_uri, SOURCE_SESSION_TZ) as src,
        session(sink_uri, SINK_SESSION_TZ, autocommit=True) as dst,
    ):
        return load_table(dst, make_source(src, table), target, strategy, pipeline=pipeline)


def cursor_source(column: str, **options: Any) -> Callable[..., PostgresTableSource]:
    return lambda conn, table: ColumnCursorSource(conn, table, column, **options)


def xmin_source(conn: psycopg.Connection, table: TableName) -> PostgresTableSource:
    return XminSource(conn, table)


def cdc_run(
    source_uri: str,
    sink_uri: str,
    slot: str,
    table: TableName,
    target: TableName,
    strategy: StrategySpec,
    **options: Any,
) -> CdcResult:
    @contextmanager
    def connect(**kwargs: Any) -> Iterator[psycopg.Connection]:
        with session(source_uri, SOURCE_SESSION_TZ, **kwargs) as conn:
            yield conn

    @contextmanager
    def connect_sink(**kwargs: Any) -> Iterator[psycopg.Connection]:
        with session(sink_uri, SINK_SESSION_TZ, **kwargs) as conn:
            yield conn

    target_options = {k: options.pop(k) for k in ("deleted_column", "on_truncate") if k in options}
    settings = CdcSettings(slot=slot, publication=slot, **options)
    return replicate(
        connect,
        connect_sink,
        table,
        CdcTarget(target, strategy, **target_options),
        settings,
        "edge",
    )


# -- figures ------------------------------------------------------------------------------


@dataclass
class Figures:
    """What one test proved: cases x paths, loads run, rows compared."""

    name: str
    cases: int = 0
    paths: list[str] = field(default_factory=list)
    loads: int = 0
    rows_compared: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        return (
            f"EDGE CASES [{self.name}]: {self.cases} cases x {len(self.paths)} paths"
            f" ({', '.join(self.paths)}) = {self.loads} loads, {self.rows_compared} rows"
            " compared, all equal"
        )

    def report(self) -> None:
        print(self.line())
        path = os.environ.get("PGFLOW_RELIABILITY_FIGURES")
        if path:
            record = {
                "suite": "data_edge_cases",
                "test": self.name,
                "cases": self.cases,
                "paths": self.paths,
                "loads": self.loads,
                "rows_compared": self.rows_compared,
                "seconds": round(time.monotonic() - self.started, 2),
            }
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
