"""`on_bad_rows` and `max_rejected` at load time: read for the loads that can reject rows,
refused with file, pipeline and field ("not supported yet") for every other load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgflow_tests.config.specs import DROP, load_one, only_problem, pipeline, write

REJECT = {"on_bad_rows": "reject"}


def spec_with(tmp_path: Path, strategy: dict[str, Any], **overrides: Any) -> Path:
    sink = {"strategy": strategy, **overrides.pop("sink", {})}
    return write(tmp_path / "p.yaml", pipeline(sink=sink, **overrides))


@pytest.mark.parametrize(
    "strategy",
    [
        {"mode": "full_refresh"},
        {"mode": "full_refresh", "method": "exchange"},
        {"mode": "incremental_append"},
        {"mode": "incremental_merge", "unique_key": ["id"]},
        {"mode": "incremental_merge", "unique_key": ["id"], "merge_policy": "upsert"},
    ],
)
def test_reject_and_max_rejected_are_read(tmp_path: Path, strategy: dict[str, Any]) -> None:
    spec = load_one(spec_with(tmp_path, {**strategy, **REJECT, "max_rejected": 3}))
    assert (spec.sink.strategy.on_bad_rows, spec.sink.strategy.max_rejected) == ("reject", 3)


def test_the_default_is_fail_with_no_rejected_row_allowed(tmp_path: Path) -> None:
    spec = load_one(spec_with(tmp_path, {"mode": "full_refresh"}))
    assert (spec.sink.strategy.on_bad_rows, spec.sink.strategy.max_rejected) == ("fail", 0)


@pytest.mark.parametrize(
    ("strategy", "overrides", "field", "message"),
    [
        (
            {"mode": "full_refresh", **REJECT},
            {"sink": {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/l/o"}},
            "on_bad_rows",
            "reject is not supported yet for Delta sinks; use fail",
        ),
        (
            {"mode": "incremental_merge", "unique_key": ["id"], **REJECT},
            {"source": {"options": {"incremental_strategy": "cdc"}}},
            "on_bad_rows",
            "reject is not supported yet for CDC or Delta sources (it applies to loads of a "
            "postgres table read in full, by column or by xmin); use fail",
        ),
        (
            {
                "mode": "incremental_merge",
                "unique_key": ["id"],
                "merge_policy": "shadow_swap",
                **REJECT,
            },
            {},
            "on_bad_rows",
            "reject is not supported yet for incremental_merge/shadow_swap (only for "
            "full_refresh/truncate_insert, full_refresh/exchange, incremental_append, "
            "incremental_merge/delete_insert, incremental_merge/upsert); use fail",
        ),
        (
            {"mode": "full_refresh", "method": "exchange", "parallelism": 4, **REJECT},
            {},
            "on_bad_rows",
            "reject is not supported yet with parallelism > 1; use parallelism: 1",
        ),
        (
            {"mode": "full_refresh", "max_rejected": 5},
            {},
            "max_rejected",
            "applies with on_bad_rows: reject only",
        ),
        (
            {"mode": "full_refresh", **REJECT, "max_rejected": -1},
            {},
            "max_rejected",
            "must be a whole number of rows, 0 or more, got -1",
        ),
        (
            {"mode": "full_refresh", "on_bad_rows": "skip"},
            {},
            "on_bad_rows",
            None,
        ),
    ],
)
def test_wrong_bad_row_settings_are_refused(
    tmp_path: Path,
    strategy: dict[str, Any],
    overrides: dict[str, Any],
    field: str,
    message: str | None,
) -> None:
    spec = spec_with(tmp_path, strategy, **overrides)
    problem = only_problem(spec)
    assert problem.startswith(f"{spec}: pipeline '"), problem
    assert f"field 'sink.strategy.{field}': " in problem, problem
    if message is not None:
        assert problem.endswith(message), problem
