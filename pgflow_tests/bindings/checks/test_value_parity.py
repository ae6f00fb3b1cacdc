"""value_parity on real pipelines: a target whose counts, keys and schema are right but one of
whose values is wrong fails the check, with the key that differs; hostile values pass when equal."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import dagster as dg
import pytest

from pgflow.bindings.checks.definitions import check_names
from pgflow.bindings.checks.names import ROW_COUNT_PARITY, SCHEMA, UNIQUE_KEY, VALUE_PARITY
from pgflow.config.errors import SpecError
from pgflow_tests.bindings.checks.support import (
    MERGE,
    cdc_project,
    delta_pipeline,
    figures,
    materialize,
    pipeline,
    project_of,
    run_checks,
)
from pgflow_tests.bindings.conftest import Env, items_table
from pgflow_tests.pg import drop_slots, execute, slot_name_for

FULL = {"mode": "full_refresh", "unique_key": ["id"]}
ODD = '"Odd Sché""ma"."Mixed Case ü"'
HOSTILE = f"""
CREATE SCHEMA "Odd Sché""ma";
CREATE TABLE {ODD} (
  "Key Ü" int PRIMARY KEY, "Label é" text, f8 float8, f4 float4, num numeric, day date,
  at timestamptz, span interval, tags text[], cash money);
INSERT INTO {ODD} VALUES
  (1, '', 'NaN', '-Infinity', 'NaN', '0044-03-15 BC', '-infinity', '-178000000 years', '{{}}',
   12.34),
  (2, NULL, 'Infinity', 'NaN', 3.14159265358979323846264338327950288419716939937510,
   'infinity', 'infinity', '1 mon -2 days', '{{NULL,"","a,b"}}', -0.01),
  (3, 'ünï "quoted", (paren)', '-0', 1e-45, -1e-130, '0001-01-01 BC',
   '2024-02-29 23:59:59.999999+00', NULL, NULL, NULL);
"""


def hostile_pipeline() -> dict:
    return pipeline(
        {"mode": "full_refresh", "unique_key": ["Key Ü"]},
        source={"table": {"schema": 'Odd Sché"ma', "name": "Mixed Case ü"}},
        sink={"table": {"schema": "landing", "name": "Odd Table ü"}},
        asset_key="landing/odd_table",
    )


def test_one_changed_value_fails_though_counts_keys_and_schema_agree(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(FULL))
    materialize(project, instance)
    found = run_checks(project, instance)
    ok = found[VALUE_PARITY]
    assert ok.passed, ok.description
    assert ok.description == (
        "target landing.items equals source table public.items on connection 'shop' in every "
        "row (50 rows, 4 column(s))"
    )
    assert figures(ok)["buckets_differing"] == 0 and figures(ok)["mode"] == "snapshot"

    execute(env.sink_uri, "UPDATE landing.items SET price = price + 0.01 WHERE id = 7")
    found = run_checks(project, instance)
    for name in (UNIQUE_KEY, ROW_COUNT_PARITY, SCHEMA):
        assert found[name].passed, (name, found[name].description)  # they cannot see it
    wrong = found[VALUE_PARITY]
    assert not wrong.passed and wrong.severity == dg.AssetCheckSeverity.ERROR
    text = wrong.description or ""
    assert text.startswith(
        "target landing.items differs from source table public.items on connection 'shop' in 1 "
        "of 256 buckets of rows (every row hashed, 4 column(s); 50 target rows, 50 source "
        "rows), e.g. (id)=(7) values differ. The last load made the target a consistent "
        "snapshot of 50 source rows and the source still has as many"
    ), text
    assert "materialize the asset with run config reset: true" in text
    assert figures(wrong)["examples"] == [{"key": "(id)=(7)", "difference": "values differ"}]


def test_hostile_values_pass_when_equal_and_null_is_not_empty(
    env: Env, instance: dg.DagsterInstance
) -> None:
    execute(env.source_uri, HOSTILE)
    project = project_of(env, hostile_pipeline())
    materialize(project, instance)
    ok = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
    assert ok.passed, ok.description
    assert figures(ok)["source_rows"] == 3 and figures(ok)["columns_compared"] == 10

    execute(env.sink_uri, 'UPDATE landing."Odd Table ü" SET "Label é" = NULL WHERE "Key Ü" = 1')
    wrong = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
    assert not wrong.passed and wrong.severity == dg.AssetCheckSeverity.ERROR
    assert figures(wrong)["examples"] == [{"key": '("Key Ü")=(1)', "difference": "values differ"}]


def test_a_live_comparison_warns_and_says_it_is_not_conclusive(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(MERGE))
    materialize(project, instance)
    assert run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY].passed
    execute(env.source_uri, "DELETE FROM items WHERE id = 3")  # deletes stay in a merge target
    execute(env.sink_uri, "UPDATE landing.items SET name = 'x' WHERE id = 9")
    found = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
    assert not found.passed and found.severity == dg.AssetCheckSeverity.WARN
    text = found.description or ""
    assert (
        "in 2 of 256 buckets of rows (every row hashed, 4 column(s); 50 target rows, 49 source "
        "rows), e.g. (id)=(3) not in the source; (id)=(9) values differ. " in text
    ), text
    assert "Not conclusive: the target holds the source as of the last load" in text
    assert figures(found)["mode"] == "live"


def test_a_sample_hashes_its_buckets_and_counts_all(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, pipeline(FULL, checks={"value_parity": {"sample": 0.25}}))
    materialize(project, instance)
    found = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
    assert found.passed, found.description
    assert figures(found)["buckets_hashed"] == 64
    assert "in the rows of 64 of 256 key buckets (50 rows" in (found.description or "")
    execute(env.sink_uri, "DELETE FROM landing.items WHERE id = 1")  # counted in any bucket
    assert not run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY].passed


def test_a_slow_hash_times_out_with_the_fix(env: Env, instance: dg.DagsterInstance) -> None:
    execute(env.source_uri, "INSERT INTO items SELECT g, 'n', 1 FROM generate_series(51, 200000) g")
    spec = pipeline(FULL, checks={"value_parity": {"timeout": "0.001s"}})
    project = project_of(env, spec)
    materialize(project, instance)
    found = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
    assert not found.passed and found.severity == dg.AssetCheckSeverity.WARN
    assert (found.description or "").startswith(
        "timed out after 0.001 s (checks.value_parity.timeout)"
    )


def test_spec_options_and_where_the_check_is_offered(env: Env) -> None:
    (off,) = project_of(env, pipeline(FULL, checks={"value_parity": False})).pipelines
    assert VALUE_PARITY not in check_names(off)
    (to_delta,) = project_of(env, delta_pipeline(env, FULL)).pipelines
    assert VALUE_PARITY not in check_names(to_delta)  # Postgres -> Postgres only for now
    with pytest.raises(SpecError) as raised:
        project_of(
            env, pipeline({"mode": "full_refresh"}, checks={"value_parity": {"sample": 0.1}})
        )
    assert "field 'checks.value_parity.sample': needs sink.strategy.unique_key" in str(raised.value)
    with pytest.raises(SpecError) as raised:
        project_of(env, pipeline(FULL, checks={"value_parity": {"sample": 0}}))
    assert "field 'checks.value_parity.sample': must be a fraction above 0 up to 1" in str(
        raised.value
    )


def test_a_latin1_source_compares_with_a_utf8_target(
    env: Env, instance: dg.DagsterInstance, local_pg, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"t_latin1_{uuid.uuid4().hex[:8]}"
    admin = local_pg.uri("postgres")
    execute(admin, f"CREATE DATABASE {name} ENCODING 'LATIN1' TEMPLATE template0 LOCALE 'C'")
    try:
        latin1 = local_pg.uri(name)
        items_table(latin1, rows=5)
        monkeypatch.setenv("PGFLOW_CONN_SHOP", latin1)
        project = project_of(env, pipeline(FULL))
        materialize(project, instance)
        # Non-ASCII text written by SQL on both sides: each database stores its own bytes.
        for uri, table in ((latin1, "items"), (env.sink_uri, "landing.items")):
            execute(uri, f"UPDATE {table} SET name = 'ünï çà ' || id")
        ok = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
        assert ok.passed, ok.description
        execute(env.sink_uri, "UPDATE landing.items SET name = 'ünï ça 2' WHERE id = 2")
        wrong = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
        assert not wrong.passed and figures(wrong)["examples"] == [
            {"key": "(id)=(2)", "difference": "values differ"}
        ]
    finally:
        execute(admin, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def cdc_slot(env: Env) -> Iterator[str]:
    name = slot_name_for(env.source_uri)
    yield name
    drop_slots(env.source_uri, name)


def test_cdc_with_soft_deletes_compares_live_rows_and_warns(
    env: Env, cdc_slot: str, instance: dg.DagsterInstance
) -> None:
    project = cdc_project(env, cdc_slot)
    materialize(project, instance)
    execute(
        env.source_uri, "DELETE FROM items WHERE id > 47; UPDATE items SET name = '' WHERE id = 1"
    )
    materialize(project, instance)  # the deletes stamp _deleted_at in the target
    ok = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
    assert ok.passed, ok.description
    assert figures(ok)["target_rows"] == 47 and figures(ok)["mode"] == "live"
    execute(env.sink_uri, "UPDATE landing.items SET price = 0 WHERE id = 1")  # 1.25 -> 0
    wrong = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
    assert not wrong.passed and wrong.severity == dg.AssetCheckSeverity.WARN
    assert figures(wrong)["examples"] == [{"key": "(id)=(1)", "difference": "values differ"}]


def test_retyped_columns_are_not_compared_and_named(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, pipeline(FULL))
    materialize(project, instance)
    execute(env.sink_uri, "ALTER TABLE landing.items ALTER COLUMN price TYPE numeric(12,4)")
    found = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
    assert found.passed, found.description  # 1.2500 is not 1.25 as text: price is left out
    assert figures(found)["columns_not_compared"] == "price"
    assert (found.description or "").endswith("(50 rows, 3 column(s)); not compared: price")
    execute(
        env.sink_uri,
        "ALTER TABLE landing.items ALTER COLUMN name TYPE varchar(40),"
        " ALTER COLUMN added TYPE timestamp, ALTER COLUMN id TYPE bigint",
    )
    none = run_checks(project, instance, VALUE_PARITY)[VALUE_PARITY]
    assert not none.passed and none.severity == dg.AssetCheckSeverity.WARN
    assert none.description == (
        "no column of source table public.items on connection 'shop' is in target "
        "landing.items with the same type (id, name, price, added): no value to compare; see "
        "the schema check"
    )
