"""The kill sweep of CDC into Delta: d1 (into a Delta table) and p1 (into Postgres) on one
slot, SIGKILLed at chosen points of one run (and of the Delta table's maintenance after it),
judged table by table, then run again.

BEFORE: the group streamed in step (slot, the Delta table's app transaction, p1's position),
then the source changes in several transactions. After each kill: the Delta table is its
source as of the position it holds (its app transaction's version: no change lost, none
applied twice), p1 likewise as of its stored position, and the slot's confirmed position is
at or below both. The run after the kill must succeed and bring both to the source, with
positions past the change, the slot confirmed to the lower of them, no staging table left,
and every data file the Delta table references readable.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.reliability.kills.child import ChildOutcome
from pgflow_tests.reliability.kills.copies import ClusterCopies
from pgflow_tests.reliability.kills.delta_child import DeltaJob, run_delta_child
from pgflow_tests.reliability.kills.delta_world import (
    CHANGES,
    DELTA,
    PG,
    TargetState,
    apply_changes,
    create_source,
    data_files,
    delta_state,
    pg_state,
    uncommitted_files,
    warm_up,
)
from pgflow_tests.reliability.kills.group_sweep import KillPoint, occurrences
from pgflow_tests.reliability.kills.group_world import History, slot_state
from pgflow_tests.reliability.kills.plan import Figures, KillRecord, kill_points

BATCH_CHANGES = 150  # messages per batch: several Delta commits per run
DelayedPoint = tuple[str, int, float]  # a label, its occurrence, seconds after it


class DeltaSweep:
    """One sweep on one cluster: BEFORE, the reference run, kills and re-runs."""

    def __init__(
        self,
        cluster: ClusterInfo,
        workdir: Path,
        maintain: bool = False,
        changes: tuple[str, ...] = CHANGES,
        live_add: bool = False,
    ) -> None:
        self.name = "delta_sink/cdc+maintenance" if maintain else "delta_sink/cdc"
        self.name += "+live_add" if live_add else ""
        self.live_add = live_add  # BEFORE: p1 alone in the group; d1 joins in the killed run
        if changes != CHANGES:
            self.name += "+truncate" if any("TRUNCATE" in c for c in changes) else "+other"
        self.maintain = maintain
        self.changes = changes
        self.workdir = workdir
        self.copies = ClusterCopies(cluster, uuid.uuid4().hex[:10])
        self.history = History()
        self.before: dict[str, TargetState] = {}
        self.labels: list[str] = []
        self.times: list[float] = []
        self.load_seconds = 0.0
        self.runs = 0
        self.current_db = ""
        self.delta_path = workdir / "delta-setup"
        self.before_path = workdir / "delta-before"
        self.records: list[KillRecord] = []
        self.files = (0, 0)

    @property
    def source_uri(self) -> str:
        return self.copies.cluster.uri(self.copies.source_db)

    @property
    def sink_uri(self) -> str:
        return self.copies.cluster.uri(self.current_db)

    def run(self, maintain: bool | None = None, **kwargs: Any) -> ChildOutcome:
        self.runs += 1
        app = f"pgflow-kills-{self.copies.tag}-{self.runs}"
        job = DeltaJob(
            source_uri=self.source_uri,
            sink_uri=self.sink_uri,
            sink_dbname=self.current_db,
            slot=self.copies.slot,
            delta_path=str(self.delta_path),
            batch_changes=BATCH_CHANGES,
            app_name=app,
            record_path=str(self.workdir / f"run-{self.runs}.json"),
            maintain=self.maintain if maintain is None else maintain,
            **kwargs,
        )
        outcome = run_delta_child(job)
        self.copies.wait_gone(app)
        self.copies.wait_slot_free(self.copies.slot)
        return outcome

    def run_ok(self, **kwargs: Any) -> ChildOutcome:
        outcome = self.run(**kwargs)
        assert outcome.exitcode == 0 and outcome.record is not None, (
            f"{self.name}: run failed (exit {outcome.exitcode}):\n"
            f"{outcome.record and outcome.record['error']}"
        )
        return outcome

    # -- set-up --------------------------------------------------------------------------------

    def setup(self) -> None:
        copies = self.copies
        copies.create_database(copies.source_db)
        create_source(self.source_uri)
        copies.create_database(copies.template_db)
        self.current_db = copies.template_db
        first = (PG,) if self.live_add else (DELTA, PG)
        self.run_ok(maintain=False, tables=first)  # the first run: the slot, the snapshots
        warm_up(self.source_uri)
        self.run_ok(maintain=False, tables=first)  # streaming: slot and positions in step
        copies.save_slot()
        if not self.live_add:
            shutil.copytree(self.delta_path, self.before_path)
        self.history = apply_changes(self.source_uri, self.changes)
        self.before = self.states()[0]
        self.restore()
        reference = self.run_ok(record_ticks=True)
        assert reference.record is not None
        self.labels, self.times = reference.record["labels"], reference.record["times"]
        self.load_seconds = reference.record["seconds"]
        self.check_converged("the reference run")
        self.files = data_files(self.delta_path)  # on disk, referenced (after maintenance)
        self.release()

    def restore(self) -> None:
        """BEFORE again: a clone of the Postgres sink, a copy of the Delta table's folder, the
        slot copied from BEFORE's."""
        self.current_db = self.copies.next_clone()
        self.delta_path = self.workdir / f"delta-{self.runs + 1}"
        if self.before_path.exists():
            shutil.copytree(self.before_path, self.delta_path)
        self.copies.reset_slot(restore=True)
        if self.live_add:  # the publication without the table joining
            with psycopg.connect(self.source_uri, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(
                        sql.Identifier(self.copies.slot), sql.Identifier("public", PG)
                    )
                )

    def release(self) -> None:
        if self.current_db not in ("", self.copies.template_db):
            self.copies.drop_later(self.current_db)
        self.current_db = self.copies.template_db
        if self.delta_path != self.before_path:
            shutil.rmtree(self.delta_path, ignore_errors=True)

    def close(self) -> None:
        self.copies.close()

    # -- judging -------------------------------------------------------------------------------

    def states(self) -> tuple[dict[str, TargetState], int]:
        pg, staging = pg_state(self.sink_uri)
        return {DELTA: delta_state(self.delta_path, self.copies.slot), PG: pg}, staging

    def judge(self, point: str) -> str:
        """Each target is its source as of its position; the slot is behind them both.
        Returns before | after | partial (a target between)."""
        states, _ = self.states()
        for name, got in states.items():
            if self.live_add and name == DELTA and got == TargetState(None, None):
                continue  # not there yet (stray files of a killed first write may be)
            assert got.position is not None, f"{self.name}: killed at {point}, {name}: {got}"
            expected = self.history.expected(name, got.position)
            assert got.digest == expected, (
                f"{self.name}: killed at {point}, {name} at position {got.position} holds "
                f"{got.digest}, its source as of that position is {expected} "
                f"({self.history.applied(got.position)} of {len(self.history.began)} changes)"
            )
        self._check_slot(point, states)
        data = {k: (s.digest, s.position) for k, s in states.items()}
        if data == {k: (s.digest, s.position) for k, s in self.before.items()}:
            return "before"
        done = len(self.history.began)
        if all(self.history.applied(s.position or 0) == done for s in states.values()):
            return "after"
        return "partial"

    def _check_slot(self, point: str, states: dict[str, TargetState]) -> None:
        slot = slot_state(self.copies.cluster.uri(self.copies.source_db), self.copies.slot)
        held = [s.position for s in states.values() if s.position is not None]
        assert slot.confirmed is not None, f"{point}: the slot is gone"
        assert slot.confirmed <= min(held), (
            f"{self.name}: killed at {point}, the slot is confirmed to {slot.confirmed}, past "
            f"a member's position ({min(held)})"
        )
        assert not slot.active and slot.backfill_slots == [], f"{point}: {slot}"

    def check_converged(self, point: str) -> None:
        states, staging = self.states()
        for name, got in states.items():
            assert got.digest == self.history.final[name], (
                f"{self.name}: after {point} and a re-run, {name} is not its source: "
                f"{got.digest} != {self.history.final[name]}"
            )
            assert got.position is not None and got.position >= self.history.ended, (name, got)
        assert staging == 0, f"{self.name}: staging tables left after {point}"
        slot = slot_state(self.copies.cluster.uri(self.copies.source_db), self.copies.slot)
        low = min(s.position or 0 for s in states.values())
        assert slot.confirmed == low, f"{point}: slot at {slot.confirmed}, members at {low}"
        assert slot.backfill_slots == [], slot
        if self.maintain:  # what a killed maintenance left, the next one compacted or vacuumed
            files = data_files(self.delta_path)
            assert files == (1, 1), f"{point}: data files on disk, referenced: {files}"

    # -- kills ---------------------------------------------------------------------------------

    def kill_once(self, point: KillPoint | DelayedPoint | float) -> KillRecord:
        self.restore()
        try:
            if isinstance(point, float):
                text = f"timed {point:.3f}s"
                outcome = self.run(kill_at_seconds=point)
            elif len(point) == 3:
                text = f"{point[0]} #{point[1]} +{point[2]:.3f}s"
                outcome = self.run(kill_label=point[0], kill_nth=point[1], kill_delay=point[2])
            else:
                text = f"{point[0]} #{point[1]}"
                outcome = self.run(kill_label=point[0], kill_nth=point[1])
            if not outcome.killed:  # a point the run did not reach (threads interleave)
                assert outcome.exitcode == 0, f"{text}: {outcome.record}"
            elif isinstance(point, float):
                text = f"{text} (after {outcome.kill_label})"
            verdict = self.judge(text)
            orphans = uncommitted_files(self.delta_path)
            self.run_ok()
            self.check_converged(text)
            return KillRecord(text, outcome.killed, verdict, converged=True, orphans=orphans)
        finally:
            self.release()

    def sweep(self, points: Sequence[KillPoint | DelayedPoint], timed: list[float]) -> Figures:
        started = time.monotonic()
        records = [self.kill_once(p) for p in points]
        records += [self.kill_once(t) for t in timed]
        self.records += records
        return Figures.of(self.name, records, len(self.labels), time.monotonic() - started)

    def inside(self, start: str, end: str, count: int, seed: int = 23) -> list[DelayedPoint]:
        """Kills `count` random delays after a `start` tick, before its `end` tick took as
        long in the reference run: inside the call between them (a Delta merge: delta-rs
        writing its data files, then its log entry)."""
        rng = random.Random(f"{seed}:{self.name}:{start}")
        calls, opened = [], None
        for point, at in zip(occurrences(self.labels), self.times, strict=True):
            if point[0].endswith(start):
                opened = (point, at)
            elif point[0].endswith(end) and opened is not None:
                calls.append((opened[0], at - opened[1]))
                opened = None
        chosen = [rng.choice(calls) for _ in range(count)] if calls else []
        return [(label, nth, rng.uniform(0, seconds)) for (label, nth), seconds in chosen]

    def timed(self, count: int, seed: int = 23) -> list[float]:
        """Kill times anywhere in the run."""
        rng = random.Random(f"{seed}:{self.name}")
        return [rng.uniform(0, self.load_seconds) for _ in range(count)]


def choose_points(labels: list[str], focus: Callable[[str], bool], limit: int) -> list[KillPoint]:
    """Ticks to kill at: the focused ones (thinned to `limit`, commits kept), every Delta
    commit and p1 commit (then the slot is not yet confirmed) and every confirmation,
    `limit // 3` spread over the whole run, and the first tick."""
    ticks = occurrences(labels)
    focused = [i for i, label in enumerate(labels) if focus(label)]
    chosen = {focused[t - 1] for t in kill_points([labels[i] for i in focused], limit)}
    chosen |= {
        i
        for i, label in enumerate(labels)
        if (label.endswith(("delta committed", "sink committed")) and label.startswith("["))
        or label == "slot confirm"
    }
    chosen |= {t - 1 for t in kill_points(labels, max(4, limit // 3))}
    chosen.add(0)
    return [ticks[i] for i in sorted(chosen)]


@contextlib.contextmanager
def delta_sweep(
    cluster: ClusterInfo,
    workdir: Path,
    maintain: bool = False,
    changes: tuple[str, ...] = CHANGES,
    live_add: bool = False,
) -> Iterator[DeltaSweep]:
    sweep = DeltaSweep(cluster, workdir, maintain, changes, live_add)
    try:
        sweep.setup()
        yield sweep
    finally:
        sweep.close()
