"""Shared set-up of the update, delete and partial-upsert tests: hostile names on both sides
(spaces, capitals, unicode), a composite key of a nullable text, a numeric whose scale differs
between source and target, and a timestamptz written in another zone at each end."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres.state import read_position, read_target_rows
from pgflow.sources.base import Position, TableSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import execute, fetch

SOURCE = TableName("public", "Preise Ünits")
TARGET = TableName("Landing Zone", "Preise Ünits")
KEY = ("Région", "Réf", "Seit")
PIPELINE = "preise"

# The source: keys 1-6 (key 6 is not in the target); the numeric key written as 1.00, the
# instant in +02:00; key 5's row equals the target's (matched, nothing to change).
SOURCE_DDL = """
SET TIME ZONE 'Europe/Berlin';
CREATE TABLE public."Preise Ünits" (
    "Région" text, "Réf" numeric NOT NULL, "Seit" timestamptz NOT NULL,
    "Menge" integer, "Preis €" numeric(10,2), "Geändert" timestamptz NOT NULL
);
INSERT INTO public."Preise Ünits" VALUES
    ('eu', 1.00, '2024-03-01 14:00+02', 10, 1.50, '2024-05-01 00:00+00'),
    (NULL, 2.00, '2024-03-01 14:00+02', 20, 2.50, '2024-05-01 00:00+00'),
    ('us', 3.000, '2024-03-02 00:30+02', 30, 3.50, '2024-05-01 00:00+00'),
    ('us', 4, '2024-03-02 00:30+02', 40, 4.50, '2024-05-01 00:00+00'),
    ('ap', 5, '2024-03-03 00:00+00', 50, 5.00, '2024-05-01 00:00+00'),
    ('ap', 6, '2024-03-03 00:00+00', 60, 6.00, '2024-05-01 00:00+00');
"""

# The target: keys 1-5 (numerics at scale 1, instants in UTC) plus key 7 the source lacks,
# and a target-only column (with a default: a local one) that no load may touch.
TARGET_DDL = """
SET TIME ZONE 'UTC';
CREATE SCHEMA "Landing Zone";
CREATE TABLE "Landing Zone"."Preise Ünits" (
    "Région" text, "Réf" numeric NOT NULL, "Seit" timestamptz NOT NULL,
    "Menge" integer, "Preis €" numeric(10,2), "Geändert" timestamptz NOT NULL,
    "Notiz" text DEFAULT '-',  -- local: a default, so no load calls it dropped
    UNIQUE NULLS NOT DISTINCT ("Région", "Réf", "Seit")
);
INSERT INTO "Landing Zone"."Preise Ünits" VALUES
    ('eu', 1.0, '2024-03-01 12:00+00', 1, 0.10, '2024-01-01 00:00+00', 'n1'),
    (NULL, 2.0, '2024-03-01 12:00+00', 2, 0.20, '2024-01-01 00:00+00', 'n2'),
    ('us', 3.0, '2024-03-01 22:30+00', 3, 0.30, '2024-01-01 00:00+00', 'n3'),
    ('us', 4.0, '2024-03-01 22:30+00', 4, 0.40, '2024-01-01 00:00+00', 'n4'),
    ('ap', 5, '2024-03-03 00:00+00', 50, 5.00, '2024-05-01 00:00+00', 'n5'),
    ('ap', 7, '2024-03-03 00:00+00', 70, 7.00, '2024-01-01 00:00+00', 'n7');
"""

TARGET_SQL = '"Landing Zone"."Preise Ünits"'


def setup(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, SOURCE_DDL)
    execute(sink_uri, TARGET_DDL)


def load(
    source_uri: str,
    sink_uri: str,
    strategy: StrategySpec,
    make_source: Callable[[psycopg.Connection], TableSource] | None = None,
    *,
    include_columns: Sequence[str] | None = None,
    reset: bool = False,
) -> LoadResult:
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        source = (
            make_source(src)
            if make_source
            else PostgresTableSource(src, SOURCE, include_columns=include_columns)
        )
        return load_table(dst, source, TARGET, strategy, pipeline=PIPELINE, reset=reset)


def target_rows(sink_uri: str) -> list[tuple[object, ...]]:
    """Every target row as text, in UTC, ordered by the numeric key."""
    query = (
        'SELECT "Région", "Réf"::text, "Seit"::text, "Menge", "Preis €"::text, "Notiz"'
        f' FROM {TARGET_SQL} ORDER BY "Réf"'
    )
    with psycopg.connect(sink_uri, options="-c TimeZone=UTC") as conn:
        return conn.execute(query).fetchall()


def xmins(sink_uri: str) -> dict[str, str]:
    return dict(fetch(sink_uri, f'SELECT "Réf"::int::text, xmin::text FROM {TARGET_SQL}'))


def ledger(sink_uri: str) -> int | None:
    with psycopg.connect(sink_uri) as conn:
        return read_target_rows(conn, TARGET)


def position(sink_uri: str) -> Position | None:
    with psycopg.connect(sink_uri) as conn:
        return read_position(conn, TARGET)


def count(sink_uri: str) -> int:
    return int(fetch(sink_uri, f"SELECT count(*) FROM {TARGET_SQL}")[0][0])
