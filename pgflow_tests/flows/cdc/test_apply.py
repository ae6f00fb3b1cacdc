"""Applying batches: merge policies, appends, key changes, TRUNCATE, unchanged TOAST values,
replica identity FULL, soft deletes."""

from __future__ import annotations

from functools import partial

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.model import CdcApplyError
from pgflow.sinks.postgres import state
from pgflow_tests.flows.cdc.conftest import ORDERS, TARGET, run, same
from pgflow_tests.pg import execute, fetch


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="upsert"),
        StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="shadow_swap"),
    ],
    ids=["upsert", "shadow_swap"],
)
def test_other_merge_policies(
    source_uri: str, sink_uri: str, slot: str, strategy: StrategySpec
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot, strategy)
    execute(
        source_uri,
        "UPDATE public.orders SET status = 'x' WHERE id < 50; DELETE FROM public.orders WHERE id > 990;"
        "INSERT INTO public.orders (id, status) VALUES (5000, 'new')",
    )
    run(source_uri, sink_uri, slot, strategy)
    assert same(source_uri, sink_uri)
    # Room for in-place updates only where the target is upserted (test_ddl_fillfactor.py).
    options = fetch(
        sink_uri, "SELECT reloptions FROM pg_class WHERE oid = 'landing.orders'::regclass"
    )
    assert options == [(["fillfactor=90"] if strategy.merge_policy == "upsert" else None,)]


def test_append_of_new_rows_only_takes_inserts(source_uri: str, sink_uri: str, slot: str) -> None:
    execute(source_uri, ORDERS)
    strategy = StrategySpec(mode="incremental_append", unique_key=("id",), only_new_rows=True)
    run(source_uri, sink_uri, slot, strategy)
    execute(
        source_uri,
        "UPDATE public.orders SET status = 'x' WHERE id = 1;"
        "INSERT INTO public.orders (id, status) VALUES (5000, 'new')",
    )
    run(source_uri, sink_uri, slot, strategy)
    assert fetch(
        sink_uri, "SELECT id, status FROM landing.orders WHERE id IN (1, 5000) ORDER BY id"
    ) == [(1, "new"), (5000, "new")]


def test_a_primary_key_change_moves_the_row(source_uri: str, sink_uri: str, slot: str) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    execute(source_uri, "UPDATE public.orders SET id = id + 10000 WHERE id <= 3")
    run(source_uri, sink_uri, slot)
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders WHERE id <= 3") == [(0,)]
    assert same(source_uri, sink_uri)


def test_truncate_is_applied_in_order(source_uri: str, sink_uri: str, slot: str) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot)
    execute(
        source_uri,
        "UPDATE public.orders SET status = 'gone' WHERE id = 1;"
        "TRUNCATE public.orders;"
        "INSERT INTO public.orders (id, status) VALUES (7, 'after')",
    )
    result = run(source_uri, sink_uri, slot)
    assert result.batches[0].truncates == 1
    assert fetch(sink_uri, "SELECT id, status FROM landing.orders") == [(7, "after")]


def test_truncate_is_refused_with_on_truncate_fail(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot, on_truncate="fail")
    before = state.read_position(psycopg.connect(sink_uri), TARGET)
    execute(
        source_uri,
        "INSERT INTO public.orders (id, status) VALUES (5000, 'x'); TRUNCATE public.orders",
    )
    with pytest.raises(
        CdcApplyError, match=r"truncated \(committed .*\) and source.options.on_truncate is fail"
    ):
        run(source_uri, sink_uri, slot, on_truncate="fail")
    assert fetch(sink_uri, "SELECT count(*) FROM landing.orders") == [(1000,)]
    assert state.read_position(psycopg.connect(sink_uri), TARGET) == before


TOAST = """
CREATE TABLE public.docs (id int PRIMARY KEY, title text, body text);
ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO public.docs
SELECT g, 't' || g, (SELECT string_agg(md5(g::text || x), '') FROM generate_series(1, 200) x)
FROM generate_series(1, 20) g;
"""


def test_an_unchanged_toast_value_keeps_its_value(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, TOAST)
    docs = partial(
        run,
        source_uri,
        sink_uri,
        slot,
        table=TableName("public", "docs"),
        target=TableName("landing", "docs"),
    )
    docs()
    execute(
        source_uri,
        # A plain update, then several updates of one row within a batch, one of which
        # changes the key: every body arrives as "unchanged" and must keep its text.
        "UPDATE public.docs SET title = 'renamed' WHERE id <= 5;"
        "INSERT INTO public.docs VALUES (100, 'new', repeat(md5('x'), 200));"
        "UPDATE public.docs SET title = 'again' WHERE id = 100;"
        "UPDATE public.docs SET id = 101 WHERE id = 100;"
        "UPDATE public.docs SET title = 'moved' WHERE id = 101;"
        "UPDATE public.docs SET id = 200 WHERE id = 6;"
        "UPDATE public.docs SET title = 'twice moved' WHERE id = 200;",
    )
    result = docs()
    assert result.changes == 11  # 5 rows renamed, then 6 single-row changes
    assert fetch(sink_uri, "SELECT count(*) FROM landing.docs WHERE body IS NULL") == [(0,)]
    assert same(source_uri, sink_uri, "public.docs", "landing.docs")


def test_replica_identity_full_without_a_primary_key(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(
        source_uri,
        "CREATE TABLE public.orders (id bigint NOT NULL, status text);"
        "ALTER TABLE public.orders REPLICA IDENTITY FULL;"
        "INSERT INTO public.orders SELECT g, 'new' FROM generate_series(1, 100) g",
    )
    run(source_uri, sink_uri, slot)
    execute(
        source_uri,
        "UPDATE public.orders SET status = 'x' WHERE id < 5;"
        "UPDATE public.orders SET id = 500 WHERE id = 50;"
        "DELETE FROM public.orders WHERE id > 90",
    )
    run(source_uri, sink_uri, slot)
    assert same(source_uri, sink_uri)


def test_soft_deletes_keep_the_row_with_the_commit_time(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, ORDERS)
    run(source_uri, sink_uri, slot, deleted_column="_pgflow_deleted_at")
    execute(source_uri, "DELETE FROM public.orders WHERE id <= 3")
    run(source_uri, sink_uri, slot, deleted_column="_pgflow_deleted_at")
    rows = fetch(
        sink_uri,
        "SELECT count(*) FILTER (WHERE _pgflow_deleted_at IS NOT NULL),"
        " count(*) FROM landing.orders",
    )
    assert rows == [(3, 1000)]
    execute(source_uri, "INSERT INTO public.orders (id, status) VALUES (2, 'back')")
    run(source_uri, sink_uri, slot, deleted_column="_pgflow_deleted_at")
    assert fetch(
        sink_uri, "SELECT status, _pgflow_deleted_at FROM landing.orders WHERE id = 2"
    ) == [("back", None)]
