"""CDC into a Delta table: the specs that are accepted (a merge on the key, soft deletes,
on_truncate, include_columns, a slot shared with Postgres targets) and those refused at load,
naming file, pipeline, field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgflow.config.cdc_groups import cdc_groups
from pgflow.config.loader import load_project
from pgflow_tests.config.specs import (
    DROP,
    ENV,
    load_one,
    only_problem,
    pipeline,
    problems_of,
    write,
)
from pgflow_tests.config.test_wildcards import Lister, by_table, wildcard

LAKE = "s3://lake/landing/orders"


def delta_cdc(options: dict[str, Any] | None = None, **strategy: Any) -> dict[str, Any]:
    """shop public.orders through logical replication into a Delta table, merged on id."""
    return pipeline(
        source={"options": {"incremental_strategy": "cdc", **(options or {})}},
        sink={
            "type": "delta",
            "connection_id": DROP,
            "table": DROP,
            "path": LAKE,
            "strategy": {"mode": "incremental_merge", "unique_key": ["id"], **strategy},
        },
    )


def test_cdc_into_delta_is_accepted_with_its_options(tmp_path: Path) -> None:
    spec = delta_cdc(
        {
            "deleted_column": "_deleted_at",
            "on_truncate": "fail",
            "include_columns": ["id", "status", "Total €"],
            "slot_name": "lake_slot",
        }
    )
    spec["sink"]["options"] = {"numeric_as": "string"}
    loaded = load_one(write(tmp_path / "p.yaml", spec))
    source, sink = loaded.source, loaded.sink
    assert (sink.type, sink.path, sink.numeric_as) == ("delta", LAKE, "string")
    assert (sink.strategy.mode, sink.strategy.unique_key) == ("incremental_merge", ("id",))
    options = source.options
    assert options.incremental_strategy == "cdc"
    assert (options.deleted_column, options.on_truncate) == ("_deleted_at", "fail")
    assert options.include_columns == ("id", "status", "Total €")
    assert (options.slot_name, options.publication_name) == ("lake_slot", "lake_slot")
    assert loaded.asset_key == ("delta", "orders")


def test_a_delta_target_shares_a_slot_with_a_postgres_target(tmp_path: Path) -> None:
    lake = delta_cdc({"slot_name": "shop_slot"})
    warehouse = pipeline(
        source={
            "table": {"schema": "public", "name": "Order Lines"},
            "options": {"incremental_strategy": "cdc", "slot_name": "shop_slot"},
        },
        sink={
            "table": {"schema": "landing", "name": "order_lines"},
            "strategy": {"mode": "incremental_merge", "unique_key": ["id"]},
        },
    )
    write(tmp_path / "specs.yaml", {"pipelines": [lake, warehouse]})
    (group,) = cdc_groups(load_project(tmp_path, environ=ENV))
    assert (group.slot_name, group.publication_name, group.shared) == (
        "shop_slot",
        "shop_slot",
        True,
    )
    assert sorted(p.sink.type for p in group.pipelines) == ["delta", "postgres"]


def test_a_schema_wide_spec_keys_each_delta_table_by_its_primary_key(tmp_path: Path) -> None:
    spec = wildcard()
    spec["source"]["options"] = {"incremental_strategy": "cdc", "keyless": "skip"}
    spec["sink"] = {
        "type": "delta",
        "path": str(tmp_path / "lake" / "{table}"),
        "strategy": {"mode": "incremental_merge"},
    }
    file = write(tmp_path / "shop_all.yaml", spec)
    tables = by_table(load_project(file, environ=ENV, lister=Lister()))
    assert tables["OrderLines"].sink.strategy.unique_key == ("order_id", "line")
    assert tables["Größe 訂單"].sink.strategy.unique_key == ("id",)
    assert tables["OrderLines"].sink.path == str(tmp_path / "lake" / "orderlines")
    assert {p.source.options.slot_name for p in tables.values()} == {"pgflow_lake"}


@pytest.mark.parametrize(
    ("strategy", "field", "message"),
    [
        pytest.param(
            {"mode": "incremental_append", "only_new_rows": True},
            "sink.strategy.mode",
            "incremental_append cannot take CDC into a delta sink: each batch is one Delta "
            "merge on the key (updates, inserts, deletes); use mode incremental_merge with "
            "unique_key (the source table's primary key)",
            id="append",
        ),
        pytest.param(
            {"mode": "full_refresh", "unique_key": DROP},
            "sink.strategy.mode",
            "full_refresh cannot take CDC into a delta sink",
            id="full-refresh",
        ),
        pytest.param(
            {"unique_key": DROP},
            "sink.strategy.unique_key",
            "is required for mode incremental_merge: list the key column(s), e.g. [id]",
            id="no-key",
        ),
        pytest.param(
            {"merge_policy": "shadow_swap"},
            "sink.type",
            "delta sink with mode 'incremental_merge' (shadow_swap) is not supported yet",
            id="postgres-only-policy",
        ),
        pytest.param(
            {"fillfactor": 80},
            "sink.strategy.fillfactor",
            "applies to postgres sinks only",
            id="fillfactor",
        ),
    ],
)
def test_a_strategy_other_than_a_keyed_merge_is_refused(
    tmp_path: Path, strategy: dict[str, Any], field: str, message: str
) -> None:
    spec = delta_cdc()
    for name, value in strategy.items():
        if value is DROP:
            spec["sink"]["strategy"].pop(name)
        else:
            spec["sink"]["strategy"][name] = value
    file = write(tmp_path / "p.yaml", spec)
    problem = only_problem(file)
    assert problem.startswith(f"{file}: pipeline 'orders': field '{field}': "), problem
    assert message in problem


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"include_columns": ["status"]},
            "leaves out 'id' of sink.strategy.unique_key, which the load needs in the target: "
            "add it to include_columns",
            id="key-left-out",
        ),
        pytest.param(
            {"include_columns": ["id", "_gone"], "deleted_column": "_gone"},
            "lists '_gone', the source.options.deleted_column pgflow adds to the target",
            id="deleted-column-included",
        ),
        pytest.param(
            {"on_truncate": "ignore"},
            "'ignore' is not allowed; use one of: apply, fail",
            id="bad-on-truncate",
        ),
    ],
)
def test_bad_cdc_options_into_delta_are_refused(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    file = write(tmp_path / "p.yaml", delta_cdc(options))
    problem = only_problem(file)
    assert problem.startswith(f"{file}: pipeline 'orders': field 'source.options."), problem
    assert message in problem


def test_a_delta_table_written_by_cdc_and_another_pipeline_is_refused(tmp_path: Path) -> None:
    lake = delta_cdc({"slot_name": "shop_slot"})
    lake["name"] = "orders_cdc"
    loads = delta_cdc()
    loads["source"]["options"] = {"incremental_strategy": "xmin"}
    loads["source"]["table"]["name"] = "Orders Archive"
    loads["name"] = "orders_xmin"
    write(tmp_path / "specs.yaml", {"pipelines": [lake, loads]})
    problems = problems_of(tmp_path)
    assert len(problems) == 1, problems
    assert "pipeline 'orders_xmin': field 'sink': writes the same target as" in problems[0]
    assert "orders_cdc" in problems[0]
