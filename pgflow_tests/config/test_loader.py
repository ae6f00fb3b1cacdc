"""load_project: finding spec files, reading every field, and reporting every mistake.

Specs are written into `tmp_path`; every load passes an explicit `environ` so nothing depends on
the process environment.
"""

from __future__ import annotations

import copy
import textwrap
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgflow.config.errors import SpecError, SpecProblem
from pgflow.config.environment import config_path, env_var_for
from pgflow.config.loader import load_project
from pgflow.config.model import (
    FreshnessSpec,
    PipelineSpec,
    Project,
    ScheduleSpec,
    SourceOptions,
    StrategySpec,
    TableName,
)

ENV = {
    "PGFLOW_CONN_SHOP": "postgresql://app@shop-db:5432/shop",
    "PGFLOW_CONN_WAREHOUSE": "postgresql://etl@dwh:5432/warehouse",
}
VAULT_ENV = {**ENV, "VAULT_ADDR": "https://vault.example.com:8200"}
MODES = "full_refresh, incremental_append, incremental_merge, replace, partition_replace"
STRATEGY_KEYS = (
    "custom_predicate, duplicate_policy, fillfactor, merge_policy, method, mode, native_mode, "
    "on_schema_change, only_new_rows, parallelism, partition_column, unique_key"
)
PIPELINE_KEYS = (
    "asset_key, checks, description, freshness, group, name, owners, partitions, schedule, "
    "sink, source, tags"
)
DROP = object()  # in overrides: remove the key


def pipeline(**overrides: Any) -> dict[str, Any]:
    """A valid full_refresh pipeline (shop public.orders -> warehouse landing.orders)."""
    base: dict[str, Any] = {
        "source": {
            "type": "postgres",
            "connection_id": "shop",
            "table": {"schema": "public", "name": "orders"},
        },
        "sink": {
            "type": "postgres",
            "connection_id": "warehouse",
            "table": {"schema": "landing", "name": "orders"},
            "strategy": {"mode": "full_refresh"},
        },
    }
    return _merge(base, overrides)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is DROP:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def write(path: Path, content: str | dict[str, Any] | list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(textwrap.dedent(content))
    else:
        path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def problems_of(path: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SpecError) as exc:
        load_project(path, environ=ENV if environ is None else environ)
    assert exc.value.problems, "a SpecError always carries its problems"
    return [str(problem) for problem in exc.value.problems]


def only_problem(path: Path, environ: dict[str, str] | None = None) -> str:
    problems = problems_of(path, environ)
    assert len(problems) == 1, problems
    return problems[0]


def load_one(path: Path, environ: dict[str, str] | None = None) -> PipelineSpec:
    project = load_project(path, environ=ENV if environ is None else environ)
    assert len(project.pipelines) == 1
    return project.pipelines[0]


# --------------------------------------------------------------------------- finding specs


def test_a_file_with_one_pipeline_at_top_level(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "orders.yaml",
        """
        source:
          type: postgres
          connection_id: shop
          table: {schema: public, name: orders}
        sink:
          type: postgres
          connection_id: warehouse
          table: {schema: landing, name: orders}
          strategy:
            mode: full_refresh
        """,
    )
    project = load_project(spec, environ=ENV)
    assert isinstance(project, Project)
    (p,) = project.pipelines
    assert p.file == spec
    assert p.name == "landing_orders"
    assert p.asset_key == ("landing", "orders")
    assert p.group == "shop"
    assert p.description is None
    assert p.schedule is None
    assert p.freshness is None
    assert p.tags == {}
    assert p.owners == ()
    assert p.source.type == "postgres"
    assert p.source.connection_id == "shop"
    assert p.source.connection_type == "env"
    assert p.source.table == TableName("public", "orders")
    assert p.source.options == SourceOptions()
    assert p.source.options.incremental_strategy == "full"
    assert p.sink.type == "postgres"
    assert p.sink.connection_id == "warehouse"
    assert p.sink.connection_type == "env"
    assert p.sink.table == TableName("landing", "orders")
    assert p.sink.strategy == StrategySpec(mode="full_refresh")
    assert p.sink.strategy.method == "truncate_insert"
    assert p.sink.target_id == "postgres:warehouse:landing.orders"
    assert project.connections == {}
    assert project.source_connection_ids() == ["shop"]


def test_a_file_with_a_pipelines_list(tmp_path: Path) -> None:
    customers = pipeline(
        source={"table": {"name": "customers"}},
        sink={"table": {"name": "customers"}, "strategy": {"method": "exchange"}},
    )
    spec = write(tmp_path / "shop.yml", {"pipelines": [pipeline(), customers]})
    project = load_project(spec, environ=ENV)
    assert [p.name for p in project.pipelines] == ["landing_orders", "landing_customers"]
    assert [p.asset_key for p in project.pipelines] == [
        ("landing", "orders"),
        ("landing", "customers"),
    ]
    assert project.pipelines[1].sink.strategy.method == "exchange"
    assert all(p.file == spec for p in project.pipelines)


def test_a_folder_is_searched_recursively_for_yaml_and_yml(tmp_path: Path) -> None:
    root = tmp_path / "specs"
    write(root / "a.yaml", pipeline(name="a", sink={"table": {"name": "a"}}))
    write(root / "crm" / "b.yml", pipeline(name="b", sink={"table": {"name": "b"}}))
    write(
        root / "crm" / "deep" / "c.yaml",
        {"pipelines": [pipeline(name="c", sink={"table": {"name": "c"}})]},
    )
    write(root / "empty.yaml", "")  # an empty file holds no pipeline
    write(root / "README.md", "source: [this is : not a spec")  # other files are ignored
    write(root / "notes.txt", "not: {valid")
    write(root / "old.yaml.bak", "not: {valid")
    project = load_project(root, environ=ENV)
    assert sorted(p.name for p in project.pipelines) == ["a", "b", "c"]
    files = {p.name: p.file for p in project.pipelines}
    assert files == {
        "a": root / "a.yaml",
        "b": root / "crm" / "b.yml",
        "c": root / "crm" / "deep" / "c.yaml",
    }


def test_an_empty_folder_is_an_empty_project(tmp_path: Path) -> None:
    project = load_project(tmp_path, environ=ENV)
    assert project.pipelines == ()
    assert project.connections == {}


def test_path_as_string(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline())
    assert len(load_project(str(spec), environ=ENV).pipelines) == 1


def test_pgflow_config_is_used_when_no_path_is_given(tmp_path: Path) -> None:
    spec = write(tmp_path / "elsewhere" / "orders.yaml", pipeline(name="from_env"))
    environ = {**ENV, "PGFLOW_CONFIG": str(spec.parent)}
    project = load_project(None, environ=environ)
    assert [p.name for p in project.pipelines] == ["from_env"]
    assert config_path(environ) == spec.parent
    # A single file works too.
    assert load_project(environ={**ENV, "PGFLOW_CONFIG": str(spec)}).pipelines[0].file == spec


def test_default_is_the_pipelines_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "pipelines" / "orders.yaml", pipeline(name="default_folder"))
    monkeypatch.chdir(tmp_path)
    assert config_path(ENV) == Path("pipelines")
    assert config_path({**ENV, "PGFLOW_CONFIG": ""}) == Path("pipelines")
    project = load_project(environ=ENV)
    assert [p.name for p in project.pipelines] == ["default_folder"]


def test_a_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert only_problem(missing) == (
        f"{missing}: does not exist; set PGFLOW_CONFIG to a spec file or a folder of *.yaml specs"
    )


def test_pgflow_config_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    problems = problems_of(None, {**ENV, "PGFLOW_CONFIG": str(missing)})
    assert problems == [
        f"{missing}: does not exist; set PGFLOW_CONFIG to a spec file or a folder of *.yaml specs"
    ]


# --------------------------------------------------------------------------- optional keys


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


def test_schedule_and_freshness_as_mappings(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            schedule={"cron": "30 6 * * 1-5", "timezone": "Europe/Berlin"},
            freshness={"warn_after": "12h", "fail_after": "1 day"},
        ),
    )
    p = load_one(spec)
    assert p.schedule == ScheduleSpec(cron="30 6 * * 1-5", timezone="Europe/Berlin")
    assert p.freshness == FreshnessSpec(
        fail_after=timedelta(days=1), warn_after=timedelta(hours=12)
    )


def test_schedule_mapping_defaults_to_utc_and_freshness_mapping_without_warn(
    tmp_path: Path,
) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(schedule={"cron": "@daily"}, freshness={"fail_after": "90 minutes"}),
    )
    p = load_one(spec)
    assert p.schedule == ScheduleSpec(cron="@daily", timezone="UTC")
    assert p.freshness == FreshnessSpec(fail_after=timedelta(minutes=90))


def test_defaults_come_from_the_sink_table_and_the_source_connection(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            source={"connection_id": "shop"},
            sink={"table": {"schema": "raw", "name": "order_items"}},
        ),
    )
    p = load_one(spec)
    assert p.name == "raw_order_items"
    assert p.asset_key == ("raw", "order_items")
    assert p.group == "shop"


def test_default_group_is_made_a_valid_dagster_group_name(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"connection_id": "shop-db.eu"}))
    p = load_one(spec, {**ENV, "PGFLOW_CONN_SHOP_DB_EU": "postgresql://x@h/db"})
    assert p.source.connection_id == "shop-db.eu"
    assert p.group == "shop_db_eu"


def test_asset_key_slashes_at_the_ends_are_ignored_and_dashes_allowed(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(asset_key="/dwh/landing/order-items/"))
    assert load_one(spec).asset_key == ("dwh", "landing", "order-items")


def test_single_owner_string_and_nested_group(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(owners="team:sales", group="sales/landing"))
    p = load_one(spec)
    assert p.owners == ("team:sales",)
    assert p.group == "sales/landing"


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


def test_numbers_are_read_as_text(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"table": {"schema": "y2024", "name": 2024}}))
    p = load_one(spec)
    assert p.sink.table == TableName("y2024", "2024")
    assert p.asset_key == ("y2024", "2024")


def test_vault_connections_are_known_when_vault_is_configured(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            source={"connection_id": "oltp", "connection_type": "vault"},
            sink={"connection_id": "dwh", "connection_type": "vault"},
        ),
    )
    p = load_one(spec, {"VAULT_ADDR": "https://vault:8200"})
    assert (p.source.connection_type, p.sink.connection_type) == ("vault", "vault")


# --------------------------------------------------------------------------- seed examples

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


@pytest.mark.parametrize(
    "strategy",
    [
        {"mode": "incremental_append"},
        {"mode": "incremental_append", "only_new_rows": True, "unique_key": ["id"]},
        {"mode": "incremental_merge", "unique_key": ["id"]},
        {"mode": "incremental_merge", "merge_policy": "upsert", "unique_key": ["id", "line"]},
        {"mode": "incremental_merge", "merge_policy": "shadow_swap", "unique_key": ["id"]},
        {"mode": "replace", "custom_predicate": "order_date >= '2026-01-01'"},
        {"mode": "partition_replace", "partition_column": "business_date"},
    ],
)
def test_landed_sink_strategies_load(tmp_path: Path, strategy: dict[str, Any]) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": strategy}))
    assert load_one(spec).sink.strategy.mode == strategy["mode"]


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


CDC_OPTIONS = {
    "incremental_strategy": "cdc",
    "slot_name": "pgflow_orders",
    "publication_name": "pgflow_pub",
    "snapshot": "never",
    "auto_cleanup": True,
    "deleted_column": "_deleted",
    "on_truncate": "fail",
    "target_batch_size": 10000,
    "max_changes_per_run": 500000,
    "reset": False,
}
COLUMN_OPTIONS = {
    "incremental_strategy": "column",
    "incremental_column": "updated_at",
    "lookback": "5 minutes",
    "on_null_cursor": "include",
}
MERGE_SINK = {"strategy": {"mode": "incremental_merge", "unique_key": ["id"]}}

# --------------------------------------------------------------------------- delta sinks


@pytest.mark.parametrize(
    "strategy",
    [
        {"mode": "full_refresh"},
        {"mode": "incremental_append"},
        {"mode": "incremental_merge", "unique_key": ["id"]},
        {"mode": "replace", "custom_predicate": "id > 10"},
        {"mode": "partition_replace", "partition_column": "business_date"},
    ],
)
def test_a_postgres_table_loads_into_delta_in_every_mode(
    tmp_path: Path, strategy: dict[str, Any]
) -> None:
    sink = {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/lake/landing/orders/"}
    spec = write(tmp_path / "p.yaml", pipeline(sink={**sink, "strategy": strategy}))
    loaded = load_one(spec)
    assert (loaded.asset_key, loaded.sink.strategy.mode) == (("delta", "orders"), strategy["mode"])


def test_delta_sink_numeric_as_is_read_and_defaults_to_decimal(tmp_path: Path) -> None:
    sink = {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/lake/orders"}
    strategy = {"mode": "full_refresh"}
    as_text = {**sink, "strategy": strategy, "options": {"numeric_as": "string"}}
    assert load_one(write(tmp_path / "a.yaml", pipeline(sink=as_text))).sink.numeric_as == "string"
    plain = {**sink, "strategy": strategy}
    assert load_one(write(tmp_path / "b" / "b.yaml", pipeline(sink=plain))).sink.numeric_as == (
        "decimal"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"numeric_as": "float"},
            "field 'sink.options.numeric_as': 'float' is not allowed; use one of: decimal, string",
        ),
        (
            {"numeric_as": "string"},
            "field 'sink.options.numeric_as': applies to Delta sinks only (a Postgres target "
            "keeps numeric as numeric); remove it",
        ),
        ({"numeric_az": "string"}, "sink.options.numeric_az"),
    ],
)
def test_sink_options_are_checked(tmp_path: Path, options: dict, message: str) -> None:
    sink = {"options": options}
    if options.get("numeric_as") == "float":
        sink |= {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/lake/orders"}
    spec = write(tmp_path / "p.yaml", pipeline(sink=sink))
    assert message in only_problem(spec)


# --------------------------------------------------------------------------- delta sources

DELTA_SOURCE = {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/lake/orders"}


def test_a_delta_source_syncs_into_a_keyed_postgres_target(tmp_path: Path) -> None:
    source = {**DELTA_SOURCE, "options": {"deletes": "key_pass"}}
    spec = write(tmp_path / "p.yaml", pipeline(source=source, sink=MERGE_SINK))
    loaded = load_one(spec)
    assert (loaded.source.type, loaded.source.path) == ("delta", "/lake/orders")
    assert loaded.source.options.deletes == "key_pass"


def test_a_delta_source_needs_a_merge_target(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source=DELTA_SOURCE))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'sink.strategy.mode': a delta source is "
        "synced into Postgres by key (hash-diff upsert): use a postgres sink with mode "
        "incremental_merge and unique_key"
    )


def test_deletes_is_an_option_of_delta_sources(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml", pipeline(source={"options": {"deletes": "cdf"}}, sink=MERGE_SINK)
    )
    assert "field 'source.options.deletes': applies to delta sources only" in only_problem(spec)


# --------------------------------------------------------------------------- incremental reads


def test_cdc_options_load(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": CDC_OPTIONS}, sink=MERGE_SINK))
    options = load_one(spec).source.options
    assert (options.slot_name, options.publication_name) == ("pgflow_orders", "pgflow_pub")
    assert (options.snapshot, options.deleted_column, options.on_truncate) == (
        "never",
        "_deleted",
        "fail",
    )
    assert (options.target_batch_size, options.max_changes_per_run) == (10000, 500000)


def test_cdc_slot_and_publication_default_to_the_pipeline_name(tmp_path: Path) -> None:
    cdc = {"incremental_strategy": "cdc"}
    spec = write(
        tmp_path / "p.yaml",
        pipeline(name="Orders_EU", source={"options": cdc}, sink=MERGE_SINK),
    )
    options = load_one(spec).source.options
    assert (options.slot_name, options.publication_name) == ("pgflow_orders_eu",) * 2


@pytest.mark.parametrize("field", ["slot_name", "publication_name"])
@pytest.mark.parametrize("value", ["Orders", "my-slot", "x" * 64])
def test_replication_names_follow_the_slot_rule(tmp_path: Path, field: str, value: str) -> None:
    options = {"incremental_strategy": "cdc", field: value}
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": options}, sink=MERGE_SINK))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'source.options.{field}': '{value}' must be "
        "1 to 63 lower-case letters, digits or _ (a replication slot name's rule)"
    )


def test_two_cdc_pipelines_cannot_share_a_slot(tmp_path: Path) -> None:
    options = {"incremental_strategy": "cdc", "slot_name": "shared"}
    first = pipeline(source={"options": options}, sink=MERGE_SINK)
    second = pipeline(
        source={"table": {"schema": "public", "name": "lines"}, "options": options},
        sink={**MERGE_SINK, "table": {"schema": "landing", "name": "lines"}},
    )
    spec = write(tmp_path / "p.yaml", {"pipelines": [first, second]})
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_lines': field 'source.options.slot_name': uses the same "
        f"replication slot as pipeline 'landing_orders' in {spec} (shop: slot shared); each "
        "pipeline needs its own"
    )


@pytest.mark.parametrize(
    "option",
    [
        {"slot_name": "s"},
        {"publication_name": "p"},
        {"deleted_column": "_deleted"},
        {"target_batch_size": 10},
        {"max_changes_per_run": 10},
        {"auto_cleanup": True},
    ],
)
def test_cdc_only_options_are_refused_with_other_strategies(
    tmp_path: Path, option: dict[str, Any]
) -> None:
    options = {"incremental_strategy": "xmin", **option}
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": options}, sink=MERGE_SINK))
    (name,) = option
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'source.options.{name}': applies to "
        "incremental_strategy: cdc only (this source is xmin); remove it or set "
        "incremental_strategy: cdc"
    )


def test_cdc_into_a_plain_append_is_refused(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            source={"options": {"incremental_strategy": "cdc"}},
            sink={"strategy": {"mode": "incremental_append"}},
        ),
    )
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'sink.strategy.only_new_rows': must be true "
        "with incremental_strategy: cdc: an update would be appended as a second row; or use "
        "mode incremental_merge"
    )


def test_column_cursor_options_load(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": COLUMN_OPTIONS}, sink=MERGE_SINK))
    options = load_one(spec).source.options
    assert options.lookback == timedelta(minutes=5)
    assert options.on_null_cursor == "include"


@pytest.mark.parametrize(("raw", "expected"), [(100, Decimal(100)), (0.5, Decimal("0.5"))])
def test_a_numeric_lookback_is_a_number_of_cursor_units(
    tmp_path: Path, raw: float, expected: Decimal
) -> None:
    options = {**COLUMN_OPTIONS, "lookback": raw}
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": options}, sink=MERGE_SINK))
    assert load_one(spec).source.options.lookback == expected


def test_a_negative_lookback_is_refused(tmp_path: Path) -> None:
    options = {**COLUMN_OPTIONS, "lookback": -5}
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": options}, sink=MERGE_SINK))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'source.options.lookback': "
        "-5 must be a number of 0 or more"
    )


@pytest.mark.parametrize("kind", ["column", "xmin"])
@pytest.mark.parametrize(
    "strategy",
    [
        {"mode": "full_refresh"},
        {"mode": "replace", "custom_predicate": "id > 0"},
        {"mode": "partition_replace", "partition_column": "business_date"},
    ],
)
def test_incremental_reads_into_a_mode_that_drops_unread_rows_are_refused(
    tmp_path: Path, kind: str, strategy: dict[str, Any]
) -> None:
    options = {"incremental_strategy": kind}
    if kind == "column":
        options["incremental_column"] = "updated_at"
    spec = write(
        tmp_path / "p.yaml", pipeline(source={"options": options}, sink={"strategy": strategy})
    )
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'sink.strategy.mode': {strategy['mode']} "
        f"cannot take an incremental read (incremental_strategy: {kind}): the read holds only "
        "the changed rows, and this mode would drop the rest; use incremental_merge, or "
        "incremental_append with only_new_rows: true, or incremental_strategy: full"
    )


def test_an_incremental_read_into_a_plain_append_is_refused(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            source={"options": {"incremental_strategy": "xmin"}},
            sink={"strategy": {"mode": "incremental_append"}},
        ),
    )
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'sink.strategy.only_new_rows': must be true "
        "with incremental_strategy: xmin: each run re-reads the rows at its starting point, "
        "which a plain append would insert twice; or use mode incremental_merge"
    )


@pytest.mark.parametrize(
    "strategy",
    [
        MERGE_SINK["strategy"],
        {"mode": "incremental_merge", "unique_key": ["id"], "merge_policy": "upsert"},
        {"mode": "incremental_merge", "unique_key": ["id"], "merge_policy": "shadow_swap"},
        {"mode": "incremental_append", "unique_key": ["id"], "only_new_rows": True},
    ],
)
def test_incremental_reads_go_into_keyed_strategies(
    tmp_path: Path, strategy: dict[str, Any]
) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(source={"options": {"incremental_strategy": "xmin"}}, sink={"strategy": strategy}),
    )
    assert load_one(spec).sink.strategy.mode == strategy["mode"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"incremental_column": "updated_at"}, "incremental_column"),
        ({"incremental_strategy": "xmin", "lookback": "5m"}, "lookback"),
    ],
)
def test_column_only_options_are_refused_with_other_strategies(
    tmp_path: Path, options: dict[str, Any], field: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": options}, sink=MERGE_SINK))
    kind = options.get("incremental_strategy", "full")
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'source.options.{field}': applies to "
        f"incremental_strategy: column only (this source is {kind}); remove it or set "
        "incremental_strategy: column"
    )


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        pytest.param(
            {"source": {"options": {"include_columns": ["id", "total"]}}},
            "source.options.include_columns",
            "is not supported yet; every column of the source table is copied, remove the key",
            id="include-columns",
        ),
        pytest.param(
            {
                "source": {"options": {"incremental_strategy": "cdc"}},
                "sink": {
                    "type": "delta",
                    "connection_id": DROP,
                    "table": DROP,
                    "path": "s3://lake/landing/orders/",
                    "strategy": {"mode": "incremental_merge", "unique_key": ["id"]},
                },
            },
            "source.options.incremental_strategy",
            "cdc into a delta sink is not supported yet; use column or xmin, or a postgres sink",
            id="cdc-into-delta",
        ),
    ],
)
def test_valid_but_not_built_yet_is_refused_naming_the_field(
    tmp_path: Path, overrides: dict[str, Any], field: str, message: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    problem = only_problem(spec)
    assert f"{spec}: pipeline '" in problem
    assert f"field '{field}': " in problem
    assert message in problem


def test_supported_settings_that_do_not_apply_are_accepted(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(
            source={"options": {"incremental_strategy": "full"}},
            sink={
                "strategy": {
                    "method": "truncate_insert",
                    "on_schema_change": "fail",
                    "native_mode": "auto",
                    "duplicate_policy": "fail",
                }
            },
        ),
    )
    assert load_one(spec).sink.strategy.on_schema_change == "fail"


def test_fillfactor_is_read_and_absent_means_pgflows_choice(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": {"fillfactor": 80}}))
    assert load_one(spec).sink.strategy.fillfactor == 80
    assert load_one(write(tmp_path / "q" / "p.yaml", pipeline())).sink.strategy.fillfactor is None


@pytest.mark.parametrize("value", [5, 101, 0, "90", 90.5])
def test_fillfactor_outside_postgres_range_names_the_field(tmp_path: Path, value: Any) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": {"fillfactor": value}}))
    problem = only_problem(spec)
    assert problem.startswith(
        f"{spec}: pipeline 'landing_orders': field 'sink.strategy.fillfactor'"
    )
    expected = "from 10 to 100" if isinstance(value, int) and value > 0 else "positive integer"
    assert expected in problem


def test_fillfactor_is_refused_for_a_delta_sink(tmp_path: Path) -> None:
    sink = {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/lake/orders"}
    spec = write(
        tmp_path / "p.yaml",
        pipeline(sink={**sink, "strategy": {"mode": "full_refresh", "fillfactor": 90}}),
    )
    assert only_problem(spec) == (
        f"{spec}: pipeline 'orders': field 'sink.strategy.fillfactor': applies to "
        "postgres sinks only (a Delta table's Parquet files have no free space to tune); remove it"
    )


def test_parallelism_is_read_for_an_exchange_and_defaults_to_one(tmp_path: Path) -> None:
    strategy = {"mode": "full_refresh", "method": "exchange", "parallelism": 4}
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": strategy}))
    assert load_one(spec).sink.strategy.parallelism == 4
    assert load_one(write(tmp_path / "q" / "p.yaml", pipeline())).sink.strategy.parallelism == 1


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ({"method": "exchange", "parallelism": 0}, "must be a positive integer, got int 0"),
        ({"method": "exchange", "parallelism": 33}, "must be at most 32"),
        (
            {"parallelism": 4},
            "applies to postgres sinks with mode full_refresh and method exchange",
        ),
        (
            {"mode": "incremental_merge", "unique_key": ["id"], "parallelism": 2},
            "remove it or use method: exchange",
        ),
    ],
    ids=["zero", "too_many", "truncate_insert", "merge"],
)
def test_parallelism_outside_an_exchange_or_its_range_names_the_field(
    tmp_path: Path, strategy: dict[str, Any], expected: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": strategy}))
    problem = only_problem(spec)
    assert problem.startswith(
        f"{spec}: pipeline 'landing_orders': field 'sink.strategy.parallelism'"
    )
    assert expected in problem


@pytest.mark.parametrize("policy", ["fail", "add_columns", "sync"])
def test_every_schema_change_policy_is_accepted(tmp_path: Path, policy: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"strategy": {"on_schema_change": policy}}))
    assert load_one(spec).sink.strategy.on_schema_change == policy


def test_schema_changes_default_to_add_columns(tmp_path: Path) -> None:
    assert load_one(write(tmp_path / "p.yaml", pipeline())).sink.strategy.on_schema_change == (
        "add_columns"
    )


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    ("overrides", "field", "allowed"),
    [
        (
            {"sink": {"strategy": {"unique_key": DROP, "uniqe_key": ["id"]}}},
            "sink.strategy.uniqe_key",
            STRATEGY_KEYS,
        ),
        ({"shedule": "0 * * * *"}, "shedule", PIPELINE_KEYS),
        (
            {"source": {"conection_id": "shop"}},
            "source.conection_id",
            "connection_id, connection_type, options, path, table, type",
        ),
        ({"sink": {"table": {"table": "x"}}}, "sink.table.table", "name, schema"),
        ({"schedule": {"cron": "0 * * * *", "tz": "UTC"}}, "schedule.tz", "cron, timezone"),
    ],
)
def test_unknown_keys_list_the_allowed_ones(
    tmp_path: Path, overrides: dict[str, Any], field: str, allowed: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field '{field}': "
        f"is not a known field; allowed here: {allowed}"
    )


def test_unknown_source_option_lists_the_allowed_ones(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": {"incremental_colum": "x"}}))
    problem = only_problem(spec)
    assert (
        "field 'source.options.incremental_colum': is not a known field; allowed here: " in problem
    )
    for key in (
        "auto_cleanup",
        "incremental_column",
        "incremental_strategy",
        "lookback",
        "include_columns",
        "slot_name",
        "target_batch_size",
    ):
        assert key in problem


def test_unknown_key_in_a_pipelines_list_and_at_file_level(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", {"pipelines": [pipeline(descripton="x")], "conections": {}})
    assert problems_of(spec) == [
        f"{spec}: field 'conections': is not a known field; allowed here: connections, groups, pipelines",
        f"{spec}: pipeline 'landing_orders': field 'descripton': "
        f"is not a known field; allowed here: {PIPELINE_KEYS}",
    ]


@pytest.mark.parametrize(
    ("overrides", "field", "value", "allowed"),
    [
        ({"sink": {"strategy": {"mode": "full"}}}, "sink.strategy.mode", "full", MODES),
        (
            {"sink": {"strategy": {"method": "swap"}}},
            "sink.strategy.method",
            "swap",
            "truncate_insert, exchange",
        ),
        (
            {"sink": {"strategy": {"merge_policy": "merge"}}},
            "sink.strategy.merge_policy",
            "merge",
            "delete_insert, upsert, shadow_swap",
        ),
        (
            {"sink": {"strategy": {"duplicate_policy": "first"}}},
            "sink.strategy.duplicate_policy",
            "first",
            "fail, keep_last",
        ),
        (
            {"sink": {"strategy": {"native_mode": "always"}}},
            "sink.strategy.native_mode",
            "always",
            "auto, required, disabled",
        ),
        (
            {"sink": {"strategy": {"on_schema_change": "ignore"}}},
            "sink.strategy.on_schema_change",
            "ignore",
            "fail, add_columns, sync",
        ),
        ({"source": {"type": "mysql"}}, "source.type", "mysql", "postgres, delta"),
        ({"sink": {"type": "mssql"}}, "sink.type", "mssql", "postgres, delta"),
        ({"source": {"connection_type": "aws"}}, "source.connection_type", "aws", "env, vault"),
        (
            {"source": {"options": {"incremental_strategy": "wal"}}},
            "source.options.incremental_strategy",
            "wal",
            "full, column, xmin, cdc",
        ),
        (
            {"source": {"options": {"on_null_cursor": "skip"}}},
            "source.options.on_null_cursor",
            "skip",
            "exclude, include, fail",
        ),
        (
            {"source": {"options": {"snapshot": "always"}}},
            "source.options.snapshot",
            "always",
            "initial, never",
        ),
        (
            {"source": {"options": {"on_truncate": "ignore"}}},
            "source.options.on_truncate",
            "ignore",
            "apply, fail",
        ),
    ],
)
def test_wrong_choice_lists_the_allowed_values(
    tmp_path: Path, overrides: dict[str, Any], field: str, value: str, allowed: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    problems = problems_of(spec)
    expected = f"{spec}: pipeline 'landing_orders': field '{field}': '{value}' is not allowed; use one of: {allowed}"
    assert expected in problems
    assert len(problems) == 1, problems


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"source": {"connection_id": True}},
            "source.connection_id",
            "must be a string, got bool True",
        ),
        (
            {"sink": {"strategy": {"custom_predicate": False}}},
            "sink.strategy.custom_predicate",
            "must be a string, got bool False",
        ),
        ({"description": ["a", "b"]}, "description", "must be a string, got list ['a', 'b']"),
        (
            {"source": {"table": ["public", "orders"]}},
            "source.table",
            "must be a mapping, got list ['public', 'orders']",
        ),
        (
            {"sink": {"strategy": "full_refresh"}},
            "sink.strategy",
            "must be a mapping, got str 'full_refresh'",
        ),
        (
            {"source": {"options": ["full"]}},
            "source.options",
            "must be a mapping, got list ['full']",
        ),
        (
            {"source": {"options": {"target_batch_size": 0}}},
            "source.options.target_batch_size",
            "must be a positive integer, got int 0",
        ),
        (
            {"source": {"options": {"max_changes_per_run": -5}}},
            "source.options.max_changes_per_run",
            "must be a positive integer, got int -5",
        ),
        (
            {"source": {"options": {"target_batch_size": "1000"}}},
            "source.options.target_batch_size",
            "must be a positive integer, got str '1000'",
        ),
        (
            {"source": {"options": {"target_batch_size": True}}},
            "source.options.target_batch_size",
            "must be a positive integer, got bool True",
        ),
        (
            {"sink": {"strategy": {"only_new_rows": "yes"}}},
            "sink.strategy.only_new_rows",
            "must be true or false, got str 'yes'",
        ),
        (
            {"source": {"options": {"reset": 1}}},
            "source.options.reset",
            "must be true or false, got int 1",
        ),
        (
            {"sink": {"strategy": {"unique_key": []}}},
            "sink.strategy.unique_key",
            "must be a non-empty list of column names, got list []",
        ),
        (
            {"sink": {"strategy": {"unique_key": ["id", 7]}}},
            "sink.strategy.unique_key",
            "must be a non-empty list of column names, got list ['id', 7]",
        ),
        (
            {"sink": {"strategy": {"unique_key": {"id": 1}}}},
            "sink.strategy.unique_key",
            "must be a non-empty list of column names",
        ),
        (
            {"tags": ["sales"]},
            "tags",
            "must be a mapping of tag names to string values, e.g. {domain: sales}",
        ),
        ({"tags": {"domain": None}}, "tags", "must be a mapping of tag names to string values"),
        ({"tags": {"domain": {"a": 1}}}, "tags", "must be a mapping of tag names to string values"),
        (
            {"schedule": ["0 * * * *"]},
            "schedule",
            "must be a cron string or a mapping with `cron` and `timezone`",
        ),
        (
            {"freshness": 2},
            "freshness",
            "must be a duration (e.g. 2h) or a mapping with fail_after and optional warn_after",
        ),
        (
            {"freshness": {"warn_after": "1h"}},
            "freshness",
            "must be a duration (e.g. 2h) or a mapping with fail_after and optional warn_after",
        ),
        (
            {"freshness": {"fail_after": "1h", "warn": "30m"}},
            "freshness",
            "must be a duration (e.g. 2h) or a mapping with fail_after and optional warn_after",
        ),
        (
            {"owners": {"team": "data"}},
            "owners",
            "must be a list of owners, e.g. [team:data-platform, ana@example.com]",
        ),
    ],
)
def test_wrong_types(tmp_path: Path, overrides: dict[str, Any], field: str, message: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    prefix = f"{spec}: pipeline 'landing_orders': field '{field}': "
    problems = problems_of(spec)
    assert problems[0].startswith(prefix + message), problems
    # A required field of the wrong type is also reported as missing; nothing else is.
    assert problems[1:] in ([], [prefix + "is required for type postgres (a connection name)"])


def test_a_bool_name_is_refused_and_the_pipeline_labelled_by_its_target(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(name=True))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'name': must be a string, got bool True"
    )


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"source": DROP}, "source", "is required (a mapping)"),
        ({"sink": DROP}, "sink", "is required (a mapping)"),
        ({"sink": {"strategy": DROP}}, "sink.strategy", "is required (a mapping)"),
        ({"source": {"table": DROP}}, "source.table", "is required (a mapping)"),
        ({"sink": {"table": {"schema": DROP}}}, "sink.table.schema", "is required"),
        ({"sink": {"table": DROP}}, "sink.table", "is required (a mapping)"),
        ({"sink": {"table": {"name": ""}}}, "sink.table.name", "is required"),
        ({"source": {"table": {"schema": ""}}}, "source.table.schema", "is required"),
        (
            {"source": {"connection_id": ""}},
            "source.connection_id",
            "is required for type postgres (a connection name)",
        ),
        (
            {"sink": {"strategy": {"mode": ""}}},
            "sink.strategy.mode",
            f"is required; one of: {MODES}",
        ),
        ({"source": {"table": {"name": DROP}}}, "source.table.name", "is required"),
        (
            {"source": {"connection_id": DROP}},
            "source.connection_id",
            "is required for type postgres (a connection name)",
        ),
        (
            {"sink": {"connection_id": DROP}},
            "sink.connection_id",
            "is required for type postgres (a connection name)",
        ),
        (
            {"sink": {"strategy": {"mode": DROP}}},
            "sink.strategy.mode",
            f"is required; one of: {MODES}",
        ),
        ({"source": {"type": DROP}}, "source.type", "is required; one of: postgres, delta"),
        (
            {"source": {"type": "delta", "connection_id": DROP, "table": DROP}},
            "source.path",
            "is required for type delta (a folder or object-store URI)",
        ),
        ({"schedule": {"timezone": "UTC"}}, "schedule.cron", "is required"),
    ],
)
def test_missing_required_fields(
    tmp_path: Path, overrides: dict[str, Any], field: str, message: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    problems = problems_of(spec)
    assert any(p.endswith(f"field '{field}': {message}") for p in problems), problems
    assert all(p.startswith(f"{spec}: pipeline '") for p in problems), problems


def test_missing_sink_table_schema_is_the_only_problem(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(sink={"table": {"schema": DROP}}))
    # Without a schema the label falls back to "pipeline".
    assert (
        only_problem(spec) == f"{spec}: pipeline 'pipeline': field 'sink.table.schema': is required"
    )


def test_a_file_without_source_sink_or_pipelines(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", {"sourse": pipeline()["source"]})
    assert problems_of(spec) == [
        f"{spec}: field 'source': is required: a spec holds `source` and `sink`, or `pipelines:`",
        f"{spec}: field 'sourse': is not a known field; allowed here: connections, groups",
    ]


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", [pipeline()])
    assert only_problem(spec) == (
        f"{spec}: must hold a mapping with `source` and `sink`, or `pipelines:`"
    )


def test_pipelines_must_be_a_list_of_mappings(tmp_path: Path) -> None:
    not_a_list = write(tmp_path / "a.yaml", {"pipelines": pipeline()})
    assert only_problem(not_a_list) == (
        f"{not_a_list}: field 'pipelines': must be a list of pipelines, each with `source` and `sink`"
    )
    not_mappings = tmp_path / "b" / "b.yaml"
    write(not_mappings, {"pipelines": [pipeline(), "orders"]})
    assert only_problem(not_mappings) == (
        f"{not_mappings}: field 'pipelines[1]': must be a mapping with `source` and `sink`"
    )


def test_invalid_yaml(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", "source: {type: postgres\nsink: [\n")
    problem = only_problem(spec)
    assert problem.startswith(f"{spec}: is not valid YAML: ")
    assert "line" in problem  # the YAML error says where


def test_a_file_that_is_not_utf8_text(tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_bytes(b"source: \xff\xfe\n")
    assert only_problem(spec).startswith(f"{spec}: cannot be read as UTF-8 text: ")


@pytest.mark.parametrize("cron", ["every hour", "61 * * * *", "0 0 * * * *", "* * *"])
def test_bad_cron(tmp_path: Path, cron: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(schedule=cron))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'schedule': "
        f"'{cron}' is not a valid cron expression, e.g. '0 * * * *' (hourly)"
    )


def test_bad_cron_in_the_mapping_form(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(schedule={"cron": "hourly", "timezone": "UTC"}))
    assert "field 'schedule': 'hourly' is not a valid cron expression" in only_problem(spec)


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "CEST+2", "../etc/passwd", "utc+2"])
def test_bad_timezone(tmp_path: Path, timezone: str) -> None:
    spec = write(
        tmp_path / "p.yaml", pipeline(schedule={"cron": "0 * * * *", "timezone": timezone})
    )
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'schedule': timezone '{timezone}' is unknown; "
        "use an IANA name such as UTC or Europe/Berlin"
    )


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"freshness": "2 fortnights"}, "freshness", "2 fortnights"),
        ({"freshness": {"fail_after": "soon"}}, "freshness", "soon"),
        ({"freshness": {"warn_after": "1 week", "fail_after": "2d"}}, "freshness", "1 week"),
        ({"source": {"options": {"lookback": "a bit"}}}, "source.options.lookback", "a bit"),
    ],
)
def test_bad_duration(tmp_path: Path, overrides: dict[str, Any], field: str, text: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field '{field}': '{text}' is not a duration; "
        "write a number and a unit, e.g. 30s, 5m, 5 minutes, 2h, 1d"
    )


def test_a_huge_duration_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(freshness="99999999999d"))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'freshness': "
        "'99999999999d' is too long a duration; write at most 999999999 days"
    )


@pytest.mark.parametrize(("warn", "fail"), [("2h", "1h"), ("1h", "60m"), ("1d", "23h")])
def test_warn_after_must_be_shorter_than_fail_after(tmp_path: Path, warn: str, fail: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(freshness={"warn_after": warn, "fail_after": fail}))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'freshness': "
        "warn_after must be shorter than fail_after"
    )


@pytest.mark.parametrize("name", ["9orders", "my-orders", "orders daily", "ordèrs", ""])
def test_invalid_name(tmp_path: Path, name: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(name=name))
    problem = only_problem(spec)
    assert problem.endswith(
        f"field 'name': '{name}' must be letters, digits and _ (not starting with a digit)"
    )
    if name:
        assert f"pipeline '{name}'" in problem


@pytest.mark.parametrize("asset_key", ["landing orders", "a//b", "a/b.c", "", "/", "a/ü"])
def test_invalid_asset_key(tmp_path: Path, asset_key: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(asset_key=asset_key))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'asset_key': '{asset_key}' must be parts of "
        "letters, digits, _ or - joined by /, e.g. landing/orders"
    )


@pytest.mark.parametrize("group", ["sales-team", "sales team", "sales/", "/sales", "a//b"])
def test_invalid_group(tmp_path: Path, group: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(group=group))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'group': "
        f"'{group}' must be letters, digits and _ (segments joined by /)"
    )


@pytest.mark.parametrize("owner", ["alice", "team:", "alice@localhost", "@example.com"])
def test_invalid_owner(tmp_path: Path, owner: str) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(owners=["team:data", owner]))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'owners': '{owner}' must be an email address "
        "or team:<name>, e.g. [team:data-platform, ana@example.com]"
    )


def test_invalid_tags(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        pipeline(tags={"my key": "x", "domain": "sales team", "long": "x" * 64, "ok/k.e-y_": "v"}),
    )
    allowed = "must be letters, digits, _, - or . (at most 63 characters)"
    assert problems_of(spec) == [
        f"{spec}: pipeline 'landing_orders': field 'tags': tag name 'my key' {allowed}",
        f"{spec}: pipeline 'landing_orders': field 'tags.domain': 'sales team' {allowed}",
        f"{spec}: pipeline 'landing_orders': field 'tags.long': '{'x' * 64}' {allowed}",
    ]


# --------------------------------------------------------------------------- semantics


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"sink": {"strategy": {"mode": "incremental_merge"}}},
            "sink.strategy.unique_key",
            "is required for mode incremental_merge: list the key column(s), e.g. [id]",
        ),
        (
            {"source": {"options": {"incremental_strategy": "column"}}, "sink": MERGE_SINK},
            "source.options.incremental_column",
            "is required with incremental_strategy: column: name the cursor column, "
            "e.g. updated_at",
        ),
        (
            {"sink": {"strategy": {"mode": "incremental_append", "only_new_rows": True}}},
            "sink.strategy.unique_key",
            "is required with only_new_rows: true (it decides which rows are new)",
        ),
        (
            {"sink": {"strategy": {"mode": "replace"}}},
            "sink.strategy.custom_predicate",
            "is required for mode replace: a SQL condition on the target, "
            "e.g. \"order_date >= '2026-01-01'\"",
        ),
        (
            {"sink": {"strategy": {"mode": "partition_replace"}}},
            "sink.strategy.partition_column",
            "is required for mode partition_replace: the column that decides each row's partition",
        ),
        (
            {
                "source": {
                    "type": "delta",
                    "connection_id": DROP,
                    "table": DROP,
                    "path": "/lake/orders",
                    "options": {"incremental_strategy": "xmin"},
                },
                "sink": MERGE_SINK,
            },
            "source.options.incremental_strategy",
            "applies to postgres sources only; a delta source is read by table version",
        ),
    ],
)
def test_semantic_mistakes(
    tmp_path: Path, overrides: dict[str, Any], field: str, message: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    problems = problems_of(spec)
    assert f"{spec}: pipeline 'landing_orders': field '{field}': {message}" in problems
    # The only other problem, if any, is that the mode/strategy is not built yet.
    others = [p for p in problems if f"field '{field}': {message}" not in p]
    assert all("is not supported yet" in p for p in others), others


def test_unknown_env_connections_name_the_variable_to_set(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"connection_id": "shop-db.eu"}))
    assert env_var_for("shop-db.eu") == "PGFLOW_CONN_SHOP_DB_EU"
    assert problems_of(spec, {}) == [
        f"{spec}: pipeline 'landing_orders': field 'source.connection_id': connection "
        "'shop-db.eu' is unknown: set PGFLOW_CONN_SHOP_DB_EU to a libpq URI or declare it "
        "under `connections:`",
        f"{spec}: pipeline 'landing_orders': field 'sink.connection_id': connection "
        "'warehouse' is unknown: set PGFLOW_CONN_WAREHOUSE to a libpq URI or declare it "
        "under `connections:`",
    ]


def test_an_empty_env_variable_does_not_configure_a_connection(tmp_path: Path) -> None:
    spec = write(tmp_path / "p.yaml", pipeline())
    problem = only_problem(spec, {**ENV, "PGFLOW_CONN_SHOP": ""})
    assert (
        "field 'source.connection_id': connection 'shop' is unknown: set PGFLOW_CONN_SHOP"
        in problem
    )


def test_unknown_vault_connection_without_vault_addr(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml", pipeline(source={"connection_id": "oltp", "connection_type": "vault"})
    )
    expected = (
        f"{spec}: pipeline 'landing_orders': field 'source.connection_id': connection 'oltp' is "
        "unknown: set VAULT_ADDR (and VAULT_TOKEN or VAULT_ROLE_ID/VAULT_SECRET_ID) or declare it "
        "under `connections:`"
    )
    assert problems_of(spec, ENV) == [expected]
    assert problems_of(spec, {**ENV, "VAULT_ADDR": ""}) == [expected]
    # The env variable of the same id does not count for a vault connection.
    assert problems_of(spec, {**ENV, "PGFLOW_CONN_OLTP": "postgresql://x@h/db"}) == [expected]


def test_declared_connections_are_known_without_env_variables(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "shop.yaml",
        {
            "connections": {"shop": {"type": "env"}, "warehouse": None},
            "pipelines": [pipeline()],
        },
    )
    project = load_project(spec, environ={})
    assert set(project.connections) == {"shop", "warehouse"}
    assert project.connections["shop"].type == "env"
    assert project.connections["shop"].file == spec
    assert project.connections["warehouse"].type == "env"


def test_connections_next_to_a_single_top_level_pipeline(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "orders.yaml",
        """
        connections:
          shop: {type: env}
          warehouse: {type: vault}
        source:
          type: postgres
          connection_id: shop
          table: {schema: public, name: orders}
        sink:
          type: postgres
          connection_id: warehouse
          connection_type: vault
          table: {schema: landing, name: orders}
          strategy: {mode: full_refresh}
        """,
    )
    project = load_project(spec, environ={})
    assert [p.name for p in project.pipelines] == ["landing_orders"]
    assert project.connections["warehouse"].type == "vault"


def test_a_connection_used_with_another_type_than_declared(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "shop.yaml",
        {
            "connections": {"shop": {"type": "env"}, "warehouse": {"type": "vault"}},
            "pipelines": [pipeline()],
        },
    )
    assert problems_of(spec, {}) == [
        f"{spec}: pipeline 'landing_orders': field 'sink.connection_id': connection 'warehouse' "
        f"is declared with type vault in {spec}, but used here with connection_type env; "
        "make them agree"
    ]


def test_connections_declared_in_another_file(tmp_path: Path) -> None:
    write(
        tmp_path / "connections.yaml", {"connections": {"shop": {"type": "env"}, "warehouse": {}}}
    )
    write(tmp_path / "orders.yaml", pipeline())
    project = load_project(tmp_path, environ={})
    assert len(project.pipelines) == 1
    assert set(project.connections) == {"shop", "warehouse"}


def test_declared_connection_mistakes(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "c.yaml",
        {"connections": {"shop": {"type": "aws"}, "warehouse": {"typ": "env"}, "crm": "env"}},
    )
    assert problems_of(spec, {}) == [
        f"{spec}: field 'connections.shop.type': 'aws' is not allowed; use one of: env, vault",
        f"{spec}: field 'connections.warehouse.typ': is not a known field; allowed here: sensor, type",
        f"{spec}: field 'connections.crm': must be a mapping, got str 'env'",
    ]


def test_two_pipelines_writing_one_target(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", pipeline(name="orders_a", asset_key="a/orders"))
    second = write(
        tmp_path / "b.yaml",
        pipeline(name="orders_b", asset_key="b/orders", source={"table": {"name": "orders_v2"}}),
    )
    assert problems_of(tmp_path) == [
        f"{second}: pipeline 'orders_b': field 'sink': writes the same target as pipeline "
        f"'orders_a' in {first} (postgres:warehouse:landing.orders); each pipeline needs its own"
    ]


def test_the_same_table_on_another_sink_connection_is_another_target(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", pipeline(name="orders_a", asset_key="a/orders"))
    write(
        tmp_path / "b.yaml",
        pipeline(name="orders_b", asset_key="b/orders", sink={"connection_id": "shop"}),
    )
    assert len(load_project(tmp_path, environ=ENV).pipelines) == 2


def test_duplicate_asset_keys(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", pipeline(name="orders_a", asset_key="dwh/orders"))
    second = write(
        tmp_path / "b.yaml",
        pipeline(name="orders_b", asset_key="dwh/orders", sink={"table": {"name": "orders2"}}),
    )
    assert problems_of(tmp_path) == [
        f"{second}: pipeline 'orders_b': field 'asset_key': target landing.orders2 on "
        "connection 'warehouse' has the asset key dwh/orders, as target landing.orders on "
        f"connection 'warehouse' of pipeline 'orders_a' in {first}; give one of them another "
        "`asset_key:` (e.g. asset_key: landing/orders_v2)"
    ]


def test_duplicate_names(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        {
            "pipelines": [
                pipeline(name="orders"),
                pipeline(name="orders", sink={"table": {"name": "orders_copy"}}),
            ]
        },
    )
    assert problems_of(spec) == [
        f"{spec}: pipeline 'orders': field 'name': has the same name as pipeline 'orders' in "
        f"{spec} (orders); each pipeline needs its own"
    ]


def test_a_copied_pipeline_reports_target_key_and_name(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", pipeline())
    copied = write(tmp_path / "b.yaml", pipeline())
    problems = problems_of(tmp_path)
    # One target, so one asset key: the clash is the target's, reported once under `sink`.
    assert [p.split(": ")[2] for p in problems] == ["field 'sink'", "field 'name'"]
    assert all(p.startswith(f"{copied}: pipeline 'landing_orders'") for p in problems)


# --------------------------------------------------------------------------- many problems


def test_every_problem_of_a_load_is_reported(tmp_path: Path) -> None:
    broken = write(
        tmp_path / "broken.yaml",
        {
            "pipelines": [
                pipeline(name="one", sink={"strategy": {"mode": "fulll", "uniqe_key": ["id"]}}),
                pipeline(
                    name="two",
                    schedule="every day",
                    freshness="2 fortnights",
                    sink={"table": {"name": "two"}},
                ),
                pipeline(
                    name="three", sink={"table": {"name": "three"}, "strategy": {"mode": "replace"}}
                ),
            ]
        },
    )
    invalid = write(tmp_path / "sub" / "invalid.yml", "pipelines: [\n")
    unknown = write(
        tmp_path / "sub" / "unknown.yaml",
        pipeline(name="four", source={"connection_id": "crm"}, sink={"table": {"name": "four"}}),
    )
    with pytest.raises(SpecError) as exc:
        load_project(tmp_path, environ=ENV)
    problems = [str(p) for p in exc.value.problems]
    expected = [
        f"{broken}: pipeline 'one': field 'sink.strategy.mode': 'fulll' is not allowed",
        f"{broken}: pipeline 'one': field 'sink.strategy.uniqe_key': is not a known field",
        f"{broken}: pipeline 'two': field 'schedule': 'every day' is not a valid cron expression",
        f"{broken}: pipeline 'two': field 'freshness': '2 fortnights' is not a duration",
        f"{broken}: pipeline 'three': field 'sink.strategy.custom_predicate': is required for mode replace",
        f"{invalid}: is not valid YAML",
        f"{unknown}: pipeline 'four': field 'source.connection_id': connection 'crm' is unknown: set PGFLOW_CONN_CRM",
    ]
    assert len(problems) == len(expected), problems
    for fragment in expected:
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)
    message = str(exc.value)
    assert message.startswith(f"pgflow found {len(expected)} problems in the pipeline specs:\n  - ")
    assert all(f"  - {p}" in message for p in problems)


def test_spec_problem_and_error_text() -> None:
    file = Path("pipelines/shop.yaml")
    assert str(SpecProblem(file, None, None, "is not valid YAML")) == (
        "pipelines/shop.yaml: is not valid YAML"
    )
    assert str(SpecProblem(file, "orders", "sink.type", "bad")) == (
        "pipelines/shop.yaml: pipeline 'orders': field 'sink.type': bad"
    )
    assert str(SpecProblem(file, None, "pipelines[2]", "bad")) == (
        "pipelines/shop.yaml: field 'pipelines[2]': bad"
    )
    error = SpecError([SpecProblem(file, "orders", "name", "bad")])
    assert isinstance(error, ValueError)
    assert str(error) == (
        "pgflow found 1 problem in the pipeline specs:\n"
        "  - pipelines/shop.yaml: pipeline 'orders': field 'name': bad"
    )
