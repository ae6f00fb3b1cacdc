"""The kill sweep of a CDC group: tables t1..t3 sharing one slot (and t4 joining them live),
SIGKILLed at chosen points of one run, judged table by table, then run again.

BEFORE: the group streamed in step (slot and positions), then the source changes in several
transactions. After each kill, for every member: its target is its source as of its stored
position (History.expected: no change lost, none applied twice, the position true to the
rows), and the slot's confirmed position is at or below every member's position. The run
after the kill must succeed and bring every table to the source, with positions past the
change, the slot confirmed to the lowest of them, no staging table and no temporary slot left.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.reliability.kills.child import ChildOutcome
from pgflow_tests.reliability.kills.copies import ClusterCopies
from pgflow_tests.reliability.kills.group_child import GroupJob, run_group_child
from pgflow_tests.reliability.kills.group_world import (
    LIVE,
    TABLES,
    History,
    TargetState,
    apply_changes,
    create_source,
    sink_state,
    slot_state,
    warm_up,
)
from pgflow_tests.reliability.kills.plan import Figures, KillRecord, kill_points

BATCH_CHANGES = 150  # messages per batch: each change transaction ends one
KillPoint = tuple[str, int]  # a label and its occurrence in the run


class GroupSweep:
    """One group sweep on one cluster: BEFORE, the reference run, kills and re-runs."""

    def __init__(
        self,
        cluster: ClusterInfo,
        workdir: Path,
        live_add: bool,
        selected: tuple[str, ...] | None = None,
    ) -> None:
        self.name = "cdc_group/live_add" if live_add else "cdc_group"
        if selected:
            self.name += "/subset"
        self.selected = selected  # the killed runs materialize only these; the re-run all
        self.workdir = workdir
        self.copies = ClusterCopies(cluster, uuid.uuid4().hex[:10])
        self.members = (*TABLES, LIVE) if live_add else TABLES
        self.history = History()
        self.before: dict[str, TargetState] = {}
        self.labels: list[str] = []
        self.times: list[float] = []
        self.load_seconds = 0.0
        self.runs = 0
        self.current_db = ""
        self.records: list[KillRecord] = []

    @property
    def source_uri(self) -> str:
        return self.copies.cluster.uri(self.copies.source_db)

    @property
    def sink_uri(self) -> str:
        return self.copies.cluster.uri(self.current_db)

    def run(self, tables: tuple[str, ...] | None = None, **kwargs: Any) -> ChildOutcome:
        self.runs += 1
        app = f"pgflow-kills-{self.copies.tag}-{self.runs}"
        job = GroupJob(
            source_uri=self.source_uri,
            sink_uri=self.sink_uri,
            sink_dbname=self.current_db,
            slot=self.copies.slot,
            tables=tables or self.members,
            batch_changes=BATCH_CHANGES,
            app_name=app,
            record_path=str(self.workdir / f"run-{self.runs}.json"),
            **kwargs,
        )
        outcome = run_group_child(job)
        self.copies.wait_gone(app)
        self.copies.wait_slot_free(self.copies.slot)
        return outcome

    def run_ok(self, tables: tuple[str, ...] | None = None, **kwargs: Any) -> ChildOutcome:
        outcome = self.run(tables, **kwargs)
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
        self.run_ok(TABLES)  # the group's first run: one slot, three snapshots
        warm_up(self.source_uri)
        self.run_ok(TABLES)  # streaming: slot and positions in step
        copies.save_slot()
        self.history = apply_changes(self.source_uri)
        self.before, _ = sink_state(self.sink_uri, self.members)
        self.restore()
        reference = self.run_ok(record_ticks=True, selected=self.selected)
        assert reference.record is not None
        self.labels, self.times = reference.record["labels"], reference.record["times"]
        self.load_seconds = reference.record["seconds"]
        if self.selected:
            self.judge("the reference run of a subset")
            self.run_ok()
        self.check_converged("the reference run")
        self.release()

    def restore(self) -> None:
        """BEFORE again: a clone of the sink, the slot copied from BEFORE's, the publication
        without the table a live add joins."""
        self.current_db = self.copies.next_clone()
        self.copies.reset_slot(restore=True)
        tables = sql.SQL(", ").join(sql.Identifier("public", t) for t in TABLES)
        statement = sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(
            sql.Identifier(self.copies.slot), tables
        )
        with psycopg.connect(self.source_uri, autocommit=True) as conn:
            conn.execute(statement)

    def release(self) -> None:
        if self.current_db not in ("", self.copies.template_db):
            self.copies.drop_later(self.current_db)
        self.current_db = self.copies.template_db

    def close(self) -> None:
        self.copies.close()

    # -- judging -------------------------------------------------------------------------------

    def judge(self, point: str) -> str:
        """Every target is its source as of its position; the slot is behind them all.
        Returns before | after | partial (some members between)."""
        states, _ = sink_state(self.sink_uri, self.members)
        at: list[int] = []
        for name, got in states.items():
            if self.selected and name not in self.selected:
                assert got == self.before[name], f"{point}: {name}, not run, changed: {got}"
            if got.position is None:
                assert name == LIVE and got.digest is None, f"{point}: {name} is {got}"
                continue
            expected = self.history.expected(name, got.position)
            assert got.digest == expected, (
                f"{self.name}: killed at {point}, {name} at position {got.position} holds "
                f"{got.digest}, its source as of that position is {expected} "
                f"({self.history.applied(got.position)} of {len(self.history.began)} changes)"
            )
            at.append(self.history.applied(got.position))
        self._check_slot(point, states)
        if states == self.before:
            return "before"
        if all(n == len(self.history.began) for n in at) and len(at) == len(self.members):
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
        states, staging = sink_state(self.sink_uri, self.members)
        for name, got in states.items():
            assert got.digest == self.history.final[name], (
                f"{self.name}: after {point} and a re-run, {name} is not its source: "
                f"{got.digest} != {self.history.final[name]}"
            )
            assert got.position is not None and got.position >= self.history.ended, got
        assert staging == 0, f"{self.name}: staging tables left after {point}"
        slot = slot_state(self.copies.cluster.uri(self.copies.source_db), self.copies.slot)
        low = min(s.position or 0 for s in states.values())
        assert slot.confirmed == low, f"{point}: slot at {slot.confirmed}, members at {low}"
        assert slot.backfill_slots == [], slot

    # -- kills ---------------------------------------------------------------------------------

    def kill_once(self, point: KillPoint | float) -> KillRecord:
        self.restore()
        try:
            if isinstance(point, float):
                text = f"timed {point:.3f}s"
                outcome = self.run(kill_at_seconds=point, selected=self.selected)
            else:
                text = f"{point[0]} #{point[1]}"
                outcome = self.run(kill_label=point[0], kill_nth=point[1], selected=self.selected)
            if not outcome.killed:  # a point the run did not reach (threads interleave)
                assert outcome.exitcode == 0, f"{text}: {outcome.record}"
            elif isinstance(point, float):
                text = f"{text} (after {outcome.kill_label})"
            verdict = self.judge(text)
            self.run_ok()
            self.check_converged(text)
            return KillRecord(text, outcome.killed, verdict, converged=True)
        finally:
            self.release()

    def sweep(self, points: list[KillPoint], timed: int, seed: int = 21) -> Figures:
        started = time.monotonic()
        records = [self.kill_once(p) for p in points]
        rng = random.Random(f"{seed}:{self.name}")
        records += [self.kill_once(rng.uniform(0, self.load_seconds)) for _ in range(timed)]
        self.records += records
        return Figures.of(self.name, records, len(self.labels), time.monotonic() - started)


def occurrences(labels: list[str]) -> list[KillPoint]:
    """Each tick of a run as (label, n): its label's n-th occurrence."""
    seen: Counter[str] = Counter()
    points = []
    for label in labels:
        seen[label] += 1
        points.append((label, seen[label]))
    return points


def choose_points(labels: list[str], focus: Callable[[str], bool], limit: int) -> list[KillPoint]:
    """Ticks to kill at: the focused ones (thinned to `limit` like the harness's sweep,
    commits kept), every commit of a member's apply (then the slot is not yet confirmed)
    and every confirmation, `limit // 3` spread over the whole run, and two early ones."""
    ticks = occurrences(labels)
    focused = [i for i, label in enumerate(labels) if focus(label)]
    chosen = {focused[t - 1] for t in kill_points([labels[i] for i in focused], limit)}
    chosen |= {
        i
        for i, label in enumerate(labels)
        if (label.startswith("[t") and label.endswith("sink committed")) or label == "slot confirm"
    }
    chosen |= {t - 1 for t in kill_points(labels, max(4, limit // 3))}
    # Before anything commits: the first tick, the first batch's staging.
    chosen |= {0, labels.index("sink copy chunk")}
    return [ticks[i] for i in sorted(chosen)]


@contextlib.contextmanager
def group_sweep(
    cluster: ClusterInfo,
    workdir: Path,
    live_add: bool,
    selected: tuple[str, ...] | None = None,
) -> Iterator[GroupSweep]:
    sweep = GroupSweep(cluster, workdir, live_add, selected)
    try:
        sweep.setup()
        yield sweep
    finally:
        sweep.close()
