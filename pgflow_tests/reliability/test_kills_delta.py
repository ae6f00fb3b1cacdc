"""Reliability: SIGKILL a CDC run into Delta (d1 into a Delta table and p1 into Postgres,
sharing one slot) at chosen points, then run it again (harness: kills/delta_sweep.py,
delta_child.py, delta_world.py).

Kill points, from the ticks of a recorded reference run (a label and its occurrence): during
the Delta member's apply (typing its changes on the source, the merge), before each Delta
commit, after each Delta commit and before the slot is confirmed, at each confirmation, spread
points over the whole run, inside delta-rs's calls (a random delay after the tick before a
merge: data files written, the log entry not yet), random times; the same around a TRUNCATE
(the Delta table emptied at its place in the stream), while d1 joins a running group (its
snapshot, the Delta table's first commit, written in a thread while p1 streams), and during
the Delta table's maintenance after the run (compaction, vacuum, checkpoint, and inside
them). After each kill both tables must be their
source as of their own stored position (0 rows lost or doubled; the Delta table's position is
its app transaction's version) with the slot at or below both; the next run brings both to
the source and the slot to the lower position.

The fast subset runs in `make test`; the sweeps are marked `faults` (`make test-faults`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable

from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.pg import execute
from pgflow_tests.reliability.kills.delta_sweep import DeltaSweep, choose_points, delta_sweep
from pgflow_tests.reliability.kills.delta_world import TRUNCATE_CHANGES
from pgflow_tests.reliability.kills.plan import Figures, report

FULL_POINTS = 30


def _check(figures: Figures, minimum: int) -> None:
    report(figures)
    assert figures.points >= minimum, figures.line()
    assert figures.before + figures.after + figures.partial == figures.points
    assert figures.converged == figures.points


def _workdir(tmp_path: Path) -> Path:
    path = tmp_path / "kills"
    path.mkdir()
    return path


def _killed_at(sweep: DeltaSweep, prefix: str, suffix: str = "") -> int:
    """Kills that struck a tick labelled `prefix`...`suffix` (its occurrence after)."""
    return sum(
        r.killed and r.point.startswith(prefix) and r.point.split(" #")[0].endswith(suffix)
        for r in sweep.records
    )


def _during_delta_apply(label: str) -> bool:
    return label.startswith("[delta] ")


def _during_delta_backfill(label: str) -> bool:
    return label.startswith("[d1 backfill] ")


def _during_maintenance(label: str) -> bool:
    return label.startswith("[maintain] ")


@pytest.mark.faults
def test_delta_kills_during_apply_and_before_the_slot_confirm(
    local_pg: ClusterInfo, tmp_path: Path
) -> None:
    with delta_sweep(local_pg, _workdir(tmp_path)) as sweep:
        points = choose_points(sweep.labels, _during_delta_apply, FULL_POINTS)
        assert sum(_during_delta_apply(label) for label, _ in points) >= 10, points
        inside = sweep.inside("delta merge", "delta committed", 6)
        figures = sweep.sweep([*points, *inside], sweep.timed(4))
        assert _killed_at(sweep, "[delta] ") >= 10
        assert _killed_at(sweep, "[delta] delta merge") >= 2  # before a Delta commit
        assert _killed_at(sweep, "[delta] delta committed") >= 2  # committed, slot not confirmed
        assert (
            sum(r.killed and "delta merge" in r.point and "+" in r.point for r in sweep.records)
            >= 3
        )
        assert _killed_at(sweep, "slot confirm") >= 2
    _check(figures, FULL_POINTS)
    assert figures.before > 0 and figures.partial > 0 and figures.after > 0, figures.line()


@pytest.mark.faults
def test_delta_kills_around_a_truncate(local_pg: ClusterInfo, tmp_path: Path) -> None:
    """The change ends with d1 truncated and filled again, then changed: killed anywhere,
    the Delta table is its source as of its position (before the TRUNCATE, or emptied and
    refilled, never a mix); the next run brings it to the source."""
    with delta_sweep(local_pg, _workdir(tmp_path), changes=TRUNCATE_CHANGES) as sweep:
        points = choose_points(sweep.labels, _during_delta_apply, 20)
        inside = sweep.inside("delta merge", "delta committed", 4)
        figures = sweep.sweep([*points, *inside], sweep.timed(2))
        assert _killed_at(sweep, "[delta] delta merge") >= 2
    _check(figures, 20)
    assert figures.before > 0 and figures.partial > 0, figures.line()


@pytest.mark.faults
def test_delta_kills_while_the_delta_table_joins_a_running_group(
    local_pg: ClusterInfo, tmp_path: Path
) -> None:
    """p1 streams; d1 joins: its snapshot, the Delta table's first commit with its start LSN,
    is written in a thread while p1 streams. Killed anywhere: d1 is absent (stray files of an
    uncommitted first write at most) or its source as of its position; the next run starts
    it again or streams on, and brings both to the source."""
    with delta_sweep(local_pg, _workdir(tmp_path), live_add=True) as sweep:
        points = choose_points(sweep.labels, _during_delta_backfill, 20)
        assert sum(_during_delta_backfill(label) for label, _ in points) >= 5, points
        inside = sweep.inside("delta write", "delta committed", 4)
        figures = sweep.sweep([*points, *inside], sweep.timed(2))
        assert _killed_at(sweep, "[d1 backfill] ") >= 5
    _check(figures, 20)
    assert figures.before > 0 and figures.after > 0, figures.line()


@pytest.mark.faults
def test_delta_kills_during_maintenance(local_pg: ClusterInfo, tmp_path: Path) -> None:
    """The run, then compaction, vacuum (retention 0) and a checkpoint: killed in any of
    them, the table still reads as its source as of its position; the next run and its
    maintenance succeed."""
    with delta_sweep(local_pg, _workdir(tmp_path), maintain=True) as sweep:
        focus = [(label, 1) for label in dict.fromkeys(sweep.labels) if _during_maintenance(label)]
        assert len(focus) >= 6, sweep.labels[-20:]
        assert sweep.files == (1, 1), sweep.files  # compacted into one file, the rest vacuumed
        inside = [
            *sweep.inside("[maintain] delta compact", "[maintain] delta compact done", 3),
            *sweep.inside("[maintain] delta vacuum", "[maintain] delta vacuum done", 3),
            *sweep.inside("delta create_checkpoint", "delta create_checkpoint done", 2),
        ]
        figures = sweep.sweep([*focus, *inside], [])
        assert _killed_at(sweep, "[maintain] ") >= 12
    _check(figures, 12)


def test_delta_kills_fast(local_pg: ClusterInfo, tmp_path: Path) -> None:
    """One kill of each kind: before the first Delta commit, just after it (the slot not yet
    confirmed), after p1's first commit, and in the middle of the run's time."""
    with delta_sweep(local_pg, _workdir(tmp_path)) as sweep:
        labels = sweep.labels
        merge = next(label for label in labels if label.startswith("[delta] delta merge"))
        committed = next(label for label in labels if label == "[delta] delta committed")
        pg_committed = next(label for label in labels if label == "[p1] sink committed")
        points = [(merge, 1), (committed, 1), (pg_committed, 1)]
        figures = sweep.sweep(points, [sweep.load_seconds / 2])
        assert _killed_at(sweep, "[delta] ") >= 2
    _check(figures, 3)


def test_the_delta_judge_rejects_a_lost_row_and_a_slot_past_the_table(
    local_pg: ClusterInfo, tmp_path: Path
) -> None:
    """Negative control: a Delta table that is not its source as of its position, and a slot
    confirmed past the Delta table's position, are both caught."""
    with delta_sweep(local_pg, _workdir(tmp_path)) as sweep:
        sweep.restore()
        try:
            assert sweep.judge("untouched BEFORE") == "before"
            DeltaTable(str(sweep.delta_path)).delete("id = 2")
            with pytest.raises(AssertionError, match="d1 at position"):
                sweep.judge("a lost row")
        finally:
            sweep.release()
        sweep.restore()
        try:
            execute(
                sweep.source_uri,
                "SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())",
                (sweep.copies.slot,),
            )
            with pytest.raises(AssertionError, match="past a member's position"):
                sweep.judge("a slot moved on")
        finally:
            sweep.release()
