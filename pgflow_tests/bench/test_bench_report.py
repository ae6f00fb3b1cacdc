"""The bench's report: a run of some scenarios keeps the others' figures from earlier runs,
each labelled with the run it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgflow_tests.bench import bench_report

MACHINE = {"cpus": 2, "cpu": "x", "memory_gb": 1, "postgres": "15", "python": "3.11"}


def run(scenario: str, tool: str) -> dict[str, object]:
    return {"scenario": scenario, "tool": tool}


def results(date: str, scenarios: list[str], **extra: object) -> dict[str, object]:
    return {
        "rows": 1000,
        "date": date,
        "repeat": 3,
        "scenarios": scenarios,
        "runs": [run(s, "pgflow") for s in scenarios],
        "failures": [],
        "cdc_changes": 10,
        **extra,
    }


def test_a_partial_run_keeps_earlier_scenarios_under_their_own_dates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_report, "OUT", tmp_path)
    # The stored run: its own incremental figures, cdc, delta and full_refresh from run "A".
    stored = results(
        "B",
        ["full_refresh", "incremental", "cdc", "delta"],
        merged=[{"scenarios": ["cdc", "delta", "full_refresh"], "date": "A", "repeat": 3}],
    )
    (tmp_path / "results-1000.json").write_text(json.dumps(stored))

    now = bench_report.merged(results("C", ["full_refresh"]))

    assert now["merged"] == [
        {"scenarios": ["cdc", "delta"], "date": "A", "repeat": 3},
        {"scenarios": ["incremental"], "date": "B", "repeat": 3},
    ]
    assert now["scenarios"] == ["full_refresh", "incremental", "cdc", "delta"]
    assert [r["scenario"] for r in now["runs"]] == now["scenarios"]
    assert "cdc, delta from the run of A" in bench_report.heading(
        {**now, "source_table_bytes": 1e6, "row_bytes": 100, "machine": MACHINE}
    )
