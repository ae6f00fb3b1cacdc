"""A Postgres table as a polars LazyFrame: values come back exact, or the collect fails;
an unconstrained numeric is never rounded to fit its Decimal(38,9)."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import psycopg
import pytest

from pgflow.config.model import TableName
from pgflow.sources.arrow_errors import ArrowReadError
from pgflow.sources.lazy import scan_postgres_table
from pgflow_tests.pg import execute

TABLE = TableName("public", "Odd Nums ü")


def scan(uri: str) -> pl.LazyFrame:
    return scan_postgres_table(lambda: psycopg.connect(uri), TABLE)


def test_unconstrained_numerics_within_nine_decimals_are_exact(source_uri: str) -> None:
    execute(
        source_uri,
        'CREATE TABLE "Odd Nums ü" (id int, n numeric);'
        """INSERT INTO "Odd Nums ü" VALUES (1, 3.141592653), (2, -0.000000001),
           (3, 1234567890123456789012345678.5), (4, NULL), (5, 2.50)""",
    )
    frame = scan(source_uri).sort("id").collect()
    assert frame.schema["n"] == pl.Decimal(38, 9)
    assert frame["n"].to_list() == [
        Decimal("3.141592653"),
        Decimal("-0.000000001"),
        Decimal("1234567890123456789012345678.5"),
        None,
        Decimal("2.5"),
    ]


@pytest.mark.parametrize("value", ["pi()::numeric", "0.0000000001", "1.0000000005"])
def test_a_value_with_more_decimals_fails_instead_of_rounding(source_uri: str, value: str) -> None:
    execute(
        source_uri,
        f'CREATE TABLE "Odd Nums ü" (id int, n numeric); INSERT INTO "Odd Nums ü" VALUES (1, 1), (2, {value})',
    )
    with pytest.raises(Exception) as raised:
        scan(source_uri).collect()
    message = str(raised.value)
    assert "column n (numeric)" in message
    assert "more than 9 after the point" in message
    assert isinstance(raised.value, ArrowReadError) or "ArrowReadError" in repr(raised.value)
