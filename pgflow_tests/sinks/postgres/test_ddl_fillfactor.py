"""The fillfactor of targets: room for in-place (HOT) updates where a target is upserted.

A target pgflow creates for `merge_policy: upsert` (or a Delta sync, which upserts) leaves 10%
of each page free, so an upsert that changes only non-key columns writes the new row version on
the same page. Targets that are only appended to or rebuilt stay packed. A spec's explicit
`fillfactor` wins, and is also set on a target that already exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import write_deltalake

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.delta_sync.run import sync_delta
from pgflow.sinks.postgres.ddl import UPSERT_FILLFACTOR
from pgflow_tests.flows.delta_sync.support import orders as delta_orders
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load, table_text

SOURCE, TARGET = TableName("public", "wide"), TableName("landing", "wide")
ROWS = 3000


def strategy(mode: str = "incremental_merge", **options) -> StrategySpec:
    keyed = {"unique_key": ("id",)} if mode == "incremental_merge" else {}
    return StrategySpec(mode=mode, **keyed, **options)  # type: ignore[arg-type]


def reloptions(sink_uri: str, table: str = "landing.wide") -> list[str] | None:
    return fetch(sink_uri, f"SELECT reloptions FROM pg_class WHERE oid = '{table}'::regclass")[0][0]


def blocks(sink_uri: str, ids: list[int]) -> dict[int, int]:
    """The heap page each row's live version is on."""
    rows = fetch(
        sink_uri,
        "SELECT id, (ctid::text::point)[0]::int FROM landing.wide WHERE id = ANY(%s)",
        (ids,),
    )
    return dict(rows)


@pytest.fixture
def wide(source_uri: str) -> str:
    execute(
        source_uri,
        "CREATE TABLE wide (id bigint PRIMARY KEY, status text NOT NULL, pad text NOT NULL);"
        f" INSERT INTO wide SELECT g, 'new', repeat(md5(g::text), 4) FROM generate_series(1, {ROWS}) g",
    )
    return source_uri


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (strategy(merge_policy="upsert"), [f"fillfactor={UPSERT_FILLFACTOR}"]),
        (strategy(merge_policy="delete_insert"), None),
        (strategy("full_refresh"), None),
        (strategy("incremental_append"), None),
        (strategy(merge_policy="delete_insert", fillfactor=70), ["fillfactor=70"]),
        (strategy(merge_policy="upsert", fillfactor=100), ["fillfactor=100"]),
    ],
    ids=["upsert", "delete_insert", "full_refresh", "append", "explicit", "explicit-packed"],
)
def test_a_created_target_gets_room_only_where_it_is_upserted(wide, sink_uri, spec, expected):
    run_load(wide, sink_uri, SOURCE, TARGET, spec)
    assert reloptions(sink_uri) == expected


@pytest.mark.parametrize(
    ("fillfactor", "same_page"), [(None, True), (100, False)], ids=["default", "packed"]
)
def test_upserted_rows_stay_on_their_page_only_with_room(wide, sink_uri, fillfactor, same_page):
    """The default leaves each changed row on its page (a HOT update: no new index entry);
    a packed target moves every changed row to another page."""
    spec = strategy(merge_policy="upsert", fillfactor=fillfactor)
    run_load(wide, sink_uri, SOURCE, TARGET, spec)
    changed = list(range(7, ROWS + 1, 100))
    before = blocks(sink_uri, changed)
    execute(wide, "UPDATE wide SET status = 'changed' WHERE id % 100 = 7")

    result = run_load(wide, sink_uri, SOURCE, TARGET, spec)

    assert result.rows == len(changed)
    assert table_text(sink_uri, "landing.wide") == table_text(wide, "public.wide")
    after = blocks(sink_uri, changed)
    stayed = [i for i in changed if after[i] == before[i]]
    assert stayed == (changed if same_page else [])


def test_an_explicit_fillfactor_is_set_on_an_existing_target(wide, sink_uri):
    execute(
        sink_uri,
        "CREATE SCHEMA landing;"
        " CREATE TABLE landing.wide (id bigint PRIMARY KEY, status text NOT NULL, pad text NOT NULL)",
    )
    run_load(wide, sink_uri, SOURCE, TARGET, strategy(merge_policy="upsert"))
    assert reloptions(sink_uri) is None  # pgflow's own choice applies only to what it creates

    result = run_load(
        wide, sink_uri, SOURCE, TARGET, strategy(merge_policy="upsert", fillfactor=85)
    )

    assert reloptions(sink_uri) == ["fillfactor=85"]
    assert any("SET (fillfactor = 85)" in s for s in result.statements)
    again = run_load(wide, sink_uri, SOURCE, TARGET, strategy(merge_policy="upsert", fillfactor=85))
    assert not any("fillfactor" in s for s in again.statements)  # already set: no DDL


def test_a_partitioned_target_is_left_to_its_partitions(wide, sink_uri):
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.wide (id bigint PRIMARY KEY, status text,"
        " pad text) PARTITION BY RANGE (id);"
        " CREATE TABLE landing.wide_low PARTITION OF landing.wide FOR VALUES FROM (0) TO (100000)",
    )
    run_load(wide, sink_uri, SOURCE, TARGET, strategy("full_refresh", fillfactor=80))
    assert reloptions(sink_uri) is None
    assert table_text(sink_uri, "landing.wide") == table_text(wide, "public.wide")


@pytest.mark.parametrize(("fillfactor", "expected"), [(None, UPSERT_FILLFACTOR), (75, 75)])
def test_a_delta_sync_target_gets_room_for_its_upserts(
    tmp_path: Path, sink_uri, fillfactor, expected
):
    path = str(tmp_path / "orders")
    write_deltalake(path, delta_orders(0, 100))
    target = TableName("gold", "orders")

    sync_delta(sink_uri, path, target, ("id",), pipeline="orders", fillfactor=fillfactor)

    assert reloptions(sink_uri, "gold.orders") == [f"fillfactor={expected}"]
    assert fetch(sink_uri, "SELECT count(*) FROM gold.orders") == [(100,)]
