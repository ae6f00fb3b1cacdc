"""One pipeline read whole: every optional key, the seed examples, and its label in messages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pgflow.config.model import FreshnessSpec, ScheduleSpec
from pgflow_tests.config.specs import DROP, VAULT_ENV, load_one, only_problem, pipeline, write


def test_all_optional_pipeline_keys(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "orders.yaml",
        """
        name: orders_hourly
        asset_key: a/b
        group: sales
        description: Orders, every hour.
        schedule: "0 * * * *"
        freshness: 2h
        tags: {domain: sales, tier: 1, pii: false}
        owners: [team:data-platform, ana@example.com]
        source:
          type: postgres
          connection_id: shop
          connection_type: env
          table: {schema: public, name: orders}
        sink:
          type: postgres
          connection_id: warehouse
          connection_type: env
          table: {schema: landing, name: orders}
          strategy: {mode: full_refresh, method: exchange}
        """,
    )
    p = load_one(spec)
    assert p.name == "orders_hourly"
    assert p.asset_key == ("a", "b")
    assert p.group == "sales"
    assert p.description == "Orders, every hour."
    assert p.schedule == ScheduleSpec(cron="0 * * * *", timezone="UTC")
    assert p.freshness == FreshnessSpec(fail_after=timedelta(hours=2), warn_after=None)
    assert p.tags == {"domain": "sales", "tier": "1", "pii": "False"}
    assert p.owners == ("team:data-platform", "ana@example.com")
    assert p.sink.strategy.method == "exchange"


def test_null_optional_keys_mean_absent(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        """
        name:
        description:
        schedule:
        freshness:
        tags:
        owners:
        source:
          type: postgres
          connection_id: shop
          table: {schema: public, name: orders}
          options: {lookback: }
        sink:
          type: postgres
          connection_id: warehouse
          table: {schema: landing, name: orders}
          strategy: {mode: full_refresh}
        """,
    )
    p = load_one(spec)
    assert (p.name, p.description, p.schedule, p.freshness, p.tags, p.owners) == (
        "landing_orders",
        None,
        None,
        None,
        {},
        (),
    )
    assert p.source.options.lookback is None


SEED_COLUMN_CURSOR = """
source:
  type: postgres
  connection_id: postgres_oltp
  connection_type: vault
  table: {schema: public, name: orders}
  options:
    incremental_strategy: column
    incremental_column: updated_at

sink:
  type: postgres
  connection_id: postgres_dwh
  connection_type: vault
  table: {schema: landing, name: orders}
  strategy:
    mode: incremental_merge
    unique_key: [id]
    merge_policy: delete_insert
    duplicate_policy: fail
"""

SEED_XMIN = """
source:
  type: postgres
  connection_id: postgres_oltp
  connection_type: vault
  table: {schema: public, name: orders}
  options:
    incremental_strategy: xmin

sink:
  type: mssql
  connection_id: mssql_dwh
  connection_type: vault
  table: {schema: landing, name: orders}
  strategy:
    mode: incremental_merge
    unique_key: [id]
"""


def test_seed_column_cursor_example_loads(tmp_path: Path) -> None:
    spec = load_one(write(tmp_path / "orders.yaml", SEED_COLUMN_CURSOR), VAULT_ENV)
    options = spec.source.options
    assert (options.incremental_strategy, options.incremental_column) == ("column", "updated_at")
    assert (options.lookback, options.on_null_cursor, options.reset) == (None, "exclude", False)
    assert spec.sink.strategy.merge_policy == "delete_insert"


def test_seed_column_cursor_sink_side_loads_with_a_full_read(tmp_path: Path) -> None:
    full_read = SEED_COLUMN_CURSOR.replace(
        "    incremental_strategy: column\n    incremental_column: updated_at\n",
        "    incremental_strategy: full\n",
    )
    pipeline_spec = load_one(write(tmp_path / "orders.yaml", full_read), VAULT_ENV)
    strategy = pipeline_spec.sink.strategy
    assert (strategy.mode, strategy.merge_policy, strategy.unique_key) == (
        "incremental_merge",
        "delete_insert",
        ("id",),
    )
    assert strategy.duplicate_policy == "fail"


def test_seed_xmin_example_refuses_the_mssql_sink_type(tmp_path: Path) -> None:
    spec = write(tmp_path / "orders.yaml", SEED_XMIN)
    assert only_problem(spec, VAULT_ENV) == (
        f"{spec}: pipeline 'landing_orders': field 'sink.type': "
        "'mssql' is not allowed; use one of: postgres, delta"
    )


def test_seed_xmin_example_into_postgres_loads(tmp_path: Path) -> None:
    spec = write(tmp_path / "orders.yaml", SEED_XMIN.replace("type: mssql", "type: postgres"))
    loaded = load_one(spec, VAULT_ENV)
    assert loaded.source.options.incremental_strategy == "xmin"
    assert loaded.sink.strategy.unique_key == ("id",)


def test_a_bool_name_is_refused_and_the_pipeline_labelled_by_its_target(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(name=True))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'name': must be a string, got bool True"
    )


def test_missing_sink_table_schema_is_the_only_problem(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"table": {"schema": DROP}}))
    # Without a schema the label falls back to "pipeline".
    assert (
        only_problem(spec) == f"{spec}: pipeline 'pipeline': field 'sink.table.schema': is required"
    )
