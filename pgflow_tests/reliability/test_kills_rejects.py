"""Reliability: `on_bad_rows: reject` loads join the kill sweep.

Same harness and rules as test_kills.py (kills at ticks of the load and at random times; the
target and its stored position must be exactly BEFORE or AFTER, and the next run must reach
AFTER with no staging table left). The target has a CHECK the source lacks (qty <> 13 for odd
ids): 21 rows of the first load's source break it, 17 after the change, among them two the
change inserted (ids 4087, 4281), which are all a column cursor reads of them; so every run
takes both passes of a rejecting load: the bulk attempt fails (in the COPY of a full refresh,
in the apply of a merge: staging has no CHECK), rolls back to its savepoint, and the rows are
found by bisection. Judged besides, after every kill and after the run that follows it:

- the rejected table, as its load transactions' groups of rows (error and raw row; one group
  per rejected_at, a load's now()): BEFORE's group, then the change's groups, each exactly the
  reference run's (no rejected row lost, none recorded twice by one load). A full refresh
  reads every row each run, so a killed run that committed and the run after it each record
  one group (a merge reading the whole table too); a column cursor's position moves past its
  rejected rows, so the run after it records none;
- the row ledger (`target_rows` of the stored position) is the target's row count;
- AFTER holds every good source row (a full refresh: exactly those) and no bad one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgflow.localdb.cluster import ClusterInfo
from pgflow.sinks.postgres.rejects import rejected_table
from pgflow_tests.reliability.kills.observe import id_qty_postgres
from pgflow_tests.reliability.kills.scenarios import TARGET, Scenario
from pgflow_tests.reliability.kills.sweep import SOURCE_TABLE, KillSweep
from pgflow_tests.reliability.test_kills import (
    FAST_EVENT_POINTS,
    FAST_TIMED_POINTS,
    FULL_EVENT_POINTS,
    FULL_TIMED_POINTS,
    MIN_POINTS,
    _check,
    _workdir,
)

REJECTED = rejected_table(TARGET)
CHECKED_TARGET = """
CREATE SCHEMA landing;
CREATE TABLE landing.items (
    id bigint PRIMARY KEY, region text NOT NULL, day date NOT NULL,
    qty integer NOT NULL CHECK (qty <> 13 OR id % 2 = 0),
    price numeric(10,2), note text, updated_at timestamptz NOT NULL
);
"""
REJECT = "on_bad_rows: reject, max_rejected: 100"
CURSOR = "{incremental_strategy: column, incremental_column: updated_at}"
SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "reject/truncate_insert",
            "postgres",
            "postgres",
            strategy=f"{{mode: full_refresh, {REJECT}}}",
            source_equality="apart",
            sink_ddl=CHECKED_TARGET,
        ),
        Scenario(
            "reject/exchange",
            "postgres",
            "postgres",
            strategy=f"{{mode: full_refresh, method: exchange, {REJECT}}}",
            source_equality="apart",
            sink_ddl=CHECKED_TARGET,
        ),
        Scenario(
            "reject/delete_insert",
            "postgres",
            "postgres",
            strategy=f"{{mode: incremental_merge, unique_key: [id], {REJECT}}}",
            source_equality="apart",
            sink_ddl=CHECKED_TARGET,
        ),
        Scenario(
            "reject/upsert_column",
            "postgres",
            "postgres",
            options=CURSOR,
            strategy="{mode: incremental_merge, unique_key: [id], merge_policy: upsert,"
            f" {REJECT}}}",
            source_equality="apart",
            sink_ddl=CHECKED_TARGET,
        ),
    )
}
NAMES = sorted(SCENARIOS)


def _bad(row: tuple[int, int]) -> bool:
    return row[1] == 13 and row[0] % 2 == 1


def rejected_groups(uri: str) -> list[tuple[int, str]]:
    """The rejected table as one (rows, digest of error and raw row) per load transaction."""
    with psycopg.connect(uri) as conn:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (str(REJECTED),)).fetchone()
        if not (found and found[0]):
            return []
        rows = conn.execute(
            f"SELECT count(*), md5(string_agg(error || ' ' || \"row\"::text, E'\\n'"
            f' ORDER BY error, "row"::text)) FROM {REJECTED.identifier().as_string(conn)}'
            " GROUP BY rejected_at ORDER BY rejected_at"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def ledger_ok(uri: str) -> bool:
    """The row ledger stored with the position is the target's row count."""
    with psycopg.connect(uri) as conn:
        row = conn.execute(
            "SELECT target_rows FROM _pgflow.pipeline_state"
            " WHERE target_schema = %s AND target_table = %s",
            (TARGET.schema, TARGET.name),
        ).fetchone()
        count = conn.execute(f"SELECT count(*) FROM {TARGET.identifier().as_string(conn)}")
        counted = count.fetchone()
    return row is not None and counted is not None and row[0] == counted[0]


class RejectSweep(KillSweep):
    """A kill sweep that also judges the rejected table and the row ledger."""

    def __init__(self, scenario: Scenario, cluster: ClusterInfo, workdir: Path) -> None:
        super().__init__(scenario, cluster, workdir)
        self.before_groups: list[tuple[int, str]] = []
        self.change_group: tuple[int, str] = (0, "")

    def setup(self) -> None:
        super().setup()
        self.restore()  # BEFORE's rejected groups, and AFTER's one more
        try:
            self.before_groups = rejected_groups(self.sink_uri())
            self.run_ok()
            after = rejected_groups(self.sink_uri())
            assert after[: len(self.before_groups)] == self.before_groups
            assert len(after) == len(self.before_groups) + 1, after
            self.change_group = after[-1]
            # a full read rejects every bad row again; the cursor reads the change: 4087, 4281
            assert self.change_group[0] == (2 if self.scenario.options == CURSOR else 17)
            assert ledger_ok(self.sink_uri())
            _check_rows(self.scenario.name, self.source_uri, self.sink_uri())
        finally:
            self.release()

    def _judge_kill(self, point: str) -> tuple[str, int]:
        verdict, orphans = super()._judge_kill(point)
        groups = rejected_groups(self.sink_uri())
        added = 0 if verdict == "before" else 1
        assert groups == self.before_groups + [self.change_group] * added, (point, groups)
        return verdict, orphans

    def _check_convergence(self, point: str, verdict: str) -> bool:
        converged = super()._check_convergence(point, verdict)
        groups = rejected_groups(self.sink_uri())
        # A full read rejects the bad rows again on every run; a cursor read, once.
        full_read = self.scenario.options != CURSOR
        runs = 2 if full_read and verdict == "after" else 1
        assert groups == self.before_groups + [self.change_group] * runs, (point, groups)
        assert ledger_ok(self.sink_uri()), point
        return converged


def _check_rows(name: str, source_uri: str, sink_uri: str) -> None:
    source = id_qty_postgres(source_uri, SOURCE_TABLE)
    target = id_qty_postgres(sink_uri, TARGET)
    good = {r for r in source if not _bad(r)}
    assert good != source, "the source has bad rows"
    assert not any(_bad(r) for r in target)
    if name.startswith(("reject/truncate", "reject/exchange")):
        assert target == good
    else:  # a merge keeps rows deleted at the source
        assert good <= target and target - good


@contextlib.contextmanager
def reject_sweep(scenario: Scenario, cluster: ClusterInfo, workdir: Path) -> Iterator[Any]:
    sweep = RejectSweep(scenario, cluster, workdir)
    try:
        sweep.setup()
        yield sweep
    finally:
        sweep.close()


@pytest.mark.parametrize("name", NAMES)
def test_kills_fast(name: str, local_pg, tmp_path: Path) -> None:
    with reject_sweep(SCENARIOS[name], local_pg, _workdir(tmp_path)) as sweep:
        figures = sweep.sweep(FAST_EVENT_POINTS, FAST_TIMED_POINTS)
    _check(figures, FAST_EVENT_POINTS)


@pytest.mark.faults
@pytest.mark.parametrize("name", NAMES)
def test_kills_sweep(name: str, local_pg, tmp_path: Path) -> None:
    with reject_sweep(SCENARIOS[name], local_pg, _workdir(tmp_path)) as sweep:
        figures = sweep.sweep(FULL_EVENT_POINTS, FULL_TIMED_POINTS)
        assert len(sweep.labels) >= MIN_POINTS, "a load too short to kill at 30 points"
    _check(figures, MIN_POINTS)
    assert figures.before > 0 and figures.after > 0, figures.line()
