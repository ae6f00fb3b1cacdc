"""A Delta column holding arrays as text (older pgflow) is not silently cast: refused, then reset."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow.config.model import StrategySpec
from pgflow.sinks.delta.retyped import ColumnRetyped
from pgflow_tests.sinks.delta.conftest import delta_rows, execute, run_delta

APPEND = StrategySpec(mode="incremental_append")


def test_a_list_into_a_text_column_is_refused_until_a_reset(source_uri, tmp_path):
    execute(source_uri, 'CREATE TABLE orders (id int, "Nums é" numeric(10,2)[])')
    execute(source_uri, "INSERT INTO orders VALUES (1, '{1.5,NULL}')")
    old = pl.DataFrame({"id": pl.Series([0], dtype=pl.Int32), "Nums é": ["[1.50]"]})
    write_deltalake(str(tmp_path / "t"), old)  # as pgflow wrote numeric[] before: JSON text

    with pytest.raises(ColumnRetyped) as failed:
        run_delta(source_uri, tmp_path / "t", APPEND)
    assert str(failed.value) == (
        f"the Delta table at {tmp_path / 't'} holds column(s) Nums é (Delta String, source "
        "List(Decimal(precision=10, scale=2))) in another form than this load writes (arrays "
        "are lists; tables written by older pgflow versions kept some as JSON text); nothing "
        "was written. Run once with reset to rewrite the table in the current form"
    )
    assert DeltaTable(str(tmp_path / "t")).version() == 0

    run_delta(source_uri, tmp_path / "t", APPEND, reset=True)
    assert delta_rows(tmp_path / "t") == [(1, [Decimal("1.50"), None])]
