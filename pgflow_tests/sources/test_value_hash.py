"""The row hash of value_parity on real databases: equal tables hash equal whatever their row
order and session settings; any one changed value, NULL for '', a lost or repeated row does not."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from pgflow.config.model import TableName
from pgflow.sources.value_hash import BUCKETS, HashQuery, TableHash, bucket_rows, table_hash
from pgflow_tests.pg import execute

TABLE = TableName('Odd Sché"ma', "Mixed Case ü")
COLUMNS = (
    "id",
    "Label é",
    "f8",
    "f4",
    "num",
    "day",
    "at",
    "at_tz",
    "span",
    "tags",
    "doc",
    "cash",
    "bits",
    "blob",
)
CREATE = """
CREATE SCHEMA "Odd Sché""ma";
CREATE TABLE "Odd Sché""ma"."Mixed Case ü" (
  id int PRIMARY KEY, "Label é" text, f8 float8, f4 float4, num numeric, day date,
  at timestamp, at_tz timestamptz, span interval, tags text[], doc jsonb, cash money,
  bits bit varying, blob bytea, deleted_at timestamptz);
INSERT INTO "Odd Sché""ma"."Mixed Case ü" VALUES
  (1, '', 'NaN', '-Infinity', 'NaN', '0044-03-15 BC', '-infinity', 'infinity',
   '-178000000 years', '{}', '{"a": [1, "x"]}', 12.34, B'101', '\\x00ff', NULL),
  (2, NULL, 'Infinity', 1.1, 3.14159265358979323846264338327950288419716939937510,
   'infinity', '0001-01-01 00:00:00 BC', '2024-03-31 23:59:59.999999+02', '1 mon -2 days',
   '{NULL,"","a,b","}"}', 'null', -0.01, B'', '\\x', NULL),
  (3, 'ünï "quoted", (paren)', '-0', 1e-45, -1e-130, '2024-02-29', '2024-02-29 12:00',
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, 'gone', 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, now());
"""
ALL = HashQuery(TABLE, COLUMNS, key=("id",))


@pytest.fixture
def twins(source_uri: str, sink_uri: str) -> tuple[str, str]:
    """The same hostile table in two databases whose sessions render values differently."""
    for uri in (source_uri, sink_uri):
        execute(uri, CREATE)
    dbname = psycopg.conninfo.conninfo_to_dict(sink_uri)["dbname"]
    execute(
        sink_uri,
        f"ALTER DATABASE \"{dbname}\" SET DateStyle = 'SQL, DMY';"
        f"ALTER DATABASE \"{dbname}\" SET TimeZone = 'Asia/Kathmandu';"
        f"ALTER DATABASE \"{dbname}\" SET IntervalStyle = 'iso_8601';"
        f'ALTER DATABASE "{dbname}" SET extra_float_digits = -3;'
        f"ALTER DATABASE \"{dbname}\" SET bytea_output = 'escape'",
    )
    # Reversed physical order in the sink: the hash must not care.
    execute(
        sink_uri,
        'CREATE TABLE t AS SELECT * FROM "Odd Sché""ma"."Mixed Case ü" ORDER BY id DESC;'
        'TRUNCATE "Odd Sché""ma"."Mixed Case ü";'
        'INSERT INTO "Odd Sché""ma"."Mixed Case ü" SELECT * FROM t; DROP TABLE t',
    )
    return source_uri, sink_uri


def hash_of(uri: str, query: HashQuery = ALL) -> TableHash:
    with psycopg.connect(uri, autocommit=True) as conn:
        return table_hash(conn, query, 60)


def test_equal_tables_hash_equal_in_every_bucket(twins: tuple[str, str]) -> None:
    source, sink = twins
    found = hash_of(source)
    assert found == hash_of(sink)
    assert found.rows == 4 and all(h is not None for _, h in found.buckets.values())
    assert all(0 <= b < BUCKETS for b in found.buckets)


@pytest.mark.parametrize(
    "change",
    [
        'UPDATE {t} SET "Label é" = NULL WHERE id = 1',  # '' -> NULL
        "UPDATE {t} SET \"Label é\" = '' WHERE id = 2",  # NULL -> ''
        "UPDATE {t} SET f8 = 'Infinity' WHERE id = 1",  # NaN -> Infinity
        "UPDATE {t} SET f8 = 0.0 WHERE id = 3",  # -0 -> 0
        "UPDATE {t} SET num = 3.1415926535897932384626433832795028841971693993751 WHERE id = 2",
        "UPDATE {t} SET day = '0044-03-15' WHERE id = 1",  # BC -> AD
        "UPDATE {t} SET at_tz = at_tz + interval '1 microsecond' WHERE id = 2",
        'UPDATE {t} SET tags = \'{NULL,NULL,"a,b","}"}\' WHERE id = 2',  # '' -> NULL in an array
        "UPDATE {t} SET cash = 12.35 WHERE id = 1",
        "INSERT INTO {t} SELECT * FROM {t} WHERE id = 3",  # a repeated row (no key index)
        "DELETE FROM {t} WHERE id = 4",
    ],
)
def test_any_one_change_makes_the_hashes_differ(twins: tuple[str, str], change: str) -> None:
    source, sink = twins
    table = '"Odd Sché""ma"."Mixed Case ü"'
    if change.startswith("INSERT"):
        execute(sink, f'ALTER TABLE {table} DROP CONSTRAINT "Mixed Case ü_pkey"')
    execute(sink, change.replace("{t}", table))
    assert hash_of(source) != hash_of(sink)


def test_soft_deleted_rows_are_left_out_and_a_sample_hashes_only_its_buckets(
    twins: tuple[str, str],
) -> None:
    source, sink = twins
    live = HashQuery(TABLE, COLUMNS, key=("id",), live_column="deleted_at")
    assert hash_of(sink, live).rows == 3
    execute(source, 'DELETE FROM "Odd Sché""ma"."Mixed Case ü" WHERE id = 4')
    assert hash_of(source, ALL) == hash_of(sink, live)

    sampled = hash_of(source, HashQuery(TABLE, COLUMNS, key=("id",), sampled=BUCKETS // 2))
    assert sampled.rows == 3  # every bucket is counted...
    for bucket, (_, total) in sampled.buckets.items():  # ...only sampled ones are hashed
        assert (total is None) == (bucket >= BUCKETS // 2)


def test_without_a_key_the_row_hash_picks_the_bucket(twins: tuple[str, str]) -> None:
    source, sink = twins
    keyless = HashQuery(TABLE, COLUMNS)
    assert hash_of(source, keyless) == hash_of(sink, keyless)
    execute(sink, 'UPDATE "Odd Sché""ma"."Mixed Case ü" SET f4 = 2 WHERE id = 3')
    assert hash_of(source, keyless) != hash_of(sink, keyless)


def test_bucket_rows_name_the_key_whose_row_differs(twins: tuple[str, str]) -> None:
    source, sink = twins
    execute(sink, 'UPDATE "Odd Sché""ma"."Mixed Case ü" SET num = 0.1 WHERE id = 3')
    (bucket,) = [b for b, v in hash_of(source).buckets.items() if hash_of(sink).buckets.get(b) != v]
    with psycopg.connect(source, autocommit=True) as a, psycopg.connect(sink) as b:
        theirs, ours = bucket_rows(a, ALL, bucket, 60), bucket_rows(b, ALL, bucket, 60)
    assert theirs is not None and ours is not None
    assert {k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k)} == {"(3)"}


@pytest.fixture
def latin1_uri(local_pg) -> Iterator[str]:
    """A database whose text is LATIN1 bytes (a legacy source, say)."""
    name = f"t_latin1_{uuid.uuid4().hex[:8]}"
    admin = local_pg.uri("postgres")
    execute(admin, f"CREATE DATABASE {name} ENCODING 'LATIN1' TEMPLATE template0 LOCALE 'C'")
    yield local_pg.uri(name)
    execute(admin, f"DROP DATABASE {name} WITH (FORCE)")


def test_databases_of_different_encodings_compare_in_utf8(source_uri: str, latin1_uri: str) -> None:
    table = "CREATE TABLE t (id int PRIMARY KEY, name text, tags text[]);"
    for uri in (source_uri, latin1_uri):
        execute(uri, table + "INSERT INTO t VALUES (1, 'ünï çà', '{é,NULL,\"\"}'), (2, '', NULL)")
    query = HashQuery(TableName("public", "t"), ("id", "name", "tags"), key=("id",))
    # The same text is other bytes in LATIN1: the database's own hash cannot compare them...
    assert hash_of(source_uri, query) != hash_of(latin1_uri, query)
    portable = HashQuery(query.table, query.columns, query.key, portable=True)
    # ...the UTF-8 bytes' hash can, and still sees a changed value.
    assert hash_of(source_uri, portable) == hash_of(latin1_uri, portable)
    execute(latin1_uri, "UPDATE t SET name = 'ünï ça' WHERE id = 1")
    assert hash_of(source_uri, portable) != hash_of(latin1_uri, portable)
