"""Postgres -> Delta -> Postgres gives back the same table: every column type, every value.

The first hop is pgflow's Delta load, the second its Delta -> Postgres sync; both databases
are real clusters and the Delta table is real. Types are compared as format_type() spells
them, values as Postgres prints them (one fixed session setting on both sides).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pytest
from deltalake import DeltaTable, write_deltalake
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.flows.delta_sync.run import sync_delta
from pgflow.sinks.postgres.delta_types import postgres_column
from pgflow.sources.arrow_errors import ArrowReadError
from pgflow.sources.pg_types import PG_TYPE_KEY
from pgflow_tests.pg import execute
from pgflow_tests.sinks.delta.conftest import run_delta

SOURCE = 'Round "Trip" é'
TARGET = TableName("gold", "Round Trip")
# One column per built-in type family (and their modifiers); every one must come back as is.
FAMILIES = """
CREATE TABLE public."Round ""Trip"" é" (
    id integer PRIMARY KEY,
    i2 smallint, i8 bigint, f4 real, f8 double precision, "Odd Col é" oid,
    n12 numeric(12,2), wide numeric(50,10), loose numeric,
    flag boolean, t text, vc varchar(20), ch char(5), nm name,
    u uuid, j json, jb jsonb, raw bytea,
    d date, tm time(3), ttz time with time zone, ts timestamp(0), tstz timestamptz(3),
    iv interval, ivd interval day to second(2),
    ip inet, net cidr, mac macaddr, mac8 macaddr8,
    r4 int4range, r8 int8range, rn numrange, rts tsrange, rtz tstzrange, rd daterange,
    mon money, b bit(4), vb bit varying(8), x xml,
    tsv tsvector, tsq tsquery, pt point, ln line, bx box, cr circle, pg pg_lsn,
    ints integer[], texts text[], nums numeric(10,2)[], days date[], stamps timestamptz[],
    uuids uuid[], docs jsonb[], ivs interval[], flags boolean[], floats float8[], vcs varchar(3)[]
);
INSERT INTO public."Round ""Trip"" é" VALUES
 (1, -32768, 9223372036854775807, 3.14159, 0.1, 4294967295,
  1234567890.12, 1234567890123456789012345678901234567890.0123456789, pi()::numeric,
  true, E'tab\\there\\nnew \\\\N ''q'' "dq" ünïcødé 🎉', 'varchar é', 'ab', 'a name',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k" : [1, "x"]}', '{"b": {"c": null}, "a": 1.50}',
  '\\x00ff5c0a',
  '0001-01-01', '23:59:59.999', '10:00:00+05:30', '2024-02-29 12:00:01',
  '2024-03-10 01:30:00.123-05',
  '1 year 2 mons 3 days 04:05:06.5', '3 days 00:00:01.25',
  '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
  '[1,5)', '(,10]', '[1.5,2.25]', '[2024-01-01,2024-02-01)', '[2024-01-01 00:00+00,)', 'empty',
  12.34, B'1010', B'101', '<a x="1">é</a>',
  'a fat:2 cat', 'fat & (rat | !cat)', '(1.5,-2)', '{1,-1,0}', '(1,1),(0,0)', '<(0,0),2>',
  '16/B374D848',
  '{1,NULL,-3}', '{"a","",NULL,"q\\"\\\\,{}"}', '{1.50,NULL,-2.25}', '{2024-01-01,NULL}',
  '{"2024-01-01 10:00+02",NULL}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
  ARRAY['{"a": 1}'::jsonb, NULL], '{"1 day",-00:00:01}', '{t,f,NULL}', '{NaN,-Infinity,1e-300}',
  '{abc,"x y"}'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 0, -1, 'Infinity', 'NaN', 0, -0.01, -0.0000000001, -123456789012345678901.5,
  false, '', '', '', '', '00000000-0000-0000-0000-000000000000', 'null', '[]', '\\x',
  '2024-01-01', '00:00', '00:00-12', '1900-01-01 00:00:00', '1970-01-01 00:00:00+00',
  '-00:00:01', '0', '::1', '::/0', '00:00:00:00:00:00', '00:00:00:00:00:00:00:00',
  '[-2147483648,2147483647)', 'empty', '(,)', '(,)', '(,)', '(,)',
  -92233720368547758.08, B'0000', B'', '',
  '', '', '(0,0)', '{0,1,0}', '(0,0),(0,0)', '<(0,0),0>', '0/0',
  '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}');
"""
SETTINGS = "-c TimeZone=Asia/Kathmandu -c DateStyle=ISO -c extra_float_digits=1"


def column_types(uri: str, schema: str, table: str) -> dict[str, str]:
    with psycopg.connect(uri) as conn:
        rows = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (sql.Identifier(schema, table).as_string(conn),),
        ).fetchall()
    return dict(rows)


def values(uri: str, schema: str, table: str, columns: list[str]) -> list[tuple]:
    """Every value as Postgres prints it, except `loose` (compared as a number below)."""
    selected = [
        sql.Identifier(c) if c == "loose" else sql.SQL("{}::text").format(sql.Identifier(c))
        for c in columns
    ]
    query = sql.SQL("SELECT {} FROM {} ORDER BY id").format(
        sql.SQL(", ").join(selected), sql.Identifier(schema, table)
    )
    with psycopg.connect(uri, options=SETTINGS) as conn:
        return conn.execute(query).fetchall()


def test_every_type_family_round_trips(source_uri: str, sink_uri: str, tmp_path: Path) -> None:
    execute(source_uri, FAMILIES)
    path = tmp_path / "lake"
    run_delta(source_uri, path, table=SOURCE, pipeline="round trip")
    sync_delta(sink_uri, str(path), TARGET, ("id",), pipeline="round trip")

    want = column_types(source_uri, "public", SOURCE)
    got = column_types(sink_uri, TARGET.schema, TARGET.name)
    assert {k: v for k, v in got.items() if k not in ("hdiff", "sync_ldts")} == want
    columns = list(want)
    target = values(sink_uri, TARGET.schema, TARGET.name, columns)
    source = values(source_uri, "public", SOURCE, columns)
    differ = [
        (name, t[i], s[i])
        for t, s in zip(target, source, strict=True)
        for i, name in enumerate(columns)
        if t[i] != s[i]
    ]
    assert differ == [] and len(target) == 3
    loose = [r[1] for r in values(sink_uri, TARGET.schema, TARGET.name, ["id", "loose"])]
    assert loose[0] == Decimal("3.14159265358979")  # every digit pi has in Postgres


def test_enums_and_domains_come_back_as_their_portable_type(
    source_uri: str, sink_uri: str, tmp_path: Path
) -> None:
    execute(
        source_uri,
        "CREATE TYPE mood AS ENUM ('sad', 'o''k'); CREATE DOMAIN cents AS numeric(12,2);"
        " CREATE TABLE orders (id int PRIMARY KEY, feeling mood, feelings mood[], price cents);"
        " INSERT INTO orders VALUES (1, 'o''k', '{sad,NULL}', 1.5)",
    )
    run_delta(source_uri, tmp_path / "lake")
    sync_delta(sink_uri, str(tmp_path / "lake"), TARGET, ("id",), pipeline="orders")

    got = column_types(sink_uri, TARGET.schema, TARGET.name)
    assert (got["feeling"], got["feelings"], got["price"]) == ("text", "text[]", "numeric(12,2)")
    assert values(sink_uri, TARGET.schema, TARGET.name, ["feeling", "feelings", "price"]) == [
        ("o'k", "{sad,NULL}", "1.50")
    ]


def test_the_postgres_type_is_recorded_in_the_delta_field_metadata(
    source_uri: str, tmp_path: Path
) -> None:
    execute(
        source_uri,
        "CREATE TABLE orders (id int PRIMARY KEY, code varchar(7), at timestamptz(3), n numeric)",
    )
    run_delta(source_uri, tmp_path / "lake")

    metadata = {f.name: f.metadata for f in DeltaTable(str(tmp_path / "lake")).schema().fields}
    assert metadata == {
        "id": {PG_TYPE_KEY: "integer"},
        "code": {PG_TYPE_KEY: "character varying(7)"},
        "at": {PG_TYPE_KEY: "timestamp(3) with time zone"},
        "n": {PG_TYPE_KEY: "numeric"},
    }


def test_foreign_delta_tables_get_the_closest_postgres_types(sink_uri: str, tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "id": pl.Series([1, 2], dtype=pl.Int32),
            "amount": pl.Series([Decimal("1.25"), None], dtype=pl.Decimal(9, 2)),
            "tags": [["a", None], None],
            "doc": [{"k": 1}, None],
            "small": pl.Series([-1, None], dtype=pl.Int16),
            "big": [2**40, None],
        }
    )
    write_deltalake(str(tmp_path / "foreign"), frame)
    sync_delta(sink_uri, str(tmp_path / "foreign"), TARGET, ("id",), pipeline="foreign")

    got = column_types(sink_uri, TARGET.schema, TARGET.name)
    assert {k: got[k] for k in frame.columns} == {
        "id": "integer",
        "amount": "numeric(9,2)",
        "tags": "text[]",
        "doc": "jsonb",
        "small": "smallint",
        "big": "bigint",
    }
    assert values(sink_uri, TARGET.schema, TARGET.name, ["amount", "tags", "doc"]) == [
        ("1.25", "{a,NULL}", '{"k": 1}'),
        (None, None, None),
    ]


@pytest.mark.parametrize(
    "hostile",
    [
        'integer); DROP TABLE "x"; --',
        "integer primary key",
        "integer references users",
        "integer generated always as identity",
        "integer default 7",
    ],
)
def test_recorded_types_that_are_not_a_type_spelling_are_ignored(hostile: str) -> None:
    # Delta metadata is input: only a type's spelling reaches the DDL, never a constraint.
    assert postgres_column("a", pl.Int32(), False, hostile).type_sql == "integer"
    assert postgres_column("a", pl.Int32(), False, "smallint").type_sql == "smallint"
    assert postgres_column("a", pl.List(pl.Int32()), False, "smallint").type_sql == "integer[]"


def test_dates_and_timestamps_of_every_year_round_trip(
    source_uri: str, sink_uri: str, tmp_path: Path
) -> None:
    execute(
        source_uri,
        "CREATE TABLE orders (id int PRIMARY KEY, d date, ts timestamp(6), tz timestamptz);"
        " INSERT INTO orders VALUES"
        " (1, '4713-01-01 BC', '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC'),"
        " (2, '0044-03-15 BC', '0001-12-31 23:59:59.999999 BC', '0001-01-01 00:00:00+00 BC'),"
        " (3, '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00.000001+00'),"
        " (4, '9999-12-31', '10000-01-01 00:00:00', '12345-06-07 08:09:10.5+00'),"
        " (5, '262142-12-31', '262142-12-31 23:59:59.999999', '1970-01-01 00:00:00+00'),"
        " (6, NULL, NULL, NULL)",
    )
    run_delta(source_uri, tmp_path / "lake", time_zone="Pacific/Chatham")
    sync_delta(sink_uri, str(tmp_path / "lake"), TARGET, ("id",), pipeline="orders")

    years = pl.read_delta(str(tmp_path / "lake")).sort("id").select(pl.col("d").dt.year())
    assert years.to_series().to_list() == [-4712, -43, 1, 9999, 262142, None]
    names = ["id", "d", "ts", "tz"]
    assert values(sink_uri, TARGET.schema, TARGET.name, names) == values(
        source_uri, "public", "orders", names
    )


@pytest.mark.parametrize(
    ("type_sql", "value", "kind"),
    [
        ("date", "infinity", "date"),
        ("timestamp without time zone", "-infinity", "timestamp"),
        ("timestamp with time zone", "infinity", "timestamp"),
        ("date", "262143-01-01", "date"),
        ("timestamp without time zone", "262143-01-01 00:00:00", "timestamp"),
    ],
)
def test_dates_and_timestamps_delta_cannot_hold_are_named(
    source_uri: str, tmp_path: Path, type_sql: str, value: str, kind: str
) -> None:
    execute(source_uri, f'CREATE TABLE orders (id int, "At é" {type_sql})')
    execute(source_uri, "INSERT INTO orders VALUES (1, now()), (2, %s)", (value,))
    with pytest.raises(ArrowReadError) as failed:
        run_delta(source_uri, tmp_path / "lake")
    assert str(failed.value) == (
        f"reading public.orders: column At é ({type_sql}) holds {value!r}, which a Delta "
        f"{kind} cannot hold; nothing was written. Store a finite value (or NULL) in the "
        "source, or read the column as text through a view (e.g. the column cast ::text)"
    )
    assert not DeltaTable.is_deltatable(str(tmp_path / "lake"))
