"""The bench's report: a run of some scenarios keeps the others' figures from earlier runs,
each labelled with the run it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_report

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


def full_run(rows: int, **extra: object) -> dict[str, object]:
    """A published run of one scenario: the pipe and pgflow, one repetition each."""
    runs = [
        {"scenario": "full_refresh", "tool": tool, "repetition": 0, "wall": wall, "rows": rows,
         "rss_mb": 30.0, "own_seconds": None, "valid": True, "note": ""}
        for tool, wall in ((bench_report.LIMIT, 2.0), ("pgflow exchange, 2 streams", 2.5))
    ]  # fmt: skip
    return {
        **results("2026-11-22", ["full_refresh"]),
        "rows": rows,
        "runs": runs,
        "machine": MACHINE,
        "row_bytes": 100.0,
        "source_table_bytes": rows * 100,
        **extra,
    }


@pytest.mark.parametrize(
    ("rows", "settings", "shown"),
    [
        (2_000_000, None, True),
        (10_000_000, None, False),
        (2_000_000, {"shared_buffers": "2GB"}, False),
    ],
    ids=["default_run", "other_size", "other_settings"],
)
def test_only_the_default_run_replaces_the_project_readmes_results(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: int,
    settings: dict[str, str] | None,
    shown: bool,
) -> None:
    monkeypatch.setattr(bench_report, "OUT", tmp_path / "bench")
    project = tmp_path / "README.md"
    monkeypatch.setattr(bench_report, "PROJECT_README", project)
    before = (
        f"# pgflow\n\n## Tests and benchmark\n\n{bench_report.SUMMARY_START}\nold figures\n"
        f"{bench_report.SUMMARY_END}\n\n## After\n"
    )
    project.write_text(before)
    # The chart needs matplotlib (the bench extra); an empty file stands for it here.
    monkeypatch.setattr(bench_report, "chart", lambda _, path: path.write_bytes(b"") or True)

    bench_report.publish(full_run(rows, server_settings=settings))

    text = project.read_text()
    if not shown:
        assert text == before
        return
    assert "old figures" not in text
    assert text.endswith(f"{bench_report.SUMMARY_END}\n\n## After\n")
    assert "| full_refresh | pgflow exchange, 2 streams | 2.50 |" in text
    assert "![rows/s per tool](bench/chart-2000000.png)" in text
