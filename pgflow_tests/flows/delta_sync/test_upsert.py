"""The upsert writes exactly the changed rows; a full pass repairs the target; the hdiff is
the md5 of the canonical row text, the same whatever the session settings or database."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow_tests.flows.delta_sync.support import (
    UTC,
    delta_rows,
    hashes,
    orders,
    sync,
    target_rows,
    write_files,
)
from pgflow_tests.pg import execute, fetch


@pytest.mark.parametrize("full_pass", [False, True])
def test_a_new_version_updates_exactly_the_changed_rows(
    tmp_path: Path, sink_uri: str, full_pass: bool
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 10_000), files=5)
    sync(sink_uri, path)
    before = hashes(sink_uri)

    DeltaTable(path).update(updates={"status": "'changed'"}, predicate="id % 100 = 7")  # 1%
    result = sync(sink_uri, path, full_pass=full_pass)

    assert result.plan == ("full" if full_pass else "new_files")
    assert result.rows_updated == 100
    assert result.rows_inserted == result.rows_deleted == 0
    assert result.rows_unchanged == result.rows_read - 100
    after = hashes(sink_uri)
    changed = {i for i in after if after[i] != before[i]}
    assert changed == {i for i in range(10_000) if i % 100 == 7}
    assert all(after[i][1] > before[i][1] for i in changed)  # sync_ldts advanced there only
    # Unchanged rows were not even locked (a lock would dirty their pages and write WAL).
    touched = {r[0] for r in fetch(sink_uri, "SELECT id FROM gold.orders WHERE xmax <> 0")}
    assert touched == changed
    assert target_rows(sink_uri) == delta_rows(path)


def test_a_full_pass_repairs_rows_edited_in_the_target(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 1000), files=2)
    sync(sink_uri, path)
    execute(sink_uri, "UPDATE gold.orders SET status = 'edited' WHERE id = 5")
    execute(sink_uri, "DELETE FROM gold.orders WHERE id = 6")

    result = sync(sink_uri, path, full_pass=True)

    assert not result.skipped and result.plan == "full"
    assert (result.rows_updated, result.rows_inserted) == (1, 1)
    assert target_rows(sink_uri) == delta_rows(path)


def hdiff_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [1, 2, 3],
            "name": ["alice", "", None],
            "amount": pl.Series([Decimal("1.50"), Decimal("-0.10"), None], dtype=pl.Decimal(5, 2)),
            "ts": pl.Series(
                [dt.datetime(2024, 1, 1, 12, tzinfo=UTC), None, dt.datetime(1999, 12, 31, 23, 59)],
                dtype=pl.Datetime("us", "UTC"),
            ),
            "local": [dt.datetime(2024, 3, 31, 2, 30), None, dt.datetime(2024, 1, 1)],
            "ratio": [0.1, 1 / 3, float("inf")],
            "raw": [b"\x00\xff", None, b""],
            "tags": [["a", None], [], None],
            "when": pl.Series(
                [[dt.datetime(2024, 1, 1, tzinfo=UTC)], None, []],
                dtype=pl.List(pl.Datetime("us", "UTC")),
            ),
            "meta": [{"k": 1, "s": "x"}, None, {"k": None, "s": "é"}],
        }
    )


def test_hdiff_is_md5_of_the_canonical_row_text(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_deltalake(path, hdiff_frame().select("id", "name", "amount", "ts"))
    sync(sink_uri, path)

    stored = dict(fetch(sink_uri, "SELECT id, hdiff FROM gold.orders"))

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    # Typed values as Postgres renders them in UTC/ISO; NULL is empty, '' is "".
    assert stored[1] == md5('(alice,1.50,"2024-01-01 12:00:00+00")')
    assert stored[2] == md5('("",-0.10,)')
    assert stored[3] == md5('(,,"1999-12-31 23:59:00+00")')


def test_hdiff_is_stable_across_session_settings_and_databases(
    tmp_path: Path, sink_uri: str, make_database: Callable[[], str]
) -> None:
    path = str(tmp_path / "orders")
    write_deltalake(path, hdiff_frame())
    sync(sink_uri, path)
    other = make_database()
    execute(other, "SELECT 1")
    options = (
        "-c TimeZone=Asia/Kathmandu -c DateStyle=German,DMY -c extra_float_digits=-2"
        " -c bytea_output=escape -c IntervalStyle=sql_standard"
    )

    def connect() -> psycopg.Connection:
        return psycopg.connect(other, autocommit=True, options=options)

    sync(connect, path)

    query = "SELECT id, hdiff FROM gold.orders ORDER BY id"
    assert fetch(other, query) == fetch(sink_uri, query)
    # And a re-sync in a third time zone finds nothing changed.
    write_deltalake(path, hdiff_frame(), mode="overwrite")
    result = sync(connect, path)
    assert result.rows_unchanged == 3 and result.rows_updated == 0
