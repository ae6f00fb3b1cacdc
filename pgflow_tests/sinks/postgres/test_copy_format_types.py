"""The evidence for `copy_format.TEXT_ONLY_TYPES`: every built-in type's edge values go through
raw `COPY ... (FORMAT BINARY)` out of one database and into another (real servers); the types
that fail are exactly the ones listed there, and every value round-trips in text.
"""

from __future__ import annotations

import psycopg
import pytest

from pgflow.sinks.postgres import copy_format

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
    "integer": ["-2147483648"],
    "smallint": ["-32768"],
    "varchar": ["''"],
    "refcursor": ["''"],
    "jsonpath": ["'$'", '\'strict $.a[*] ? (@ like_regex "^é" flag "i")\''],
    "cid": ["'4294967295'"],
    "nummultirange": ["'{}'", "'{[-Infinity,Infinity]}'"],
    "int8multirange": ["'{(,)}'"],
    "tsmultirange": ["'{[-infinity,infinity]}'"],
    "tstzmultirange": ["'{}'"],
    "regproc": ["'now'"],
    "regprocedure": ["'now()'"],
    "regoper": ["'!!'"],
    "regoperator": ["'+(integer,integer)'"],
    "regrole": ["'postgres'"],
    "regnamespace": ["'public'"],
    "regcollation": ["'\"C\"'"],
    "regdictionary": ["'simple'"],
}
# Built-in types no column value can have: their input functions refuse every value.
NOT_INPUTTABLE = (
    "gtsvector",
    "pg_brin_bloom_summary",
    "pg_brin_minmax_multi_summary",
    "pg_dependencies",
    "pg_mcv_list",
    "pg_ndistinct",
    "pg_node_tree",
)


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


def test_the_probe_covers_every_built_in_type(source_uri: str) -> None:
    """A built-in base, range or multirange type missing from EDGE_VALUES would go unprobed."""
    with psycopg.connect(source_uri, autocommit=True) as conn:
        probed = {conn.execute("SELECT %s::regtype::oid", (n,)).fetchone()[0] for n in EDGE_VALUES}
        every = conn.execute(
            "SELECT typname FROM pg_type WHERE oid < 16384 AND typtype IN ('b', 'r', 'm')"
            " AND typcategory <> 'A' AND oid <> ALL(%s)",
            (list(probed),),
        ).fetchall()
        assert sorted(n for (n,) in every) == sorted(NOT_INPUTTABLE)
        for name in NOT_INPUTTABLE:
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                conn.execute(f"SELECT ''::{name}")


def test_every_built_in_type_without_binary_io_is_listed(source_uri: str) -> None:
    """A type with no send or receive function cannot go in binary at all."""
    with psycopg.connect(source_uri) as conn:
        rows = conn.execute(
            "SELECT oid FROM pg_type WHERE oid < 16384 AND typtype = 'b' AND typcategory <> 'A'"
            " AND typinput <> 0 AND (typsend = 0 OR typreceive = 0)"
        ).fetchall()
    assert {oid for (oid,) in rows} <= set(copy_format.TEXT_ONLY_TYPES)
