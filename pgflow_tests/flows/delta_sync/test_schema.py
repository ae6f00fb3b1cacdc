"""The target's columns: Delta columns added later are added; every Delta type maps to its
Postgres type and its values come back equal."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
from deltalake import write_deltalake

from pgflow_tests.flows.delta_sync.support import (
    COLUMNS,
    START,
    UTC,
    delta_rows,
    orders,
    sync,
    target_rows,
    write_files,
)
from pgflow_tests.pg import fetch


def test_columns_added_to_the_delta_table_are_added_to_the_target(
    tmp_path: Path, sink_uri: str
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 600), files=2)
    sync(sink_uri, path)
    extra = orders(600, 700).with_columns(channel=pl.lit("web"))
    write_deltalake(path, extra, mode="append", schema_mode="merge")

    result = sync(sink_uri, path)

    assert result.columns_added == ("channel",)
    assert result.plan == "full"  # the hash covers the new column: every row is re-hashed
    columns = [*COLUMNS, "channel"]
    assert target_rows(sink_uri, columns) == delta_rows(path, columns)


def test_type_round_trips(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    big = Decimal("1234567890123456789012345678.9012345678")
    text = "tab\there\nnewline\r\\backslash \\N 'quote' \"dq\" ünïcødé 🎉"
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "region": ["eu", "us", None],
            "tiny": pl.Series([-128, None, 127], dtype=pl.Int8),
            "small": pl.Series([-32768, None, 32767], dtype=pl.Int16),
            "int": pl.Series([-(2**31), None, 2**31 - 1], dtype=pl.Int32),
            "big": [-(2**63), None, 2**63 - 1],
            "f4": pl.Series([1.5, None, -0.25], dtype=pl.Float32),
            "f8": [0.1, None, float("nan")],
            "exact": pl.Series([big, None, -big], dtype=pl.Decimal(38, 10)),
            "flag": [True, None, False],
            "s": [text, None, ""],
            "raw": [b"\x00\x01\\\xff", None, b""],
            "day": [dt.date(1, 1, 1), None, dt.date(9999, 12, 31)],
            "ts": pl.Series(
                [dt.datetime(2024, 6, 1, 10, 0, 0, 123456, tzinfo=UTC), None, START],
                dtype=pl.Datetime("us", "UTC"),
            ),
            "naive": [dt.datetime(2024, 3, 31, 2, 30), None, dt.datetime(1900, 1, 1)],
            "tags": [["a", None, "", "NULL", 'q"\\,{}'], None, []],
            "nums": [[1, None, 3], None, []],
            "meta": [{"k": 1, "s": "x\ny", "b": b"\x01"}, None, {"k": None, "s": None, "b": None}],
        }
    )
    write_deltalake(path, frame, partition_by=["region"])

    sync(sink_uri, path)

    types = dict(
        fetch(
            sink_uri,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'gold.orders'::regclass AND attnum > 0",
        )
    )
    assert types["tiny"] == types["small"] == "smallint"
    assert (types["int"], types["big"]) == ("integer", "bigint")
    assert (types["f4"], types["f8"]) == ("real", "double precision")
    assert types["exact"] == "numeric(38,10)"
    assert (types["raw"], types["day"]) == ("bytea", "date")
    assert types["ts"] == "timestamp with time zone"
    assert types["naive"] == "timestamp without time zone"
    assert (types["tags"], types["nums"], types["meta"]) == ("text[]", "bigint[]", "jsonb")

    columns = [c for c in frame.columns if c not in ("f8", "meta")]
    assert target_rows(sink_uri, columns) == frame.select(columns).sort("id").rows()
    f8 = [r[0] for r in fetch(sink_uri, "SELECT f8 FROM gold.orders ORDER BY id")]
    assert f8[0] == 0.1 and f8[1] is None and math.isnan(f8[2])
    meta = [r[0] for r in fetch(sink_uri, "SELECT meta FROM gold.orders ORDER BY id")]
    assert meta == [{"k": 1, "s": "x\ny", "b": "01"}, None, {"k": None, "s": None, "b": None}]
    # Instants, whatever the reading session's time zone.
    with psycopg.connect(sink_uri, options="-c TimeZone=America/Los_Angeles") as conn:
        (ts,) = conn.execute("SELECT ts FROM gold.orders WHERE id = 1").fetchone()
    assert ts == dt.datetime(2024, 6, 1, 10, 0, 0, 123456, tzinfo=UTC)
