"""`pgflow report` on Delta targets: the table's rows and version, read from its log; a path
without a table says so instead of failing the report."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pgflow.config.loader import load_project
from pgflow.report import describe_delta_target
from pgflow_tests.config.specs import DROP, ENV, pipeline, write


def test_a_delta_target_reports_its_rows_and_version(tmp_path: Path) -> None:
    lake = tmp_path / "lake" / "orders"
    sink = {"type": "delta", "connection_id": DROP, "table": DROP, "path": str(lake)}
    spec = write(tmp_path / "p.yaml", pipeline(sink=sink))
    (loaded,) = load_project(spec, environ=ENV).pipelines

    missing = describe_delta_target(loaded, None)
    assert missing.startswith(f"delta/orders                 -> {lake}: unavailable (")

    pl.DataFrame({"id": [1, 2, 3]}).write_delta(str(lake))
    pl.DataFrame({"id": [4]}).write_delta(str(lake), mode="append")
    assert describe_delta_target(loaded, None) == (
        f"delta/orders                 -> {lake}: 4 rows, Delta version 1"
    )
