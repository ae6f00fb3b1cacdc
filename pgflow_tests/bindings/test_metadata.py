"""Load metadata: what the strategy reports beyond the rows written reaches the materialization."""

from __future__ import annotations

from pgflow.bindings.metadata import load_metadata
from pgflow.config.model import TableName
from pgflow.flows.postgres_load import LoadResult
from pgflow.sources.catalog import TableInfo

TARGET = TableName("landing", "orders")


def result(**fields: object) -> LoadResult:
    info = TableInfo(TARGET, (), (), None, False)
    return LoadResult(
        target=TARGET, target_info=info, rows=7, bytes=100, copy_format="binary",
        created_target=False, statements=[], seconds=1.0, copy_seconds=0.5,
        strategy="replace", **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_replace_reports_the_rows_its_predicate_deleted() -> None:
    metadata = load_metadata(result(strategy_metadata={"rows_deleted": 3}), "warehouse")
    assert metadata["pgflow/rows_deleted"].value == 3
    assert metadata["pgflow/rows_written"].value == 7


def test_other_strategies_report_no_deleted_rows() -> None:
    assert "pgflow/rows_deleted" not in load_metadata(result(), "warehouse")
