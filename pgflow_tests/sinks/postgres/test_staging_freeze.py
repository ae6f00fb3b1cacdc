"""COPY ... FREEZE: a table that a load creates or truncates in its own transaction gets its
rows written frozen, on pages already marked all-visible and all-frozen. Nothing has to come
back later to set hint bits or freeze them (ANALYZE, the first readers, VACUUM), which is
what a full refresh of a large table pays for otherwise.

Checked with the pg_visibility extension on the sink: its visibility map summary counts the
all-frozen pages of the target.
"""

from __future__ import annotations

import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load, table_text

SOURCE, TARGET = TableName("public", "events"), TableName("landing", "events")
ROWS = 5000


@pytest.fixture
def events(source_uri: str) -> str:
    execute(
        source_uri,
        "CREATE TABLE events (id bigint PRIMARY KEY, day date NOT NULL, body text);"
        " INSERT INTO events SELECT g, date '2026-01-01' + g % 3, repeat(md5(g::text), 3)"
        f" FROM generate_series(1, {ROWS}) g",
    )
    return source_uri


@pytest.fixture
def visibility(sink_uri: str) -> str:
    execute(sink_uri, "CREATE EXTENSION IF NOT EXISTS pg_visibility")
    return sink_uri


def frozen_pages(sink_uri: str, table: str = "landing.events") -> tuple[int, int]:
    """(all-frozen pages, pages) of `table`."""
    return fetch(
        sink_uri,
        "SELECT (pg_visibility_map_summary(%s::regclass)).all_frozen,"
        " pg_relation_size(%s::regclass) / current_setting('block_size')::int",
        (table, table),
    )[0]


def copy_statement(statements: list[str]) -> str:
    return next(s for s in statements if s.startswith("COPY "))


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(mode="full_refresh", method="truncate_insert"),
        StrategySpec(mode="full_refresh", method="exchange"),
    ],
    ids=["truncate_insert", "exchange"],
)
def test_a_full_refresh_writes_every_page_frozen(
    events: str, visibility: str, strategy: StrategySpec
) -> None:
    first = run_load(events, visibility, SOURCE, TARGET, strategy)
    assert first.created_target and "FREEZE" in copy_statement(first.statements)
    execute(events, "UPDATE events SET body = 'changed' WHERE id % 10 = 0")

    second = run_load(events, visibility, SOURCE, TARGET, strategy)

    assert "FREEZE" in copy_statement(second.statements)
    frozen, pages = frozen_pages(visibility)
    assert pages > 10 and frozen == pages
    assert table_text(visibility, "landing.events") == table_text(events, "public.events")


def test_a_staging_table_is_filled_frozen(events: str, visibility: str) -> None:
    merge = StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="upsert")
    run_load(events, visibility, SOURCE, TARGET, merge)
    execute(events, "UPDATE events SET body = 'changed' WHERE id % 10 = 0")

    result = run_load(events, visibility, SOURCE, TARGET, merge)

    staged = copy_statement(result.statements)
    assert '"_pgflow_staging"' in staged and "FREEZE" in staged
    assert table_text(visibility, "landing.events") == table_text(events, "public.events")


def test_a_partitioned_target_is_loaded_without_freeze(events: str, sink_uri: str) -> None:
    """Postgres has no COPY FREEZE into a partitioned table: the rows go in the usual way."""
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.events (id bigint, day date NOT NULL,"
        " body text) PARTITION BY RANGE (day);"
        " CREATE TABLE landing.events_all PARTITION OF landing.events"
        " FOR VALUES FROM ('2000-01-01') TO ('2100-01-01')",
    )

    result = run_load(events, sink_uri, SOURCE, TARGET)

    assert "FREEZE" not in copy_statement(result.statements)
    assert table_text(sink_uri, "landing.events") == table_text(events, "public.events")


@pytest.mark.parametrize("isolation", ["repeatable%5C%20read", "serializable"])
def test_a_sink_session_in_a_stricter_isolation_level_is_loaded_frozen(
    events: str, sink_uri: str, isolation: str
) -> None:
    """A role whose default_transaction_isolation is stricter: the transaction's snapshot is
    its only one when the COPY starts, which FREEZE allows."""
    strict = f"{sink_uri}?options=-c%20default_transaction_isolation%3D{isolation}"
    assert fetch(strict, "SHOW transaction_isolation")[0][0] == isolation.replace("%5C%20", " ")
    run_load(events, strict, SOURCE, TARGET)
    execute(events, "DELETE FROM events WHERE id % 7 = 0")

    result = run_load(events, strict, SOURCE, TARGET)

    assert "FREEZE" in copy_statement(result.statements)
    assert result.rows == ROWS - ROWS // 7
    assert table_text(sink_uri, "landing.events") == table_text(events, "public.events")
