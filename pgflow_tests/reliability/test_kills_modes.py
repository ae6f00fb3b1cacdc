"""Reliability: the update and delete modes and the partial upsert join the kill sweep.

Same harness and rules as test_kills.py (kills at ticks of the load and at random times; the
target and its stored position must be exactly BEFORE or AFTER, and the next run must reach
AFTER with no staging table left). Their targets are not copies of the source, so each
scenario's AFTER is checked here against the rows it must hold:

- update (column cursor): a target of ids 1-4000 with stale values and a target-only column;
  the change updates ids ending in 3 (taken), inserts 4001-4300 (unmatched: never inserted)
  and deletes ids 7, 57, ... (they keep their values);
- delete (full read of the key only): a target of ids 1-5000, which its first load cuts to
  4001-5000; after the change the source's new ids go too, the rest (4301-5000, and 4007,
  4057, ... which the change inserted and deleted) stay;
- partial upsert (update_columns: [qty]): conflicts set qty only, the note the target holds
  stays, new ids come with every column;
- update and delete into a Delta table: the same, the stale table loaded into Delta first
  (one commit per run; BEFORE and AFTER are Delta versions with their stored position).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import psycopg
import pytest

from pgflow.sinks.delta import scan_delta_table
from pgflow_tests.reliability.kills.judge import same_data
from pgflow_tests.reliability.kills.observe import id_qty_postgres
from pgflow_tests.reliability.kills.scenarios import Scenario
from pgflow_tests.reliability.kills.sweep import SOURCE_TABLE, KillSweep, kill_sweep
from pgflow_tests.reliability.test_kills import (
    FAST_EVENT_POINTS,
    FAST_TIMED_POINTS,
    FULL_EVENT_POINTS,
    FULL_TIMED_POINTS,
    MIN_POINTS,
    _check,
    _workdir,
)

# The target before the first load: the source's ids with stale values, plus a column of its
# own. Without a default (update, delete) it is still not "dropped at the source": those modes
# carry some columns by design; an upsert needs the default that marks it as local.
STALE_TARGET = """
CREATE SCHEMA landing;
CREATE TABLE landing.items (
    id bigint PRIMARY KEY, region text NOT NULL, day date NOT NULL, qty integer NOT NULL,
    price numeric(10,2), note text, updated_at timestamptz NOT NULL, origin text{default}
);
INSERT INTO landing.items
SELECT g, 'stale', date '2000-01-01', -1, NULL, 'stale', timestamptz '2000-01-01+00', 'crm'
FROM generate_series(1, {last}) g;
"""

SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "update/column",
            "postgres",
            "postgres",
            options="{incremental_strategy: column, incremental_column: updated_at}",
            strategy="{mode: update, unique_key: [id]}",
            source_equality="apart",
            sink_ddl=STALE_TARGET.format(last=4000, default=""),
        ),
        Scenario(
            "delete/key_only",
            "postgres",
            "postgres",
            options="{include_columns: [id]}",
            strategy="{mode: delete, unique_key: [id]}",
            source_equality="apart",
            sink_ddl=STALE_TARGET.format(last=5000, default=""),
        ),
        # The same into a Delta table (loaded from that stale table before the first load).
        Scenario(
            "update/delta_column",
            "postgres",
            "delta",
            options="{incremental_strategy: column, incremental_column: updated_at}",
            strategy="{mode: update, unique_key: [id]}",
            source_equality="apart",
            sink_ddl=STALE_TARGET.format(last=4000, default=""),
            delta_batch_rows=25,  # the change's ~400 rows: ~16 batches
        ),
        Scenario(
            "delete/delta_key_only",
            "postgres",
            "delta",
            options="{include_columns: [id]}",
            strategy="{mode: delete, unique_key: [id]}",
            source_equality="apart",
            sink_ddl=STALE_TARGET.format(last=5000, default=""),
            delta_batch_rows=200,
        ),
        Scenario(
            "upsert/update_columns",
            "postgres",
            "postgres",
            options="{incremental_strategy: column, incremental_column: updated_at}",
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: upsert,"
            " update_columns: [qty]}",
            source_equality="apart",
            sink_ddl=STALE_TARGET.format(last=4000, default=" DEFAULT 'local'"),
        ),
    )
}
NAMES = sorted(SCENARIOS)
COLUMNS = ["id", "qty", "note", "origin"]


def _check_after(sweep: KillSweep) -> None:
    """AFTER (an uninterrupted run on a fresh copy of BEFORE) holds exactly the rows the mode
    must leave."""
    sweep.restore()
    try:
        sweep.run_ok()
        assert same_data(sweep.snapshot(), sweep.judge.after)
        _check_rows(sweep.scenario.name, sweep.source_uri, _target(sweep))
    finally:
        sweep.release()


def _target(sweep: KillSweep) -> pl.DataFrame:
    """The target's id, qty, note and origin, from Postgres or Delta."""
    if sweep.scenario.sink == "delta":
        return scan_delta_table(sweep.lake / "target").select(COLUMNS).collect()
    with psycopg.connect(sweep.sink_uri()) as conn:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM landing.items").fetchall()
    return pl.DataFrame(rows, schema=COLUMNS, orient="row")


def _check_rows(name: str, source_uri: str, table: pl.DataFrame) -> None:
    source = dict(id_qty_postgres(source_uri, SOURCE_TABLE))
    target = dict(table.select("id", "qty").iter_rows())
    if name.startswith("delete"):
        # the first load deleted 1-4000; this one the source's new ids 4001-4300
        assert set(target) == set(range(4001, 5001)) - set(source)
        assert all(qty == -1 for qty in target.values())
        return
    deleted = set(range(1, 4001)) - set(source)
    added = set(source) - set(range(1, 4001))  # an update never inserts them, an upsert does
    assert deleted and added
    assert set(target) == set(range(1, 4001)) | (added if name.startswith("upsert") else set())
    for id_, qty in target.items():
        # ids the source deleted keep the value their first load gave them
        assert qty == (id_ % 97 if id_ in deleted else source[id_]), id_
    notes = (
        table.filter(pl.col("note") == "stale").height,
        table.filter(pl.col("origin") == "crm").height,
    )
    kept_notes = 4000 if name.startswith("upsert") else 0  # update_columns: [qty] only
    assert notes == (kept_notes, 4000)


@pytest.mark.parametrize("name", NAMES)
def test_kills_fast(name: str, local_pg, tmp_path: Path) -> None:
    with kill_sweep(SCENARIOS[name], local_pg, _workdir(tmp_path)) as sweep:
        _check_after(sweep)
        figures = sweep.sweep(FAST_EVENT_POINTS, FAST_TIMED_POINTS)
    _check(figures, FAST_EVENT_POINTS)


@pytest.mark.faults
@pytest.mark.parametrize("name", NAMES)
def test_kills_sweep(name: str, local_pg, tmp_path: Path) -> None:
    with kill_sweep(SCENARIOS[name], local_pg, _workdir(tmp_path)) as sweep:
        figures = sweep.sweep(FULL_EVENT_POINTS, FULL_TIMED_POINTS)
        assert len(sweep.labels) >= MIN_POINTS, "a load too short to kill at 30 points"
    _check(figures, MIN_POINTS)
    assert figures.before > 0 and figures.after > 0, figures.line()
