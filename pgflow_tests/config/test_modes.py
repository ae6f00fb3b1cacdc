"""The update and delete modes, `on_unmatched` and `update_columns` at load time: what each
needs, and every wrong combination refused naming the file, the pipeline, the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgflow.config.model import StrategySpec
from pgflow_tests.config.specs import DROP, load_one, only_problem, pipeline, problems_of, write
from pgflow_tests.config.test_wildcards import Lister, by_table, load, problems, wildcard

PREFIX = "pipeline 'landing_orders': field"


def spec_with(tmp_path: Path, strategy: dict[str, Any], **overrides: Any) -> Path:
    sink = {"strategy": strategy, **overrides.pop("sink", {})}
    return write(tmp_path / "p.yaml", pipeline(sink=sink, **overrides))


@pytest.mark.parametrize("mode", ["update", "delete"])
def test_update_and_delete_load_with_a_key(tmp_path: Path, mode: str) -> None:
    spec = load_one(spec_with(tmp_path, {"mode": mode, "unique_key": ["id", "Réf Nr"]}))
    assert spec.sink.strategy == StrategySpec(mode=mode, unique_key=("id", "Réf Nr"))  # type: ignore[arg-type]
    assert spec.sink.strategy.keyed and spec.sink.strategy.key == mode


@pytest.mark.parametrize("mode", ["update", "delete"])
def test_update_and_delete_need_a_key(tmp_path: Path, mode: str) -> None:
    spec = spec_with(tmp_path, {"mode": mode})
    assert only_problem(spec) == (
        f"{spec}: {PREFIX} 'sink.strategy.unique_key': is required for mode {mode}: it finds "
        f"the target rows to {mode}; list the key column(s), e.g. [id]"
    )


def test_on_unmatched_is_read_for_update(tmp_path: Path) -> None:
    strategy = {"mode": "update", "unique_key": "id", "on_unmatched": "fail"}
    assert load_one(spec_with(tmp_path, strategy)).sink.strategy.on_unmatched == "fail"
    strategy["on_unmatched"] = "insert"
    assert "field 'sink.strategy.on_unmatched'" in only_problem(spec_with(tmp_path, strategy))


def test_on_unmatched_belongs_to_update_only(tmp_path: Path) -> None:
    spec = spec_with(tmp_path, {"mode": "delete", "unique_key": "id", "on_unmatched": "ignore"})
    assert only_problem(spec) == (
        f"{spec}: {PREFIX} 'sink.strategy.on_unmatched': applies to mode update only (this "
        "strategy is delete): it decides what a staged key the target lacks does; remove it"
    )


def test_delete_reads_only_the_key(tmp_path: Path) -> None:
    source = {"options": {"include_columns": ["id", "updated_at", "note"]}}
    spec = spec_with(tmp_path, {"mode": "delete", "unique_key": ["id"]}, source=source)
    assert only_problem(spec) == (
        f"{spec}: {PREFIX} 'source.options.include_columns': lists 'updated_at', 'note': "
        "delete reads only the key (unique_key, and the incremental_column of a column "
        "cursor); remove the other columns"
    )
    # The cursor column of a column-cursor read is the one other column it may carry.
    options = {
        "include_columns": ["id", "updated_at"],
        "incremental_strategy": "column",
        "incremental_column": "updated_at",
    }
    spec = spec_with(
        tmp_path, {"mode": "delete", "unique_key": ["id"]}, source={"options": options}
    )
    assert load_one(spec).source.options.include_columns == ("id", "updated_at")


@pytest.mark.parametrize("mode", ["update", "delete"])
@pytest.mark.parametrize("read", ["column", "xmin"])
def test_update_and_delete_take_incremental_reads(tmp_path: Path, mode: str, read: str) -> None:
    options: dict[str, Any] = {"incremental_strategy": read}
    if read == "column":
        options["incremental_column"] = "updated_at"
    strategy = {"mode": mode, "unique_key": ["id"]}
    spec = load_one(spec_with(tmp_path, strategy, source={"options": options}))
    assert spec.source.options.incremental_strategy == read


def test_update_refuses_cdc(tmp_path: Path) -> None:
    source = {"options": {"incremental_strategy": "cdc"}}
    spec = spec_with(tmp_path, {"mode": "update", "unique_key": ["id"]}, source=source)
    assert only_problem(spec) == (
        f"{spec}: {PREFIX} 'sink.strategy.mode': update cannot take CDC (incremental_strategy: "
        "cdc): a change stream applies inserts, updates and deletes itself; use mode "
        "incremental_merge, or incremental_strategy: column or xmin"
    )


DELTA_SINK = {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/lake/orders"}


@pytest.mark.parametrize("mode", ["update", "delete"])
@pytest.mark.parametrize("read", ["full", "column", "xmin"])
def test_a_delta_sink_takes_update_and_delete(tmp_path: Path, mode: str, read: str) -> None:
    options: dict[str, Any] = {"incremental_strategy": read}
    if read == "column":
        options["incremental_column"] = "updated_at"
    strategy: dict[str, Any] = {"mode": mode, "unique_key": ["id"]}
    if mode == "update":
        strategy["on_unmatched"] = "fail"
    spec = load_one(spec_with(tmp_path, strategy, sink=DELTA_SINK, source={"options": options}))
    assert (spec.sink.type, spec.sink.strategy.mode, spec.sink.path) == (
        "delta",
        mode,
        "/lake/orders",
    )
    assert spec.sink.strategy.on_unmatched == ("fail" if mode == "update" else "ignore")


@pytest.mark.parametrize("mode", ["update", "delete"])
def test_a_delta_sink_refuses_update_and_delete_from_cdc(tmp_path: Path, mode: str) -> None:
    source = {"options": {"incremental_strategy": "cdc"}}
    strategy = {"mode": mode, "unique_key": ["id"]}
    spec = spec_with(tmp_path, strategy, sink=DELTA_SINK, source=source)
    assert only_problem(spec) == (
        f"{spec}: pipeline 'orders': field 'sink.strategy.mode': {mode} cannot take CDC into a "
        "delta sink: each batch is one Delta merge on the key (updates, inserts, deletes); use "
        "mode incremental_merge with unique_key (the source table's primary key)"
    )


@pytest.mark.parametrize("mode", ["update", "delete"])
def test_a_delta_update_or_delete_still_needs_a_key(tmp_path: Path, mode: str) -> None:
    spec = spec_with(tmp_path, {"mode": mode}, sink=DELTA_SINK)
    assert only_problem(spec) == (
        f"{spec}: pipeline 'orders': field 'sink.strategy.unique_key': is required for mode "
        f"{mode}: it finds the target rows to {mode}; list the key column(s), e.g. [id]"
    )


UPSERT = {"mode": "incremental_merge", "unique_key": ["id"], "merge_policy": "upsert"}


def test_update_columns_are_read_for_upsert(tmp_path: Path) -> None:
    spec = load_one(spec_with(tmp_path, {**UPSERT, "update_columns": ["qty", "Preis €"]}))
    assert spec.sink.strategy.update_columns == ("qty", "Preis €")
    assert load_one(spec_with(tmp_path, UPSERT)).sink.strategy.update_columns is None


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (
            {**UPSERT, "update_columns": ["qty", "id"]},
            "lists id of the unique_key: a conflict means the key is already there, so it is "
            "never updated; remove it from update_columns",
        ),
        (
            {**UPSERT, "update_columns": []},
            "must be a non-empty list of column names, got list []",
        ),
        (
            {**UPSERT, "merge_policy": "delete_insert", "update_columns": ["qty"]},
            "applies to mode incremental_merge with merge_policy: upsert only (this strategy is "
            "incremental_merge/delete_insert): set merge_policy: upsert, or remove update_columns",
        ),
        (
            {"mode": "update", "unique_key": ["id"], "update_columns": ["qty"]},
            "applies to mode incremental_merge with merge_policy: upsert only (this strategy is "
            "update): set merge_policy: upsert, or remove update_columns",
        ),
        ({**UPSERT, "update_columns": ["qty", "qty"]}, "lists qty more than once"),
    ],
)
def test_wrong_update_columns_are_refused(
    tmp_path: Path, strategy: dict[str, Any], message: str
) -> None:
    spec = spec_with(tmp_path, strategy)
    assert only_problem(spec) == f"{spec}: {PREFIX} 'sink.strategy.update_columns': {message}"


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        (
            {"sink": {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/l/o"}},
            "a Delta merge updates every column",
        ),
        (
            {"source": {"options": {"incremental_strategy": "cdc"}}},
            "CDC applies every changed column",
        ),
        (
            {"source": {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/l/s"}},
            "a Delta -> Postgres sync updates every column",
        ),
    ],
)
def test_update_columns_only_where_the_staged_upsert_runs(
    tmp_path: Path, overrides: dict[str, Any], why: str
) -> None:
    spec = spec_with(tmp_path, {**UPSERT, "update_columns": ["qty"]}, **overrides)
    assert (
        "field 'sink.strategy.update_columns': applies to postgres sinks loaded from a postgres "
        f"table (not CDC) for now ({why}); remove it"
    ) in "\n".join(problems_of(spec))


def test_a_schema_wide_update_takes_each_tables_key_and_never_loads_keyless_ones_whole(
    tmp_path: Path,
) -> None:
    spec = wildcard()
    spec["sink"]["strategy"] = {"mode": "update"}
    spec["source"]["options"]["keyless"] = "skip"
    tables = by_table(load(tmp_path, spec, Lister()))
    assert tables["orders"].sink.strategy == StrategySpec(mode="update", unique_key=("id",))
    assert "events" not in tables  # no key: skipped, never turned into a full_refresh

    spec["source"]["options"]["keyless"] = "full_refresh"
    assert (
        "field 'source.options.keyless': full_refresh would make the target of a mode update "
        "pipeline a copy of its source; use keyless: skip or fail"
    ) in problems(tmp_path, spec)
