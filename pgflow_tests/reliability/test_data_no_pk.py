"""Tables without a primary key: what each strategy and source kind does with them.

Strategies that need no key (full_refresh, replace, incremental_append, partition_replace)
copy the rows as they are, duplicates and NULL keys included. Keyed strategies without a
`unique_key` are refused naming `sink.strategy.unique_key` (at spec load and at run time),
before anything is written; with one they work, and repeated keys fail per duplicate_policy.
CDC needs a primary key or a REPLICA IDENTITY: without one it stops with the fix before it
creates a publication, a slot or a target.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from deltalake import DeltaTable

from pgflow.config.errors import SpecError
from pgflow.config.loader import load_project
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.delta_load import load_delta
from pgflow.sinks.postgres.keys import DuplicateKeys, UniqueKeyMismatch
from pgflow.sources.cdc import ReplicationError
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import drop_slots, execute, fetch, slot_name_for
from pgflow_tests.reliability import edge_compare as ec
from pgflow_tests.reliability import edge_runs as er

SOURCE = TableName("public", "loose")
TARGET = TableName("landing", "loose")
# Duplicate rows, NULL "keys", a row NULL everywhere.
LOOSE = """
CREATE TABLE public.loose (id int, v text, amount numeric(8,2));
INSERT INTO public.loose VALUES (1, 'a', 1.00), (1, 'a', 1.00), (2, 'b', NULL),
    (NULL, 'no id', 3.50), (NULL, NULL, NULL), (3, E'tab\\there', -0.01);
"""
ALL = "t::text"


@pytest.fixture
def slot(source_uri: str) -> Iterator[str]:
    name = slot_name_for(source_uri)
    yield name
    drop_slots(source_uri, name)


def same_multiset(source_uri: str, sink_uri: str, times: int = 1) -> int:
    want = ec.table_rows(source_uri, "public.loose", ALL)
    have = ec.table_rows(sink_uri, "landing.loose", ALL)
    assert have == sorted(want * times)
    return len(have)


def target_exists(sink_uri: str) -> bool:
    return fetch(sink_uri, "SELECT to_regclass('landing.loose') IS NOT NULL")[0][0]


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(mode="full_refresh"),
        StrategySpec(mode="full_refresh", method="exchange"),
        StrategySpec(mode="replace", custom_predicate="true"),
        StrategySpec(mode="partition_replace", partition_column="id"),
    ],
    ids=["truncate_insert", "exchange", "replace", "partition_replace"],
)
def test_keyless_strategies_copy_every_row_duplicates_included(
    strategy: StrategySpec, source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, LOOSE)
    er.load(source_uri, sink_uri, SOURCE, TARGET, strategy)
    assert same_multiset(source_uri, sink_uri) == 6
    execute(
        source_uri, "INSERT INTO public.loose VALUES (1, 'a', 1.00); DELETE FROM loose WHERE id = 2"
    )
    er.load(source_uri, sink_uri, SOURCE, TARGET, strategy)
    if strategy.mode == "partition_replace":
        # Partition id = 2 is not in the read: its old row stays, every other one is replaced.
        want = [*ec.table_rows(source_uri, "public.loose", ALL), "(2,b,)"]
        assert ec.table_rows(sink_uri, "landing.loose", ALL) == sorted(want)
    else:
        assert same_multiset(source_uri, sink_uri) == 6
    assert fetch(
        sink_uri,
        "SELECT count(*) FROM pg_index WHERE indrelid = 'landing.loose'::regclass",
    ) == [(0,)], "no key is invented"


def test_plain_append_appends_every_row_again(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, LOOSE)
    strategy = StrategySpec(mode="incremental_append")
    er.load(source_uri, sink_uri, SOURCE, TARGET, strategy)
    er.load(source_uri, sink_uri, SOURCE, TARGET, strategy)
    assert same_multiset(source_uri, sink_uri, times=2) == 12


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(mode="incremental_merge"),
        StrategySpec(mode="incremental_merge", merge_policy="upsert"),
        StrategySpec(mode="incremental_merge", merge_policy="shadow_swap"),
        StrategySpec(mode="incremental_append", only_new_rows=True),
    ],
    ids=["delete_insert", "upsert", "shadow_swap", "append_only_new_rows"],
)
def test_keyed_strategies_without_unique_key_are_refused_before_writing(
    strategy: StrategySpec, source_uri: str, sink_uri: str, tmp_path: Path
) -> None:
    execute(source_uri, LOOSE)
    with pytest.raises(UniqueKeyMismatch) as refused:
        er.load(source_uri, sink_uri, SOURCE, TARGET, strategy)
    assert str(refused.value) == (
        "sink.strategy.unique_key is required for this strategy: list the key column(s)"
    )
    assert not target_exists(sink_uri)
    assert fetch(sink_uri, "SELECT to_regnamespace('landing') IS NULL") == [(True,)]
    # The same into Delta: refused, no table.
    lake = tmp_path / "loose"
    with psycopg.connect(source_uri) as conn, pytest.raises(UniqueKeyMismatch) as delta:
        load_delta(PostgresTableSource(conn, SOURCE), str(lake), strategy, pipeline="loose")
    assert "sink.strategy.unique_key is required" in str(delta.value)
    assert not DeltaTable.is_deltatable(str(lake))


def test_a_spec_asking_to_merge_without_unique_key_fails_at_load(tmp_path: Path) -> None:
    (tmp_path / "loose.yaml").write_text(
        "source: {type: postgres, connection_id: shop, table: {schema: public, name: loose}}\n"
        "sink: {type: postgres, connection_id: warehouse, table: {schema: landing, name: loose},"
        " strategy: {mode: incremental_merge}}\n"
        "connections: {shop: {type: env}, warehouse: {type: env}}\n"
    )
    with pytest.raises(SpecError) as refused:
        load_project(tmp_path)
    assert "field 'sink.strategy.unique_key'" in str(refused.value)


def test_merge_with_a_unique_key_works_and_repeated_keys_fail(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, LOOSE)
    merge = StrategySpec(mode="incremental_merge", unique_key=("id",))
    with pytest.raises(DuplicateKeys, match=r"nothing was written.*duplicate_policy: keep_last"):
        er.load(source_uri, sink_uri, SOURCE, TARGET, merge)
    assert not target_exists(sink_uri)
    execute(source_uri, "DELETE FROM public.loose WHERE ctid IN (SELECT min(ctid) FROM loose"
            " GROUP BY id HAVING count(*) > 1)")  # fmt: skip
    er.load(source_uri, sink_uri, SOURCE, TARGET, merge)
    assert same_multiset(source_uri, sink_uri) == 4  # one NULL-id row left of two
    execute(source_uri, "UPDATE public.loose SET v = 'changed' WHERE id IS NULL OR id = 3")
    er.load(source_uri, sink_uri, SOURCE, TARGET, merge)
    assert same_multiset(source_uri, sink_uri) == 4  # a NULL key matched the NULL key
    # pgflow made the key unique in the target (NULLS NOT DISTINCT), as no primary key did.
    assert fetch(
        sink_uri,
        "SELECT indisunique, indnullsnotdistinct FROM pg_index"
        " WHERE indrelid = 'landing.loose'::regclass",
    ) == [(True, True)]


def nothing_replicated(source_uri: str, sink_uri: str, slot: str) -> None:
    assert not target_exists(sink_uri)
    assert fetch(source_uri, "SELECT count(*) FROM pg_publication") == [(0,)]
    assert fetch(
        source_uri, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ) == [(0,)]


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        (
            "DEFAULT",
            "public.loose has no primary key, so its updates and deletes carry no key; add a "
            "primary key, or ALTER TABLE public.loose REPLICA IDENTITY FULL",
        ),
        (
            "NOTHING",
            "public.loose has REPLICA IDENTITY NOTHING: updates and deletes carry no key; add a "
            "primary key, or ALTER TABLE public.loose REPLICA IDENTITY FULL",
        ),
    ],
)
def test_cdc_without_key_or_replica_identity_is_refused_with_the_fix(
    identity: str, message: str, source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(source_uri, LOOSE + f"ALTER TABLE public.loose REPLICA IDENTITY {identity};")
    merge = StrategySpec(mode="incremental_merge", unique_key=("id",))
    with pytest.raises(ReplicationError) as refused:
        er.cdc_run(source_uri, sink_uri, slot, SOURCE, TARGET, merge)
    assert str(refused.value) == message
    nothing_replicated(source_uri, sink_uri, slot)


def test_cdc_key_outside_the_replica_identity_index_is_refused(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(
        source_uri,
        "CREATE TABLE public.loose (id int NOT NULL, code text NOT NULL, v text);"
        "CREATE UNIQUE INDEX loose_code ON public.loose (code);"
        "ALTER TABLE public.loose REPLICA IDENTITY USING INDEX loose_code;"
        "INSERT INTO public.loose VALUES (1, 'a', 'x'), (2, 'b', NULL);",
    )
    by_id = StrategySpec(mode="incremental_merge", unique_key=("id",))
    with pytest.raises(ReplicationError) as refused:
        er.cdc_run(source_uri, sink_uri, slot, SOURCE, TARGET, by_id)
    assert str(refused.value) == (
        "sink.strategy.unique_key (id) must be among the replica identity columns of "
        "public.loose (code): deletes carry only those. Use them as the key, or ALTER TABLE "
        "public.loose REPLICA IDENTITY FULL"
    )
    nothing_replicated(source_uri, sink_uri, slot)
    # Keyed by the identity index's column, it replicates updates and deletes exactly.
    by_code = StrategySpec(mode="incremental_merge", unique_key=("code",))
    er.cdc_run(source_uri, sink_uri, slot, SOURCE, TARGET, by_code)
    execute(
        source_uri,
        "UPDATE public.loose SET v = NULL WHERE code = 'a'; UPDATE public.loose SET code = 'c'"
        " WHERE code = 'b'; INSERT INTO public.loose VALUES (3, 'd', 'new');"
        "DELETE FROM public.loose WHERE code = 'd'; INSERT INTO public.loose VALUES (4, 'e', '');",
    )
    er.cdc_run(source_uri, sink_uri, slot, SOURCE, TARGET, by_code)
    assert same_multiset(source_uri, sink_uri) == 3


def test_cdc_with_replica_identity_full_and_no_primary_key(
    source_uri: str, sink_uri: str, slot: str
) -> None:
    execute(
        source_uri,
        "CREATE TABLE public.loose (id int, v text, amount numeric(8,2));"
        "ALTER TABLE public.loose REPLICA IDENTITY FULL;"
        "INSERT INTO public.loose VALUES (1, 'a', 1), (2, NULL, NULL), (NULL, 'null id', 2);",
    )
    merge = StrategySpec(mode="incremental_merge", unique_key=("id",), merge_policy="upsert")
    er.cdc_run(source_uri, sink_uri, slot, SOURCE, TARGET, merge)
    execute(
        source_uri,
        "UPDATE public.loose SET v = 'b' WHERE id = 2; UPDATE public.loose SET amount = 9"
        " WHERE id IS NULL; DELETE FROM public.loose WHERE id = 1;"
        "INSERT INTO public.loose VALUES (5, NULL, NULL)",
    )
    er.cdc_run(source_uri, sink_uri, slot, SOURCE, TARGET, merge)
    assert same_multiset(source_uri, sink_uri) == 3
