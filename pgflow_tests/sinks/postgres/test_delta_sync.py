"""Delta -> Postgres sync against a real Postgres and real Delta tables (no mocks).

Failures are injected by wrapping functions the sync calls per batch (apply_batch,
read_batches); a killed backend is killed for real with pg_terminate_backend.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from deltalake import DeltaTable, write_deltalake

from pgflow.config.model import TableName
from pgflow.sinks.postgres import delta_sync
from pgflow.sinks.postgres.delta_sync import (
    ConcurrentSync,
    DeltaSyncError,
    DuplicateKeyError,
    SyncResult,
    sync_delta,
)
from pgflow.sinks.postgres.sync_settings import (
    SyncSettings,
    SyncSettingsError,
    backoff_seconds,
)
from pgflow.sources import delta
from pgflow_tests.pg import execute, fetch

TARGET = TableName("gold", "orders")
SETTINGS = SyncSettings(
    postgres_batch_size=500,
    delta_batch_size=300,
    postgres_max_retries=3,
    postgres_retry_delay=0.01,
    delta_max_retries=3,
    delta_retry_delay=0.01,
)
COLUMNS = ["id", "customer_id", "status", "amount", "created_at", "note"]
UTC = dt.UTC
START = dt.datetime(2024, 1, 1, tzinfo=UTC)


def orders(lo: int, hi: int) -> pl.DataFrame:
    ids = pl.int_range(lo, hi)
    return pl.select(
        id=ids,
        customer_id=(ids % 97).cast(pl.Int32),
        status=pl.when(ids % 3 == 0).then(pl.lit("new")).otherwise(pl.lit("paid")),
        amount=((ids * 37) % 100_000).cast(pl.Decimal(12, 2)) / 100,
        created_at=pl.lit(START) + pl.duration(minutes=ids),
        note=pl.when(ids % 10 == 0).then(None).otherwise(pl.format("note {}", ids)),
    ).with_columns(pl.col("amount").cast(pl.Decimal(12, 2)))


def write_files(path: str, frame: pl.DataFrame, files: int, **options: Any) -> None:
    """`frame` in `files` appends: the latest version has `files` data files."""
    size = math.ceil(frame.height / files)
    for i in range(files):
        write_deltalake(path, frame.slice(i * size, size), mode="append", **options)


def sync(uri: str | Callable[[], psycopg.Connection], path: str, **options: Any) -> SyncResult:
    options.setdefault("settings", SETTINGS)
    return sync_delta(uri, path, TARGET, ("id",), pipeline="orders", **options)


def target_rows(uri: str, columns: list[str] = COLUMNS) -> list[tuple]:
    return fetch(uri, f"SELECT {', '.join(columns)} FROM gold.orders ORDER BY id")


def delta_rows(path: str, columns: list[str] = COLUMNS) -> list[tuple]:
    return pl.read_delta(path).select(columns).sort("id").rows()


def hashes(uri: str) -> dict[int, tuple[str, dt.datetime]]:
    return {r[0]: (r[1], r[2]) for r in fetch(uri, "SELECT id, hdiff, sync_ldts FROM gold.orders")}


class FailOnCall:
    """Wraps a function; raises `error` on the listed calls (1-based), else delegates."""

    def __init__(self, function: Callable, error: BaseException | None, calls: set[int]):
        self.function = function
        self.error = error
        self.calls = calls
        self.count = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        if self.count in self.calls and self.error is not None:
            raise self.error
        return self.function(*args, **kwargs)


# -- loads, staleness, changes -------------------------------------------------------------


def test_initial_load_equals_the_delta_table(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 3000), files=4)

    result = sync(sink_uri, path)

    assert not result.skipped and result.plan == "full" and result.created_target
    assert (result.files_total, result.files_planned, result.files_synced) == (4, 4, 4)
    assert result.rows_read == result.rows_inserted == 3000
    assert result.rows_updated == result.rows_unchanged == result.rows_deleted == 0
    assert target_rows(sink_uri) == delta_rows(path)
    types = dict(
        fetch(
            sink_uri,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'gold.orders'::regclass AND attnum > 0",
        )
    )
    assert types == {
        "id": "bigint",
        "customer_id": "integer",
        "status": "text",
        "amount": "numeric(12,2)",
        "created_at": "timestamp with time zone",
        "note": "text",
        "hdiff": "text",
        "sync_ldts": "timestamp with time zone",
    }
    (key,) = fetch(
        sink_uri,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'gold.orders'::regclass AND contype = 'p'",
    )
    assert key == ("PRIMARY KEY (id)",)


def test_an_unchanged_rerun_is_skipped_by_version(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 1000), files=2)
    first = sync(sink_uri, path)
    before = hashes(sink_uri)

    again = sync(sink_uri, path)

    assert again.skipped and again.plan == "skip"
    assert again.version == first.version == 1
    assert "already synced" in again.reason
    assert again.rows_read == again.rows_written == 0
    assert hashes(sink_uri) == before  # nothing touched, sync_ldts included
    # Only the version decides: a target whose clock says otherwise is not consulted.
    execute(sink_uri, "UPDATE gold.orders SET sync_ldts = '2000-01-01'")
    assert sync(sink_uri, path).skipped


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


def test_new_files_only_after_an_append(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 2000), files=4)
    sync(sink_uri, path)
    write_deltalake(path, orders(2000, 2100), mode="append")

    result = sync(sink_uri, path)

    assert result.plan == "new_files" and result.base_version == 3
    assert (result.files_total, result.files_planned) == (5, 1)
    assert result.rows_read == result.rows_inserted == 100
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


def test_a_dropped_target_is_recreated_not_skipped(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 500), files=1)
    sync(sink_uri, path)
    execute(sink_uri, "DROP TABLE gold.orders")

    result = sync(sink_uri, path)

    assert result.created_target and result.rows_inserted == 500
    assert target_rows(sink_uri) == delta_rows(path)


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


# -- resume ------------------------------------------------------------------------------


# Delta batches of 400 end a file with a short one; of 500 and 1000, with a full one, which
# only the file's row count tells apart from a batch in the middle.
@pytest.mark.parametrize("delta_batch_size", [400, 500, 1000])
def test_resume_after_a_failure_continues_after_the_last_synced_file(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch, delta_batch_size: int
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 6000), files=6)  # 1000 rows a file, a file a batch
    settings = SyncSettings(postgres_batch_size=1000, delta_batch_size=delta_batch_size)
    failing = FailOnCall(delta_sync.apply_batch, RuntimeError("injected"), {4})
    monkeypatch.setattr(delta_sync, "apply_batch", failing)

    with pytest.raises(RuntimeError, match="injected"):
        sync(sink_uri, path, settings=settings)
    assert fetch(sink_uri, "SELECT count(*) FROM gold.orders") == [(3000,)]
    monkeypatch.setattr(delta_sync, "apply_batch", failing.function)

    result = sync(sink_uri, path, settings=settings)

    assert result.plan == "resume"
    assert (result.resumed_from_file, result.resumed_from_row) == (3, 0)
    assert result.files_synced == 3
    assert result.rows_read == result.rows_inserted == 3000
    assert target_rows(sink_uri) == delta_rows(path)
    assert sync(sink_uri, path, settings=settings).skipped


def test_resume_within_a_file(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 6000), files=6)
    settings = SyncSettings(postgres_batch_size=700, delta_batch_size=300)  # batches span files
    failing = FailOnCall(delta_sync.apply_batch, RuntimeError("injected"), {3})
    monkeypatch.setattr(delta_sync, "apply_batch", failing)
    with pytest.raises(RuntimeError):
        sync(sink_uri, path, settings=settings)
    monkeypatch.setattr(delta_sync, "apply_batch", failing.function)

    result = sync(sink_uri, path, settings=settings)

    assert (result.resumed_from_file, result.resumed_from_row) == (1, 400)  # 2 x 700 done
    assert result.rows_read == 6000 - 1400
    assert result.rows_inserted == 4600 and result.rows_updated == 0
    assert target_rows(sink_uri) == delta_rows(path)


def test_a_version_change_after_a_failure_starts_over(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 4000), files=4)
    settings = SyncSettings(postgres_batch_size=1000)
    failing = FailOnCall(delta_sync.apply_batch, RuntimeError("injected"), {3})
    monkeypatch.setattr(delta_sync, "apply_batch", failing)
    with pytest.raises(RuntimeError):
        sync(sink_uri, path, settings=settings)
    monkeypatch.setattr(delta_sync, "apply_batch", failing.function)
    assert fetch(sink_uri, "SELECT count(*) FROM gold.orders") == [(2000,)]  # 2 of 4 files
    (doomed,) = fetch(sink_uri, "SELECT count(*) FROM gold.orders WHERE id < 100")[0]
    DeltaTable(path).delete("id < 100")
    write_deltalake(path, orders(4000, 4500), mode="append")

    result = sync(sink_uri, path, settings=settings, deletes="key_pass")

    assert result.plan == "full" and "starts over" in result.reason
    assert result.resumed_from_file is None
    assert result.files_synced == result.files_total == 5
    assert result.rows_read == 4400
    # Files go in path order: which 2000 rows the failed run applied is the order's affair.
    assert result.rows_unchanged == 2000 - doomed
    assert result.rows_inserted == 4400 - result.rows_unchanged
    assert result.rows_deleted == doomed
    assert target_rows(sink_uri) == delta_rows(path)


# -- hdiff -------------------------------------------------------------------------------


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


# -- types -------------------------------------------------------------------------------


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


def test_repeated_or_null_keys_fail_clearly(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "dups")
    write_deltalake(path, pl.DataFrame({"id": [1, 2, 2], "v": ["a", "b", "c"]}))
    with pytest.raises(DuplicateKeyError, match=r"repeats the key \(id\)"):
        sync(sink_uri, path)
    nulls = str(tmp_path / "nulls")
    write_deltalake(nulls, pl.DataFrame({"id": [1, None], "v": ["a", "b"]}))
    with pytest.raises(DeltaSyncError, match="NULL in the key"):
        sync_delta(sink_uri, nulls, TableName("gold", "n"), ("id",), pipeline="n")
    with pytest.raises(DeltaSyncError, match="not in Delta table"):
        sync_delta(sink_uri, nulls, TableName("gold", "n"), ("nope",), pipeline="n")


# -- deletes -----------------------------------------------------------------------------


@pytest.mark.parametrize("deletes", ["none", "key_pass"])
def test_deletes_none_keeps_and_key_pass_removes(
    tmp_path: Path, sink_uri: str, deletes: str
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 3000), files=3)
    sync(sink_uri, path, deletes=deletes)
    DeltaTable(path).delete("id % 10 = 0")

    result = sync(sink_uri, path, deletes=deletes)

    if deletes == "none":
        assert result.rows_deleted == 0
        assert fetch(sink_uri, "SELECT count(*) FROM gold.orders") == [(3000,)]
    else:
        assert result.rows_deleted == 300 and result.deletes == "key_pass"
        assert target_rows(sink_uri) == delta_rows(path)


def test_deletes_from_the_change_data_feed(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    cdf = {"delta.enableChangeDataFeed": "true"}
    write_files(path, orders(0, 2000), files=2, configuration=cdf)
    first = sync(sink_uri, path, deletes="cdf")
    assert first.rows_deleted == 0
    table = DeltaTable(path)
    table.delete("id < 50")  # gone
    write_deltalake(path, orders(10, 20), mode="append")  # ... but 10..19 come back
    DeltaTable(path).update(updates={"status": "'late'"}, predicate="id = 1500")

    result = sync(sink_uri, path, deletes="cdf")

    assert result.deletes == "cdf"
    assert result.rows_deleted == 40
    assert result.rows_updated == 1
    assert target_rows(sink_uri) == delta_rows(path)


def test_an_unreadable_change_data_feed_falls_back_to_key_pass(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    options = {"configuration": {"delta.enableChangeDataFeed": "true"}}
    write_deltalake(path, orders(0, 1000), **options)  # version 0
    sync(sink_uri, path, deletes="cdf")  # synced: version 0
    write_deltalake(path, orders(1000, 2000), mode="append")  # version 1
    DeltaTable(path).delete("id % 500 = 0")  # version 2: 0, 500, 1000, 1500
    # A feed that cannot be read (e.g. its files were vacuumed away): not a transient error.
    unreadable = FailOnCall(delta.deleted_keys, ValueError("cdc file missing"), {1})
    monkeypatch.setattr(delta, "deleted_keys", unreadable)

    result = sync(sink_uri, path, deletes="cdf")

    assert result.deletes.startswith(
        "key_pass (the change data feed of versions 1..2 is unreadable"
    )
    assert result.rows_deleted == 2  # 0 and 500: the target never had 1000 and 1500
    assert target_rows(sink_uri) == delta_rows(path)


def test_a_first_sync_interrupted_then_resumed_with_cdf_deletes_by_keys(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    options = {"configuration": {"delta.enableChangeDataFeed": "true"}}
    write_files(path, orders(0, 2000), files=2, **options)
    failing = FailOnCall(delta_sync.apply_batch, RuntimeError("injected"), {3})
    monkeypatch.setattr(delta_sync, "apply_batch", failing)
    with pytest.raises(RuntimeError):
        sync(sink_uri, path, deletes="cdf")  # the first sync stops halfway: none finished
    monkeypatch.setattr(delta_sync, "apply_batch", failing.function)
    DeltaTable(path).delete("id % 500 = 0")  # 2 rows of each file

    # No sync finished: the target may hold rows the feed never saw, so keys decide.
    result = sync(sink_uri, path, deletes="cdf")

    assert result.deletes == "key_pass (no finished sync to read the change data feed from)"
    assert result.rows_deleted == 2  # the 2 of the file the interrupted sync applied
    assert target_rows(sink_uri) == delta_rows(path)


def test_cdf_deletes_need_the_change_data_feed(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_deltalake(path, orders(0, 10))
    with pytest.raises(DeltaSyncError, match="enableChangeDataFeed"):
        sync(sink_uri, path, deletes="cdf")


# -- retries -----------------------------------------------------------------------------


def test_a_transient_postgres_error_is_retried(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 2000), files=2)
    failing = FailOnCall(delta_sync.apply_batch, psycopg.OperationalError("flaky"), {2})
    monkeypatch.setattr(delta_sync, "apply_batch", failing)

    result = sync(sink_uri, path)

    assert result.retries == 1
    assert result.rows_inserted == 2000 and result.files_synced == 2
    assert target_rows(sink_uri) == delta_rows(path)


def test_a_killed_backend_is_reconnected_and_retried(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 3000), files=3)
    original = delta_sync.apply_batch
    killed: list[int] = []

    def kill_once(log, *args: Any, **kwargs: Any):
        if len(killed) == 0 and fetch(sink_uri, "SELECT count(*) FROM gold.orders")[0][0] > 0:
            pid = log.conn.info.backend_pid
            execute(sink_uri, "SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)
        return original(log, *args, **kwargs)

    monkeypatch.setattr(delta_sync, "apply_batch", kill_once)

    result = sync(sink_uri, path)

    assert len(killed) == 1 and result.retries == 1
    assert result.rows_inserted == 3000
    assert target_rows(sink_uri) == delta_rows(path)


def test_a_transient_delta_read_error_is_retried(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 3000), files=3)
    failing = FailOnCall(delta.read_batches, OSError("connection reset by peer"), {2})
    monkeypatch.setattr(delta, "read_batches", failing)

    result = sync(sink_uri, path)

    assert result.retries == 1
    assert target_rows(sink_uri) == delta_rows(path)


def test_retries_run_out_and_other_errors_raise_at_once(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 1000), files=1)
    always = FailOnCall(delta_sync.apply_batch, psycopg.OperationalError("down"), set(range(99)))
    monkeypatch.setattr(delta_sync, "apply_batch", always)
    settings = SyncSettings(postgres_max_retries=2, postgres_retry_delay=0)
    with pytest.raises(psycopg.OperationalError, match="down"):
        sync(sink_uri, path, settings=settings)
    assert always.count == 3  # the first try and two retries

    at_once = FailOnCall(always.function, ValueError("bad data"), {1})
    monkeypatch.setattr(delta_sync, "apply_batch", at_once)
    with pytest.raises(ValueError, match="bad data"):
        sync(sink_uri, path, settings=settings)
    assert at_once.count == 1


def test_a_retry_stops_when_another_run_moved_the_position(
    tmp_path: Path, sink_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "orders")
    write_files(path, orders(0, 2000), files=2)
    original = delta_sync.apply_batch

    def other_run_then_fail(*args: Any, **kwargs: Any):
        if fetch(sink_uri, "SELECT count(*) FROM gold.orders")[0][0] > 0:
            execute(
                sink_uri,
                'UPDATE _pgflow.pipeline_state SET value = replace(value, \'"run": "\','
                ' \'"run": "someone-else-\')',
            )
            raise psycopg.OperationalError("connection lost")
        return original(*args, **kwargs)

    monkeypatch.setattr(delta_sync, "apply_batch", other_run_then_fail)
    with pytest.raises(ConcurrentSync, match="changed while this run was retrying"):
        sync(sink_uri, path)


def test_an_empty_table_and_an_empty_version(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "orders")
    write_deltalake(path, orders(0, 0))
    first = sync(sink_uri, path, deletes="key_pass")
    assert first.created_target and first.rows_read == 0 and first.files_total == 0
    write_deltalake(path, orders(0, 10), mode="append")
    DeltaTable(path).delete("id >= 0")  # a version with no files at all

    result = sync(sink_uri, path, deletes="key_pass")

    assert (result.files_total, result.rows_read, result.rows_deleted) == (0, 0, 0)
    assert fetch(sink_uri, "SELECT count(*) FROM gold.orders") == [(0,)]


# -- settings ----------------------------------------------------------------------------


def test_settings_come_from_the_environment_and_are_checked() -> None:
    assert SyncSettings.from_env({}) == SyncSettings()
    defaults = SyncSettings()
    assert (defaults.postgres_batch_size, defaults.delta_batch_size) == (10_000, 100_000)
    assert (defaults.postgres_max_retries, defaults.delta_max_retries) == (10, 5)
    assert (defaults.postgres_retry_delay, defaults.delta_retry_delay) == (1.0, 10.0)
    env = {
        "POSTGRES_CLIENT_BATCH_SIZE": "250",
        "POSTGRES_RETRY_DELAY": "0.5",
        "DELTA_CLIENT_WRITE_RETRIES": "0",
    }
    settings = SyncSettings.from_env(env)
    assert settings.postgres_batch_size == 250
    assert settings.postgres_retry_delay == 0.5
    assert settings.delta_max_retries == 0

    bad = [
        ("POSTGRES_CLIENT_BATCH_SIZE", "abc"),
        ("POSTGRES_CLIENT_BATCH_SIZE", "0"),
        ("DELTA_CLIENT_BATCH_SIZE", "1.5"),
        ("POSTGRES_MAX_RETRIES", "-1"),
        ("POSTGRES_RETRY_DELAY", "nan"),
        ("DELTA_CLIENT_WRITE_RETRY_DELAY", "-3"),
    ]
    for variable, value in bad:
        with pytest.raises(SyncSettingsError, match=f"{variable}.*{value}"):
            SyncSettings.from_env({variable: value})
    with pytest.raises(SyncSettingsError, match="POSTGRES_CLIENT_BATCH_SIZE"):
        SyncSettings(postgres_batch_size=0)


def test_backoff_is_exponential_with_full_jitter() -> None:
    import random

    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (20, 300.0)]:
        waits = [backoff_seconds(attempt, 1.0, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # spread over the whole range
