"""The COPY format: binary unless a column's type does not survive Postgres' own binary
send/receive, then text for the whole load. Real servers; every Postgres -> Postgres path.

The probe test is the evidence for `copy_format.TEXT_ONLY_TYPES`: every built-in type's edge
values go through raw `COPY ... (FORMAT BINARY)` out of one database and into another, and the
types that fail are exactly the ones listed there (and all of them work in text).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres import copy_format
from pgflow.sinks.postgres.cdc import CdcSettings, replicate
from pgflow.sinks.postgres.cdc_apply import CdcTarget
from pgflow.sinks.postgres.load import LoadResult, load_table
from pgflow.sinks.postgres.parallel_exchange import Streams
from pgflow.sources import snapshot_slices
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import drop_slots, execute, slot_name_for, table_text

# Hostile names: a quote, double quotes, capitals, spaces and non-ASCII letters.
SOURCE = TableName("Søk Schema", 'Doc\'s "Ïndex" Q')
TARGET = TableName("landing", 'Doc\'s "Ïndex" Q')
FILLER_ROWS = 2_000  # enough blocks for three parallel slices once slices are made small

SOURCE_DDL = """
CREATE SCHEMA "Søk Schema";
CREATE TABLE "Søk Schema"."Doc's ""Ïndex"" Q" (
    id int PRIMARY KEY, "Day" date NOT NULL, "Updated At" timestamptz NOT NULL,
    "Query ""Q"" Ä" tsquery, "Vec" tsvector, queries tsquery[], n numeric, f8 float8,
    ts timestamp, r int4range, grid int[], pad text
);
"""
COLUMNS = '(id, "Day", "Updated At", "Query ""Q"" Ä", "Vec", queries, n, f8, ts, r, grid, pad)'
# The edge rows: the empty tsquery ('', or a query of stop words only), empty vectors,
# and the binary-safe edge values around them.
EDGE_ROWS = """
(1, '2024-01-01', '2024-01-01', 'cat & !dog:*B <2> "é"', 'a:1A b:2,3 zażółć', '{cat,dog}',
 'NaN', 'Infinity', 'infinity', 'empty', '[0:1]={1,2}', 'x'),
(2, '2024-01-02', '2024-01-01', '', '', ARRAY[''::tsquery, 'a'], 'Infinity',
 '-Infinity', '-infinity', '(,)', '{}', ''),
(3, '2024-01-03', '2024-01-01', to_tsquery('english', 'the & a'), to_tsvector('english', 'the'),
 '{}', '-Infinity', 'NaN', '4713-01-01 BC', '[1,)', '{{1,2},{3,NULL}}', NULL),
(4, '2024-01-04', '2024-01-01', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
"""
FILLER = """
SELECT g, '2024-02-01'::date + g %% 20, '2024-01-01', ('w' || g)::tsquery, ('w' || g)::tsvector,
       ARRAY[('w' || g)::tsquery], g / 7.0, g / 3.0, '2024-01-01', int4range(g, g + 1),
       ARRAY[g], repeat('p', 200)
FROM generate_series(100, 99 + %(rows)s) g
"""
# What the second load must carry: new rows, every one with an empty tsquery.
NEW_ROWS = """
INSERT INTO "Søk Schema"."Doc's ""Ïndex"" Q" {columns}
SELECT 10000 + g, '2024-03-01', '2024-06-01', '', '', ARRAY[''::tsquery], 'NaN',
       'NaN', 'infinity', 'empty', '{}', 'new'
FROM generate_series(1, 5) g
""".replace("{columns}", COLUMNS)


VECTORS = """
CREATE SCHEMA "Søk Schema";
CREATE TABLE "Søk Schema"."Doc's ""Ïndex"" Q" (
    id int PRIMARY KEY, "Updated At" timestamptz NOT NULL DEFAULT '2024-01-01',
    "Two ""Vec"" Ä" int2vector, oids oidvector, "ACL" aclitem, acls aclitem[], i2s int2vector[]
);
INSERT INTO "Søk Schema"."Doc's ""Ïndex"" Q" (id, "Two ""Vec"" Ä", oids, "ACL", acls, i2s) VALUES
    (1, '', '', 'postgres=r/postgres', '{}', ARRAY[''::int2vector]),
    (2, '1 -2 32767', '0 4294967295', 'postgres=arwdDxt/postgres', '{=r/postgres}', '{}'),
    (3, NULL, NULL, NULL, NULL, NULL);
"""


def build_source(uri: str) -> None:
    execute(uri, SOURCE_DDL)
    execute(uri, f'INSERT INTO "Søk Schema"."Doc\'s ""Ïndex"" Q" {COLUMNS} VALUES {EDGE_ROWS}')
    insert = f'INSERT INTO "Søk Schema"."Doc\'s ""Ïndex"" Q" {COLUMNS} {FILLER}'
    execute(uri, insert, {"rows": FILLER_ROWS})


def quoted(table: TableName) -> str:
    return sql.Identifier(table.schema, table.name).as_string(None)


def assert_same(source_uri: str, sink_uri: str) -> None:
    want = table_text(source_uri, quoted(SOURCE))
    have = table_text(sink_uri, quoted(TARGET))
    assert len(have) == len(want) and have == want


# -- one load per path --------------------------------------------------------------------


def plain_load(strategy: StrategySpec, cursor: bool = False) -> Callable[[str, str], LoadResult]:
    def run(source_uri: str, sink_uri: str) -> LoadResult:
        with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
            source = (
                ColumnCursorSource(src, SOURCE, "Updated At")
                if cursor
                else PostgresTableSource(src, SOURCE)
            )
            return load_table(dst, source, TARGET, strategy, pipeline="copy_format")

    return run


def parallel_load(source_uri: str, sink_uri: str) -> LoadResult:
    strategy = StrategySpec(mode="full_refresh", method="exchange", parallelism=3)
    streams = Streams(
        3,
        connect_source=partial(psycopg.connect, source_uri),
        connect_sink=partial(psycopg.connect, sink_uri, autocommit=True),
    )
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        source = PostgresTableSource(src, SOURCE)
        return load_table(dst, source, TARGET, strategy, streams=streams)


def cdc_load(source_uri: str, sink_uri: str) -> LoadResult | None:
    @contextmanager
    def connect(**kwargs: Any) -> Iterator[psycopg.Connection]:
        with psycopg.connect(source_uri, **kwargs) as conn:
            yield conn

    slot = slot_name_for(source_uri)
    strategy = StrategySpec(mode="incremental_merge", unique_key=("id",))
    settings = CdcSettings(slot=slot, publication=slot)
    with psycopg.connect(sink_uri, autocommit=True) as sink:
        result = replicate(connect, sink, SOURCE, CdcTarget(TARGET, strategy), settings, "cdc")
    return result.snapshot


MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
PATHS: dict[str, Callable[[str, str], LoadResult | None]] = {
    "truncate_insert": plain_load(StrategySpec(mode="full_refresh")),
    "exchange": plain_load(StrategySpec(mode="full_refresh", method="exchange")),
    "parallel_exchange": parallel_load,
    "merge_delete_insert": plain_load(MERGE, cursor=True),
    "merge_upsert": plain_load(dataclasses.replace(MERGE, merge_policy="upsert"), cursor=True),
    "merge_shadow_swap": plain_load(
        dataclasses.replace(MERGE, merge_policy="shadow_swap"), cursor=True
    ),
    # The source's key is the target's: only rows of new keys are appended.
    "append": plain_load(
        StrategySpec(mode="incremental_append", unique_key=("id",), only_new_rows=True),
        cursor=True,
    ),
    "replace": plain_load(StrategySpec(mode="replace", custom_predicate="\"Day\" >= '2024-01-01'")),
    "partition_replace": plain_load(StrategySpec(mode="partition_replace", partition_column="Day")),
    "cdc": cdc_load,
}


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_slices, "MIN_BLOCKS_PER_SLICE", 4)


@pytest.mark.parametrize("path", list(PATHS))
def test_an_empty_tsquery_and_empty_vectors_load_exactly_on_every_path(
    source_uri: str, sink_uri: str, small_slices: None, path: str
) -> None:
    """Today: 'malformed tsquery' on every path. The first load creates the target, the
    second goes through the path's own apply (CDC: streams the change in as text)."""
    build_source(source_uri)
    execute(sink_uri, "CREATE SCHEMA landing")
    run = PATHS[path]
    try:
        first = run(source_uri, sink_uri)
        assert first is not None and first.copy_format == "text"
        assert_same(source_uri, sink_uri)
        execute(source_uri, NEW_ROWS)
        second = run(source_uri, sink_uri)
        if path == "parallel_exchange":
            assert second is not None and second.streams == 3
        if second is not None:  # CDC's second run streams changes; no snapshot
            assert second.copy_format == "text" and second.rows_read > 0
        assert_same(source_uri, sink_uri)
    finally:
        drop_slots(source_uri, slot_name_for(source_uri))


@pytest.mark.parametrize("path", ["truncate_insert", "merge_upsert", "cdc"])
def test_empty_int2vector_and_oidvector_and_aclitem_load_exactly(
    source_uri: str, sink_uri: str, path: str
) -> None:
    """Today: 'no binary input function available for type aclitem'; without the aclitem
    column, 'invalid int2vector data'."""
    execute(source_uri, VECTORS)
    execute(sink_uri, "CREATE SCHEMA landing")
    try:
        run_path = PATHS[path]
        first = run_path(source_uri, sink_uri)
        assert first is not None and first.copy_format == "text"
        assert_same(source_uri, sink_uri)
    finally:
        drop_slots(source_uri, slot_name_for(source_uri))


def test_a_table_without_such_types_still_copies_in_binary(source_uri: str, sink_uri: str) -> None:
    """The common case is unchanged: tsvector, arrays, NaN, infinities, ranges go in binary."""
    execute(
        source_uri,
        "CREATE TABLE t (id int PRIMARY KEY, v tsvector, a int[], n numeric, d date, r tstzrange);"
        " INSERT INTO t VALUES (1, '', '{}', 'NaN', '-infinity', 'empty'),"
        " (2, 'a:1', '[2:3]={1,2}', 'Infinity', 'infinity', '[-infinity,infinity)')",
    )
    strategy = StrategySpec(mode="full_refresh")
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        result = load_table(
            dst,
            PostgresTableSource(src, TableName("public", "t")),
            TableName("public", "t"),
            strategy,
        )
    assert result.copy_format == "binary"
    assert table_text(sink_uri, "public.t") == table_text(source_uri, "public.t")


# -- the evidence: which built-in types fail raw binary send/receive ------------------------

# Every storable built-in type family with its edge values (SQL literals).
EDGE_VALUES: dict[str, list[str]] = {
    "tsquery": ["''", "'a & b'", "'a:*B | !c <-> d'", "'x <2> y'"],
    "tsvector": ["''", "'a:1A b:2,3'"],
    "int2vector": ["''", "'1 2'"],
    "oidvector": ["''", "'1 2'"],
    "aclitem": ["'postgres=r/postgres'"],
    "numeric": ["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'1e-130'", "'1e130'"],
    "numeric(5,2)": ["'999.99'", "'NaN'"],
    "float8": ["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'4.9e-324'"],
    "float4": ["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'1.4e-45'"],
    "date": ["'infinity'", "'-infinity'", "'4713-01-01 BC'", "'5874897-12-31'"],
    "timestamp": ["'infinity'", "'-infinity'", "'4713-01-01 BC'", "'294276-12-31 23:59:59'"],
    "timestamptz": ["'infinity'", "'-infinity'", "'4713-01-01 00:00+00 BC'"],
    "time": ["'24:00'"],
    "timetz": ["'24:00-15:59'", "'00:00+15:59'"],
    "interval": ["'-178000000 years'", "'1 mon -1 day -00:00:00.000001'"],
    "int4range": ["'empty'", "'(,)'"],
    "int8range": ["'empty'", "'[1,)'"],
    "numrange": ["'empty'", "'[-Infinity,Infinity]'"],
    "tsrange": ["'empty'", "'[-infinity,infinity]'"],
    "tstzrange": ["'(,)'", "'[-infinity,infinity)'"],
    "daterange": ["'empty'", "'[-infinity,infinity)'"],
    "int4multirange": ["'{}'", "'{[1,2), [5,)}'"],
    "datemultirange": ["'{[-infinity,infinity)}'"],
    "int4[]": ["'{}'", "'[0:1]={1,2}'", "'{{1,2},{3,NULL}}'", "'[-5:-4][2:2]={{1},{2}}'"],
    "text[]": ["'{}'", '\'{"",NULL,"NULL","a,b"}\''],
    "numeric[]": ["'{NaN,Infinity,-Infinity}'"],
    "float8[]": ["'{NaN,Infinity,-Infinity,-0}'"],
    "tsquery[]": ["'{}'", "ARRAY[''::tsquery]", "ARRAY['a'::tsquery]"],
    "tsvector[]": ["ARRAY[''::tsvector]"],
    "int2vector[]": ["ARRAY[''::int2vector]"],
    "aclitem[]": ["'{}'"],
    "jsonb": ["'{}'", "'1e1000'", "'[1.0, 1.00]'"],
    "json": ['\'{"a":1, "a":2}\'', "'  [1.0 ]  '"],
    "xml": ["''", "'text only'"],
    "bytea": ["''", "'\\x00'"],
    "bit(3)": ["'101'"],
    "varbit": ["''"],
    "money": ["'-92233720368547758.08'", "'92233720368547758.07'"],
    "uuid": ["'00000000-0000-0000-0000-000000000000'"],
    "inet": ["'::ffff:1.2.3.4/128'", "'0.0.0.0/0'"],
    "cidr": ["'::/0'"],
    "macaddr": ["'00:00:00:00:00:00'"],
    "macaddr8": ["'ff:ff:ff:ff:ff:ff:ff:ff'"],
    "point": ["'(NaN,Infinity)'", "'(-0,0)'"],
    "line": ["'{1,-1,0}'"],
    "lseg": ["'[(0,0),(NaN,1)]'"],
    "box": ["'(1,1),(0,0)'"],
    "path": ["'[(0,0)]'", "'((0,0),(1,1))'"],
    "polygon": ["'((0,0))'"],
    "circle": ["'<(0,0),0>'"],
    "pg_lsn": ["'0/0'", "'FFFFFFFF/FFFFFFFF'"],
    '"char"': ["''"],
    "name": ["''"],
    "text": ["''"],
    "char(3)": ["''"],
    "oid": ["4294967295"],
    "regclass": ["'pg_class'"],
    "regtype": ["'integer'"],
    "regconfig": ["'english'"],
    "pg_snapshot": ["'10:20:10,14,15'"],
    "txid_snapshot": ["'10:20:'"],
    "xid8": ["'18446744073709551615'"],
    "xid": ["'4294967295'"],
    "tid": ["'(0,0)'"],
    "boolean": ["true"],
    "bigint": ["-9223372036854775808"],
    "smallint": ["-32768"],
}


def _round_trip(src: psycopg.Connection, dst: psycopg.Connection, fmt: str) -> None:
    data = bytearray()
    with src.cursor().copy(f"COPY probe TO STDOUT (FORMAT {fmt})") as copy:
        for chunk in copy:
            data += chunk
    with dst.cursor().copy(f"COPY probe FROM STDIN (FORMAT {fmt})") as copy:
        copy.write(data)
    assert (
        dst.execute("SELECT c::text FROM probe").fetchall()
        == src.execute("SELECT c::text FROM probe").fetchall()
    )


def _fails(
    src: psycopg.Connection, dst: psycopg.Connection, type_: str, value: str, fmt: str
) -> bool:
    for conn in (src, dst):
        conn.execute("DROP TABLE IF EXISTS probe")
        conn.execute(f"CREATE TABLE probe (c {type_})")
    src.execute(f"INSERT INTO probe VALUES ({value})")
    try:
        _round_trip(src, dst, fmt)
    except psycopg.Error:
        return True
    return False


def test_the_types_listed_as_text_only_are_those_whose_binary_send_receive_fails(
    source_uri: str, sink_uri: str
) -> None:
    settings = {"prepare_threshold": None, "autocommit": True}
    with (
        psycopg.connect(source_uri, **settings) as src,
        psycopg.connect(sink_uri, **settings) as dst,
    ):
        type_oids = {
            name: src.execute("SELECT %s::regtype::oid", (name,)).fetchone()[0]
            for name in EDGE_VALUES
        }
        failing = {
            name
            for name, values in EDGE_VALUES.items()
            for value in values
            if _fails(src, dst, name, value, "BINARY")
        }
        in_text = [
            (name, value)
            for name, values in EDGE_VALUES.items()
            for value in values
            if _fails(src, dst, name, value, "TEXT")
        ]
        element = dict(
            src.execute("SELECT oid, typelem FROM pg_type WHERE typcategory = 'A'").fetchall()
        )
    assert in_text == []  # text round-trips every value
    listed = {
        name
        for name, oid in type_oids.items()
        if oid in copy_format.TEXT_ONLY_TYPES or element.get(oid) in copy_format.TEXT_ONLY_TYPES
    }
    assert failing == listed
    assert failing == {
        "tsquery",
        "tsquery[]",
        "int2vector",
        "int2vector[]",
        "oidvector",
        "aclitem",
        "aclitem[]",
    }


def test_every_built_in_type_without_binary_io_is_listed(source_uri: str) -> None:
    """A type with no send or receive function cannot go in binary at all."""
    with psycopg.connect(source_uri) as conn:
        rows = conn.execute(
            "SELECT oid FROM pg_type WHERE oid < 16384 AND typtype = 'b' AND typcategory <> 'A'"
            " AND typinput <> 0 AND (typsend = 0 OR typreceive = 0)"
        ).fetchall()
    assert {oid for (oid,) in rows} <= set(copy_format.TEXT_ONLY_TYPES)
