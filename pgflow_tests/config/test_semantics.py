"""Checks across a pipeline's fields: reads and strategies that would lose or duplicate rows,
and settings that do not apply to this source or sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgflow_tests.config.specs import (
    DELTA_SOURCE,
    DROP,
    MERGE_SINK,
    load_one,
    only_problem,
    pipeline,
    problems_of,
    write,
)


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


@pytest.mark.parametrize("field", ["slot_name", "publication_name"])
@pytest.mark.parametrize("value", ["Orders", "my-slot", "x" * 64])
def test_replication_names_follow_the_slot_rule(tmp_path: Path, field: str, value: str) -> None:
    options = {"incremental_strategy": "cdc", field: value}
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": options}, sink=MERGE_SINK))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'source.options.{field}': '{value}' must be "
        "1 to 63 lower-case letters, digits or _ (a replication slot name's rule)"
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


def test_include_columns_loads_for_every_postgres_strategy(tmp_path: Path) -> None:
    options = {
        "incremental_strategy": "column",
        "incremental_column": "updated_at",
        "include_columns": ["id", "updated_at"],
    }
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": options}, sink=MERGE_SINK))
    assert load_one(spec).source.options.include_columns == ("id", "updated_at")


PARTITIONED_SINK = {
    "strategy": {"mode": "partition_replace", "partition_column": "day", "unique_key": DROP}
}


@pytest.mark.parametrize(
    ("options", "sink", "message"),
    [
        pytest.param(
            {"include_columns": ["total"]},
            MERGE_SINK,
            "leaves out 'id' of sink.strategy.unique_key, which the load needs in the target: "
            "add it to include_columns",
            id="unique-key",
        ),
        pytest.param(
            {
                "incremental_strategy": "column",
                "incremental_column": "updated_at",
                "include_columns": ["id"],
            },
            MERGE_SINK,
            "leaves out 'updated_at' of source.options.incremental_column, which the load needs "
            "in the target: add it to include_columns",
            id="cursor",
        ),
        pytest.param(
            {"include_columns": ["id"]},
            PARTITIONED_SINK,
            "leaves out 'day' of sink.strategy.partition_column, which the load needs in the "
            "target: add it to include_columns",
            id="partition-column",
        ),
        pytest.param(
            {
                "incremental_strategy": "cdc",
                "deleted_column": "gone",
                "include_columns": ["id", "gone"],
            },
            MERGE_SINK,
            "lists 'gone', the source.options.deleted_column pgflow adds to the target for soft "
            "deletes; remove it from include_columns, or choose another deleted_column",
            id="deleted-column",
        ),
        pytest.param(
            {"include_columns": ["id", "total", "id"]},
            MERGE_SINK,
            "lists 'id' more than once; name each column once",
            id="twice",
        ),
    ],
)
def test_include_columns_must_hold_what_the_load_needs(
    tmp_path: Path, options: dict[str, Any], sink: dict[str, Any], message: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(source={"options": options}, sink=sink))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'source.options.include_columns': {message}"
    )


def test_include_columns_is_an_option_of_postgres_sources(tmp_path: Path) -> None:
    source = {**DELTA_SOURCE, "options": {"include_columns": ["id"]}}
    spec = write(tmp_path / "p.yaml", pipeline(source=source, sink=MERGE_SINK))
    assert only_problem(spec) == (
        f"{spec}: pipeline 'landing_orders': field 'source.options.include_columns': applies "
        "to postgres sources only; remove it"
    )
