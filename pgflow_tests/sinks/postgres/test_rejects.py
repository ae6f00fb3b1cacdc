"""`on_bad_rows: reject` with hostile data and identifiers: the good rows land, the bad ones
are kept in `<schema>._pgflow_rejected_<table>` with their SQLSTATE and message, the count is
in the result, and `fail` still fails with nothing written."""

from __future__ import annotations

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import load_table
from pgflow.sinks.postgres.rejects import rejected_table
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import execute, fetch

SOURCE = TableName("Src Schéma", 'My "Rows"')
TARGET = TableName('Land "ing', "Ordérs X")
REJECTED = rejected_table(TARGET)

SOURCE_DDL = '''
CREATE SCHEMA "Src Schéma";
CREATE TABLE "Src Schéma"."My ""Rows""" (id int PRIMARY KEY, "Qty" text, "when" text,
    "Näme" text, note text, score int, updated_at timestamptz NOT NULL);
INSERT INTO "Src Schéma"."My ""Rows""" VALUES
 (1, '10', '2026-01-01', 'ann', 'a', 1, '2026-01-01 00:00+00'),
 (2, 'abc', '2026-01-02', 'bob', 'b', 2, '2026-01-02 00:00+00'),
 (3, '30', '2026-01-03', 'cy', 'c', 3, '2026-01-03 00:00+00'),
 (4, '40', '2026-13-45', 'dan', 'd', 4, '2026-01-04 00:00+00'),
 (5, '50', '2026-01-05', 'toolongname', 'e', 5, '2026-01-05 00:00+00'),
 (6, '60', '2026-01-06', 'fay', 'f', 6, '2026-01-06 00:00+00'),
 (7, '70', '2026-01-07', 'gus', NULL, 7, '2026-01-07 00:00+00'),
 (8, '80', '2026-01-08', 'hal', 'h', 8, '2026-01-08 00:00+00'),
 (9, '90', '2026-01-09', 'ivy', 'i', -1, '2026-01-09 00:00+00'),
 (10, '100', '2026-01-10', 'jo', 'j', 10, '2026-01-10 00:00+00');
'''
TARGET_DDL = """
CREATE SCHEMA "Land ""ing";
CREATE TABLE "Land ""ing"."Ordérs X" (id int PRIMARY KEY, "Qty" integer, "when" date,
    "Näme" varchar(5), note text NOT NULL, score int CHECK (score >= 0),
    updated_at timestamptz NOT NULL, loaded boolean NOT NULL DEFAULT true);
INSERT INTO "Land ""ing"."Ordérs X" VALUES (0, 1, '2000-01-01', 'old', 'old', 0, now());
"""
GOOD = [1, 3, 6, 8, 10]
BAD = {  # id: SQLSTATE of its error
    2: "22P02",  # not an integer
    4: "22008",  # not a date
    5: "22001",  # too long for varchar(5)
    7: "23502",  # NOT NULL
    9: "23514",  # CHECK
}
REJECT = {"on_bad_rows": "reject"}
STRATEGIES = {
    "truncate_insert": StrategySpec(mode="full_refresh", **REJECT),  # type: ignore[arg-type]
    "exchange": StrategySpec(mode="full_refresh", method="exchange", **REJECT),  # type: ignore[arg-type]
    "append": StrategySpec(mode="incremental_append", **REJECT),  # type: ignore[arg-type]
    "delete_insert": StrategySpec(mode="incremental_merge", unique_key=("id",), **REJECT),  # type: ignore[arg-type]
    "upsert": StrategySpec(
        mode="incremental_merge",
        unique_key=("id",),
        merge_policy="upsert",
        **REJECT,  # type: ignore[arg-type]
    ),
}


def _load(source_uri: str, sink_uri: str, spec: StrategySpec, cursor: bool = False) -> dict:
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        source = (
            ColumnCursorSource(src, SOURCE, "updated_at")
            if cursor
            else PostgresTableSource(src, SOURCE)
        )
        result = load_table(dst, source, TARGET, spec, pipeline="p x", run_id="run-1")
    return {"rows": result.rows, "read": result.rows_read, **result.strategy_metadata}


def _target_ids(sink_uri: str) -> list[int]:
    return [r[0] for r in fetch(sink_uri, 'SELECT id FROM "Land ""ing"."Ordérs X" ORDER BY id')]


def _loaded_rows(sink_uri: str) -> list[tuple]:
    return fetch(
        sink_uri,
        'SELECT id, "Qty", "when", "Näme", note, score, updated_at FROM "Land ""ing"."Ordérs X"'
        " WHERE id > 0 ORDER BY id",
    )


def _good_source_rows(source_uri: str) -> list[tuple]:
    return fetch(
        source_uri,
        'SELECT id, "Qty"::int, "when"::date, "Näme", note, score, updated_at'
        ' FROM "Src Schéma"."My ""Rows""" WHERE id = ANY(%s) ORDER BY id',
        (GOOD,),
    )


def _rejected(sink_uri: str) -> list[tuple]:
    return fetch(
        sink_uri,
        f'SELECT ("row"->>\'id\')::int, error, run_id, pipeline, "row" FROM '
        f"{REJECTED.identifier().as_string(None)} ORDER BY 1, rejected_at",
    )


@pytest.mark.parametrize("name", STRATEGIES)
def test_good_rows_land_and_bad_rows_are_kept_with_their_error(
    source_uri: str, sink_uri: str, name: str
) -> None:
    execute(source_uri, SOURCE_DDL)
    execute(sink_uri, TARGET_DDL)
    outcome = _load(source_uri, sink_uri, STRATEGIES[name])
    assert outcome["rows_rejected"] == 5 and outcome["read"] == 10
    kept = [0] if name in ("append", "delete_insert", "upsert") else []
    assert _target_ids(sink_uri) == sorted(set(kept + GOOD))
    rejected = _rejected(sink_uri)
    assert [r[0] for r in rejected] == sorted(BAD)
    for rid, error, run_id, pipeline, row in rejected:
        assert error.startswith(BAD[rid] + ": "), error
        assert (run_id, pipeline) == ("run-1", "p x")
        assert row["id"] == str(rid) and set(row) == {
            "id",
            "Qty",
            "when",
            "Näme",
            "note",
            "score",
            "updated_at",
        }
    assert "invalid input syntax for type integer" in rejected[0][1]
    row = fetch(
        sink_uri,
        'SELECT "Qty", "when"::text, "Näme", loaded FROM "Land ""ing"."Ordérs X" WHERE id = 3',
    )
    assert row == [(30, "2026-01-03", "cy", True)]
    # Every good row holds the source's values, cast into the target's types.
    assert _loaded_rows(sink_uri) == _good_source_rows(source_uri)


def test_a_clean_load_rejects_nothing_and_creates_no_table(source_uri: str, sink_uri: str) -> None:
    execute(
        source_uri, SOURCE_DDL + 'DELETE FROM "Src Schéma"."My ""Rows""" WHERE id IN (2,4,5,7,9);'
    )
    execute(sink_uri, TARGET_DDL)
    outcome = _load(source_uri, sink_uri, STRATEGIES["truncate_insert"])
    assert outcome["rows_rejected"] == 0 and outcome["rows"] == 5
    assert _target_ids(sink_uri) == GOOD
    assert fetch(sink_uri, "SELECT to_regclass(%s)", (REJECTED.identifier().as_string(None),)) == [
        (None,)
    ]


def test_the_first_load_into_a_new_target_rejects_nothing(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, SOURCE_DDL)
    outcome = _load(source_uri, sink_uri, STRATEGIES["truncate_insert"])
    assert outcome["rows_rejected"] == 0 and outcome["rows"] == 10
    assert _target_ids(sink_uri) == list(range(1, 11))


TYPED_SOURCE = '''
ALTER TABLE "Src Schéma"."My ""Rows""" DROP CONSTRAINT "My ""Rows""_pkey";
DELETE FROM "Src Schéma"."My ""Rows""" WHERE id IN (2, 4);
ALTER TABLE "Src Schéma"."My ""Rows""" ALTER COLUMN "Qty" TYPE integer USING "Qty"::integer,
    ALTER COLUMN "when" TYPE date USING "when"::date;
'''


@pytest.mark.parametrize("policy", ["fail", "reject"])
def test_fail_mode_fails_and_writes_nothing_reject_keeps_the_good_rows(
    source_uri: str, sink_uri: str, policy: str
) -> None:
    """Types that fit (no cast needed): the NOT NULL, CHECK and varchar(5) of the target fail
    a `fail` load whole, as before; `reject` keeps the 5 good rows."""
    execute(source_uri, SOURCE_DDL + TYPED_SOURCE)
    execute(sink_uri, TARGET_DDL)
    spec = StrategySpec(mode="full_refresh", on_bad_rows=policy)  # type: ignore[arg-type]
    if policy == "fail":
        with pytest.raises(psycopg.errors.StringDataRightTruncation):
            _load(source_uri, sink_uri, spec)
        assert _target_ids(sink_uri) == [0]
        found = fetch(sink_uri, "SELECT to_regclass(%s)", (REJECTED.identifier().as_string(None),))
        assert found == [(None,)]
        return
    assert _load(source_uri, sink_uri, spec)["rows_rejected"] == 3
    assert _target_ids(sink_uri) == GOOD
    assert [(r[0], r[1][:5]) for r in _rejected(sink_uri)] == [
        (5, "22001"),
        (7, "23502"),
        (9, "23514"),
    ]


def test_an_incremental_position_moves_past_rejected_rows(source_uri: str, sink_uri: str) -> None:
    """Rejected rows are read once: a rerun does not reject them again; a row fixed in the
    source (its cursor moves) loads on the next run."""
    execute(source_uri, SOURCE_DDL)
    execute(sink_uri, TARGET_DDL)
    spec = StrategySpec(mode="incremental_merge", unique_key=("id",), on_bad_rows="reject")
    first = _load(source_uri, sink_uri, spec, cursor=True)
    assert first["rows_rejected"] == 5
    again = _load(source_uri, sink_uri, spec, cursor=True)
    assert again["rows_rejected"] == 0
    assert len(_rejected(sink_uri)) == 5, "no rejected row recorded twice"
    execute(
        source_uri,
        '''UPDATE "Src Schéma"."My ""Rows""" SET score = 9, updated_at = '2026-02-01 00:00+00'
           WHERE id = 9''',
    )
    fixed = _load(source_uri, sink_uri, spec, cursor=True)
    assert fixed["rows_rejected"] == 0 and fixed["read"] == 1
    assert _target_ids(sink_uri) == sorted([0, *GOOD, 9])


def test_bisection_finds_every_scattered_bad_row_among_many(source_uri: str, sink_uri: str) -> None:
    """20,000 rows, bad ones scattered (neighbours, the first, the last): exactly those are
    rejected, every other row lands once, in one transaction."""
    execute(
        source_uri,
        'CREATE SCHEMA "Src Schéma"; CREATE TABLE "Src Schéma"."My ""Rows""" (id int, "Qty" text);'
        ' INSERT INTO "Src Schéma"."My ""Rows""" SELECT g, CASE WHEN g IN (1, 500, 501, 7777,'
        " 13001, 20000) OR g % 4999 = 0 THEN 'bad' || g ELSE g::text END"
        " FROM generate_series(1, 20000) g",
    )
    execute(
        sink_uri,
        'CREATE SCHEMA "Land ""ing"; CREATE TABLE "Land ""ing"."Ordérs X" (id int, "Qty" int)',
    )
    spec = StrategySpec(mode="incremental_append", on_bad_rows="reject")
    outcome = _load(source_uri, sink_uri, spec)
    bad = sorted({1, 500, 501, 7777, 13001, 20000, 4999, 9998, 14997, 19996})
    assert outcome["rows_rejected"] == len(bad) and outcome["rows"] == 20000 - len(bad)
    assert [r[0] for r in _rejected(sink_uri)] == bad
    landed = fetch(
        sink_uri, 'SELECT count(*), count(DISTINCT id), sum("Qty") FROM "Land ""ing"."Ordérs X"'
    )
    assert landed == [(20000 - len(bad), 20000 - len(bad), sum(range(1, 20001)) - sum(bad))]
