"""Postgres types arrive in Delta with their values: exact decimals, UTC instants, lists, NULLs.

Each value is compared with what Postgres returns for it through psycopg (an independent
reader), never with pgflow's own rendering. The load's source session runs in a non-UTC time
zone and the reference is read in another one: instants must match whatever the zones.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import psycopg
import pytest
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.delta_sync.run import sync_delta
from pgflow.sources.arrow_errors import ArrowReadError
from pgflow_tests.sinks.delta.conftest import delta_rows, execute, fetch, run_delta

TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN cents AS numeric(12,2);
CREATE TABLE types (
    id int PRIMARY KEY,
    amount numeric(12,2), precise numeric(38,10), loose numeric, wallet cents,
    at timestamptz, local_at timestamp, day date,
    doc jsonb, js json, tags text[], nums int[], floats float8[],
    raw bytea, uid uuid, flag boolean, small int2, big bigint, f4 real, f8 float8,
    label text, code varchar(10), padded char(4), feeling mood, feelings mood[], span interval
);
INSERT INTO types VALUES
 (1, 1234567890.12, 1234567890123456789012345678.0123456789, 1.1234567894999, 0.10,
  '2024-03-10 01:30:00.123456-05', '2024-03-10 02:30:00.000001', '2024-02-29',
  '{"a": [1, "x", null], "b": {"c": true}, "u": "é\\n"}', '{"k" : 1}',
  ARRAY['a', NULL, 'quote "q", comma', E'new\\nline', ''], ARRAY[1, NULL, -3],
  ARRAY[1.5, 'NaN', '-Infinity', NULL]::float8[],
  '\\x00ff0a22', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, -32768, 9223372036854775807,
  1.5, 'NaN', E'multi\\nline "quoted", text\\r\\n', '', 'ab', 'happy', '{ok,NULL,sad}',
  '1 year 2 mons 3 days 04:05:06.5'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, -0.01, -0.0000000001, -999999999999999999999.123456789, -1,
  '1999-12-31 23:59:59.999999+00', '1970-01-01 00:00:00', '0001-01-01',
  '[]', 'null', '{}', '{}', '{}', '\\x', '00000000-0000-0000-0000-000000000000', false,
  0, -1, '-Infinity', 1e-300, 'x', NULL, NULL, 'sad', '{}', '-00:00:01');
"""


@pytest.fixture
def types_table(source_uri: str) -> str:
    execute(source_uri, TYPES_DDL)
    return source_uri


def test_values_round_trip_exactly(types_table, tmp_path):
    run_delta(types_table, tmp_path / "types", table="types", time_zone="America/New_York")

    got = {row["id"]: row for row in pl.read_delta(str(tmp_path / "types")).to_dicts()}
    # The reference: psycopg's own values, in a session of yet another time zone.
    with psycopg.connect(types_table, options="-c TimeZone=Asia/Kathmandu") as conn:
        cursor = conn.execute("SELECT * FROM types ORDER BY id")
        names = [c.name for c in cursor.description]
        expected = {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}

    assert set(got) == {1, 2, 3}
    assert all(value is None for name, value in got[2].items() if name != "id")  # NULLs
    for key in (1, 3):
        have, want = got[key], expected[key]
        assert have["amount"] == want["amount"] and isinstance(have["amount"], Decimal)
        assert have["precise"] == want["precise"]  # 38 digits, exact
        assert have["wallet"] == want["wallet"]  # a domain over numeric(12,2)
        assert have["loose"] == want["loose"]  # unconstrained: every digit kept
        assert have["at"] == want["at"]  # the same instant...
        assert have["at"].utcoffset().total_seconds() == 0  # ...as a UTC-aware value
        assert have["local_at"] == want["local_at"] and have["local_at"].tzinfo is None
        assert have["day"] == want["day"]
        assert json.loads(have["doc"]) == want["doc"]
        assert json.loads(have["js"]) == want["js"]
        assert have["tags"] == want["tags"]
        assert have["nums"] == want["nums"]
        assert _same_floats(have["floats"], want["floats"])
        assert have["raw"] == want["raw"]
        assert have["uid"] == str(want["uid"])
        for name in ("flag", "small", "big", "label", "code", "padded", "feeling"):
            assert have[name] == want[name], name
        assert _same_floats([have["f4"], have["f8"]], [want["f4"], want["f8"]])
        assert have["feelings"] == _enum_list(want["feelings"])
    assert got[1]["span"] == "1 year 2 mons 3 days 04:05:06.5"  # IntervalStyle postgres
    assert got[1]["at"] == datetime(2024, 3, 10, 6, 30, 0, 123456, tzinfo=UTC)
    assert got[3]["day"] == date(1, 1, 1)
    assert got[1]["padded"] == "ab  "  # char(n) keeps its padding


def test_delta_schema_keeps_types(types_table, tmp_path):
    run_delta(types_table, tmp_path / "types", table="types")

    fields = {f.name: f.type for f in DeltaTable(str(tmp_path / "types")).schema().fields}
    kinds = {name: getattr(t, "type", None) for name, t in fields.items()}
    assert kinds["amount"] == "decimal(12,2)"
    assert kinds["precise"] == "decimal(38,10)"
    assert kinds["loose"] == "decimal(38,13)"  # the data's largest scale (13)
    assert kinds["wallet"] == "decimal(12,2)"
    assert kinds["at"] == "timestamp"  # with time zone (UTC instants), never timestamp_ntz
    assert kinds["local_at"] == "timestamp_ntz"
    assert kinds["day"] == "date"
    assert kinds["raw"] == "binary"
    assert kinds["flag"] == "boolean"
    assert kinds["small"] == "short" and kinds["big"] == "long" and kinds["f4"] == "float"
    for name in ("doc", "js", "uid", "label", "padded", "feeling", "span"):
        assert kinds[name] == "string", name
    assert fields["tags"].element_type.type == "string"
    assert fields["nums"].element_type.type == "integer"
    assert fields["floats"].element_type.type == "double"


def test_values_without_an_arrow_form_fail_naming_the_column(source_uri, tmp_path):
    execute(source_uri, "CREATE TABLE orders (id int, amount numeric(10,2))")
    execute(source_uri, "INSERT INTO orders VALUES (1, 'NaN')")
    with pytest.raises(ArrowReadError, match="amount"):
        run_delta(source_uri, tmp_path / "t")
    assert not (tmp_path / "t" / "_delta_log").exists()


def _same_floats(have: list | None, want: list | None) -> bool:
    if have is None or want is None:
        return have is want
    return len(have) == len(want) and all(
        (a is None and b is None)
        or (a is not None and b is not None and (a == b or (math.isnan(a) and math.isnan(b))))
        for a, b in zip(have, want, strict=True)
    )


def _enum_list(value: object) -> list | None:
    # psycopg returns arrays of an unregistered enum as the array's text, e.g. '{ok,NULL,sad}'
    if value is None or isinstance(value, list):
        return value
    text = str(value).strip("{}")
    return [None if v == "NULL" else v for v in text.split(",")] if text else []


# -- unconstrained numerics: exact, or refused before anything is written --------------------


def test_unconstrained_numerics_keep_every_digit(source_uri, tmp_path):
    execute(source_uri, "CREATE TABLE orders (id int, n numeric)")
    execute(
        source_uri,
        "INSERT INTO orders VALUES (1, pi()::numeric), (2, 0.00000000000000000001),"
        " (3, -123456789012345678), (4, NULL)",
    )
    run_delta(source_uri, tmp_path / "t")

    field = DeltaTable(str(tmp_path / "t")).schema().fields[1]
    assert field.type.type == "decimal(38,20)"  # the largest scale read: 1e-20's
    got = [r[1] for r in delta_rows(tmp_path / "t")]
    want = [r[0] for r in fetch(source_uri, "SELECT n FROM orders ORDER BY id")]
    assert got == want and got[3] is None
    assert got[0] == Decimal("3.14159265358979")


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        ("('NaN')", "'NaN'"),
        ("('-Infinity')", "'-Infinity'"),
        ("(1e38)", "'1" + "0" * 38 + "'"),
        ("(1e-39)", "'0." + "0" * 38 + "1'"),
        ("(1e29), (1e-10)", "'0.0000000001'"),  # each fits, not both at one scale
    ],
)
def test_unconstrained_numerics_no_decimal_holds_fail_before_writing(
    source_uri, tmp_path, values, shown
):
    execute(source_uri, 'CREATE TABLE "Odd ""Orders"" é" ("Amount é" numeric)')
    execute(source_uri, f'INSERT INTO "Odd ""Orders"" é" VALUES {values}')
    with pytest.raises(ArrowReadError) as failed:
        run_delta(source_uri, tmp_path / "t", table='Odd "Orders" é')
    message = str(failed.value)
    assert message.startswith(
        'reading public.Odd "Orders" é: column Amount é (numeric) holds ' + shown
    )
    assert message.endswith(
        "which no Delta decimal (at most 38 digits) can hold exactly; nothing was written. Set "
        "sink.options.numeric_as: string to carry unconstrained numerics as their exact text, "
        "or declare the column numeric(p,s) with p <= 38 in the source"
    )
    assert not (tmp_path / "t").exists()


def test_numeric_as_string_carries_the_exact_text(source_uri, sink_uri, tmp_path):
    execute(source_uri, "CREATE TABLE orders (id int PRIMARY KEY, n numeric, m numeric(5,1))")
    execute(
        source_uri,
        "INSERT INTO orders VALUES (1, 'NaN', 1.5), (2, '-Infinity', NULL), (3, 1.50, -9.9),"
        " (4, 1e-40, 0), (5, NULL, NULL)",
    )
    run_delta(source_uri, tmp_path / "t", numeric_as="string")

    fields = {f.name: f for f in DeltaTable(str(tmp_path / "t")).schema().fields}
    assert fields["n"].type.type == "string"
    assert fields["m"].type.type == "decimal(5,1)"  # a declared precision stays a decimal
    want = fetch(source_uri, "SELECT n::text FROM orders ORDER BY id")
    assert [(r[1],) for r in delta_rows(tmp_path / "t")] == want
    # ... and comes back as numeric, every value as it was.
    target = TableName("gold", "orders")
    sync_delta(sink_uri, str(tmp_path / "t"), target, ("id",), pipeline="orders")
    assert fetch(
        sink_uri,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'gold.orders'::regclass AND attname = 'n'",
    ) == [("numeric",)]
    assert fetch(sink_uri, "SELECT n::text FROM gold.orders ORDER BY id") == want


def test_an_existing_table_keeps_its_scale_and_refuses_more(source_uri, tmp_path):
    execute(source_uri, "CREATE TABLE orders (id int, n numeric)")
    execute(source_uri, "INSERT INTO orders VALUES (1, 1.5)")
    append = StrategySpec(mode="incremental_append")
    run_delta(source_uri, tmp_path / "t", append)
    execute(source_uri, "INSERT INTO orders VALUES (2, 1.0000000001)")
    version = DeltaTable(str(tmp_path / "t")).version()

    with pytest.raises(ArrowReadError) as failed:
        run_delta(source_uri, tmp_path / "t", append)
    assert str(failed.value) == (
        "reading public.orders: column n (numeric) holds '1.0000000001', which the Delta "
        "table's Decimal(38,9) column can hold exactly; nothing was written. Set "
        "sink.options.numeric_as: string to carry unconstrained numerics as their exact text, "
        "or run once with reset to choose the scale again, or declare the column "
        "numeric(p,s) with p <= 38 in the source"
    )
    assert DeltaTable(str(tmp_path / "t")).version() == version

    run_delta(source_uri, tmp_path / "t", append, reset=True)
    assert DeltaTable(str(tmp_path / "t")).schema().fields[1].type.type == "decimal(38,10)"
    assert sorted(r[1] for r in delta_rows(tmp_path / "t")) == [
        Decimal("1.0000000001"),
        Decimal("1.5"),
    ]


# -- arrays: typed lists, or refused in a few words ------------------------------------------


def test_arrays_are_typed_lists(source_uri, tmp_path):
    execute(
        source_uri,
        "CREATE TABLE orders (id int, amounts numeric(10,2)[], days date[], at timestamptz[],"
        " local timestamp[], ids uuid[], spans interval[], flags bool[], docs jsonb[])",
    )
    execute(
        source_uri,
        "INSERT INTO orders VALUES (1, '{1.50,NULL,-2}', '{2024-02-29,NULL}',"
        " '{\"2024-01-01 10:00+02\"}', '{\"2024-01-01 10:00\"}',"
        " '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}', '{\"1 day\",-00:00:01}',"
        " '{t,f,NULL}', ARRAY['{\"a\": 1}'::jsonb]), (2, '{}', '{}', '{}', '{}', '{}', '{}',"
        " '{}', '{}')",
    )
    run_delta(source_uri, tmp_path / "t", time_zone="Asia/Kathmandu")

    frame = pl.read_delta(str(tmp_path / "t")).sort("id")
    assert frame.schema["amounts"] == pl.List(pl.Decimal(10, 2))
    assert frame.schema["days"] == pl.List(pl.Date)
    assert frame.schema["at"] == pl.List(pl.Datetime("us", "UTC"))
    assert frame.schema["local"] == pl.List(pl.Datetime("us"))
    for name in ("ids", "spans", "docs"):
        assert frame.schema[name] == pl.List(pl.String), name
    first = frame.row(0, named=True)
    assert first["amounts"] == [Decimal("1.50"), None, Decimal("-2.00")]
    assert first["days"] == [date(2024, 2, 29), None]
    assert first["at"] == [datetime(2024, 1, 1, 8, tzinfo=UTC)]
    assert first["local"] == [datetime(2024, 1, 1, 10)]
    assert first["ids"] == ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None]
    assert first["spans"] == ["1 day", "-00:00:01"]
    assert first["flags"] == [True, False, None]
    assert first["docs"] == ['{"a": 1}']
    assert all(v == [] for k, v in frame.row(1, named=True).items() if k != "id")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("[0:1]={1,2}", "its lower bound is not 1"),
        ("{{1,2},{3,4}}", "it has several dimensions"),
        ("[0:1][1:1]={{1},{2}}", "it has several dimensions"),
    ],
)
def test_arrays_a_list_cannot_hold_are_refused(source_uri, tmp_path, value, why):
    execute(source_uri, 'CREATE TABLE orders (id int, "Nums" int[])')
    execute(source_uri, "INSERT INTO orders VALUES (1, '{1}'), (2, %s)", (value,))
    with pytest.raises(ArrowReadError) as failed:
        run_delta(source_uri, tmp_path / "t")
    assert str(failed.value) == (
        f"reading public.orders: column Nums (integer[]) holds the array {value}, which a "
        f"Delta list cannot hold faithfully ({why}); nothing was written. Store it "
        "one-dimensional and 1-based in the source, or read it as text through a view (e.g. "
        "the column cast ::text)"
    )
    assert not (tmp_path / "t" / "_delta_log").exists()
