"""Hostile data through CDC into Delta: the table after a snapshot and a batch of changes
equals a fresh full Delta load of the same source (same rows, same Arrow schema), with
identifiers that need quoting everywhere (spaces, quotes, capitals, unicode)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pgflow.config.model import StrategySpec, TableName
from pgflow_tests.flows.cdc_delta.conftest import delta_frame, execute, fresh_load, run_delta

TABLE = TableName("Wéird schema", 'Ünï "Orders" x')
KEY = 'Id "key"'
DDL = '''
CREATE SCHEMA "Wéird schema";
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE "Wéird schema"."Ünï ""Orders"" x" (
    "Id ""key""" bigint PRIMARY KEY,
    "Loose Num" numeric, "price" numeric(12,2), "f8" float8, "f4" real,
    "day" date, "at" timestamptz, "local at" timestamp, "span" interval,
    "tags" text[], "nums" int[], "doc" jsonb, "raw" bytea, "feeling" mood,
    "big text" text, "ünï" text,
    "twice" bigint GENERATED ALWAYS AS ("Id ""key""" * 2) STORED
);
INSERT INTO "Wéird schema"."Ünï ""Orders"" x"
    ("Id ""key""", "Loose Num", price, f8, f4, day, at, "local at", span, tags, nums, doc,
     raw, feeling, "big text", "ünï")
SELECT g, g / 7.0, g * 1.25, g * 0.5, g, DATE '2024-01-01' + g, now(), '2024-01-01', '1 day',
       ARRAY['a', 'b' || g], ARRAY[g, NULL], jsonb_build_object('g', g), '\\x00ff', 'ok',
       repeat('t', 10), 'ü' || g
FROM generate_series(1, 50) g;
'''
CHANGES = '''
INSERT INTO "Wéird schema"."Ünï ""Orders"" x"
    ("Id ""key""", "Loose Num", price, f8, f4, day, at, "local at", span, tags, nums, doc,
     raw, feeling, "big text", "ünï")
VALUES
 (1001, 'NaN', 99.99, 'NaN', '-Infinity', '0044-03-15 BC', '1999-12-31 23:59:59.999999+00',
  '1970-01-01', '-00:00:01', ARRAY['quote "q", comma', E'new\\nline', NULL, ''],
  ARRAY[]::int[], '{"u": "é\\n", "a": [1, null]}', '\\x', 'happy', repeat('x', 1048576),
  E'tab\\there'),
 (1002, '123456789012345678901234567890.123456789', NULL, 'Infinity', 1e-30, '9999-12-31',
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (1003, 'Infinity', 0, -0.0, 0, '2000-02-29', now(), now(), '1 year', '{}', '{1}', 'null',
  '\\x5c', 'sad', E'back\\\\slash', '');
UPDATE "Wéird schema"."Ünï ""Orders"" x" SET "Loose Num" = '-Infinity', tags = ARRAY['ü']
 WHERE "Id ""key""" <= 5;
UPDATE "Wéird schema"."Ünï ""Orders"" x" SET "Id ""key""" = 2000 WHERE "Id ""key""" = 6;
DELETE FROM "Wéird schema"."Ünï ""Orders"" x" WHERE "Id ""key""" BETWEEN 40 AND 45;
'''


def test_hostile_values_and_names_equal_a_fresh_load(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    execute(source_uri, DDL)
    path = tmp_path / "cdc"
    strategy = StrategySpec(mode="incremental_merge", unique_key=(KEY,))
    run_delta(source_uri, path, slot, strategy, table=TABLE, numeric_as="string")
    execute(source_uri, CHANGES)
    result = run_delta(source_uri, path, slot, strategy, table=TABLE, numeric_as="string")
    assert result.changes == 3 + 5 + 1 + 6
    expected = fresh_load(source_uri, TABLE, tmp_path / "fresh", strategy, numeric_as="string")
    got = delta_frame(path, KEY)
    assert got.schema == expected.schema
    assert got.height == 50 + 3 - 6
    assert got.equals(expected.sort(KEY))
    big = got.filter(pl.col(KEY) == 1001)["big text"][0]
    assert big == "x" * 1048576
