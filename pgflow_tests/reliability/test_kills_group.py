"""Reliability: SIGKILL a CDC group's run (3 tables sharing one slot; a 4th joining live) at
chosen points, then run it again (harness: kills/group_sweep.py, group_child.py).

Kill points, from the ticks of a recorded reference run (a label and its occurrence, since
the staging and applying threads interleave): during the apply of table t2's batches, during
the live add's backfill of t4, after each member's commit before the slot is confirmed, at
each confirmation, spread points over the whole run, and random times. After each kill every
table must be its source as of its own stored position (0 rows lost or doubled) with the
slot behind them all; the next run brings every table to its source, the slot to the lowest
position, and leaves no staging table or temporary slot.

The fast subset runs in `make test`; the sweeps are marked `faults` (`make test-faults`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.pg import execute
from pgflow_tests.reliability.kills.group_sweep import GroupSweep, choose_points, group_sweep
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


def _killed_at(sweep: GroupSweep, prefix: str, suffix: str = "") -> int:
    """Kills that struck a tick labelled `prefix`...`suffix` (its occurrence after)."""
    return sum(
        r.killed and r.point.startswith(prefix) and r.point.split(" #")[0].endswith(suffix)
        for r in sweep.records
    )


def _during_t2_apply(label: str) -> bool:
    return label.startswith("[t2] ")


def _during_backfill(label: str) -> bool:
    return label.startswith("[t4 backfill] ")


@pytest.mark.faults
def test_group_kills_during_apply_and_before_the_slot_confirm(
    local_pg: ClusterInfo, tmp_path: Path
) -> None:
    with group_sweep(local_pg, _workdir(tmp_path), live_add=False) as sweep:
        points = choose_points(sweep.labels, _during_t2_apply, FULL_POINTS)
        assert sum(_during_t2_apply(label) for label, _ in points) >= 10, points
        figures = sweep.sweep(points, timed=4)
        assert _killed_at(sweep, "[t2] ") >= 10
        assert _killed_at(sweep, "[t", "sink committed") >= 4  # committed, slot not confirmed
        assert _killed_at(sweep, "slot confirm") >= 2
    _check(figures, FULL_POINTS)
    assert figures.before > 0 and figures.partial > 0 and figures.after > 0, figures.line()


@pytest.mark.faults
def test_group_kills_during_a_live_adds_backfill(local_pg: ClusterInfo, tmp_path: Path) -> None:
    with group_sweep(local_pg, _workdir(tmp_path), live_add=True) as sweep:
        points = choose_points(sweep.labels, _during_backfill, FULL_POINTS)
        assert sum(_during_backfill(label) for label, _ in points) >= 10, points
        figures = sweep.sweep(points, timed=4)
        assert _killed_at(sweep, "[t4 backfill] ") >= 10
    _check(figures, FULL_POINTS)
    assert figures.before > 0 and figures.after > 0, figures.line()


@pytest.mark.faults
def test_group_kills_in_a_subset_run_keep_the_others_changes(
    local_pg: ClusterInfo, tmp_path: Path
) -> None:
    """A run of t1 and t2 only (t3's changes stay in the slot): killed anywhere, t3 is
    untouched and the slot stays at t3's position; the next run of the whole group applies
    t3's changes once."""
    with group_sweep(local_pg, _workdir(tmp_path), False, selected=("t1", "t2")) as sweep:
        points = choose_points(sweep.labels, _during_t2_apply, FULL_POINTS)
        figures = sweep.sweep(points, timed=2)
        assert _killed_at(sweep, "[t2] ") >= 10
    _check(figures, FULL_POINTS)
    assert figures.before > 0 and figures.partial > 0, figures.line()


def test_group_kills_fast(local_pg: ClusterInfo, tmp_path: Path) -> None:
    """One kill of each kind: in t2's apply, just after a member's commit, in t4's backfill."""
    with group_sweep(local_pg, _workdir(tmp_path), live_add=True) as sweep:
        labels = sweep.labels
        apply = next(label for label in labels if label.startswith("[t2] sink"))
        committed = next(label for label in labels if label == "[t2] sink committed")
        backfill = next(label for label in labels if label.startswith("[t4 backfill] sink"))
        figures = sweep.sweep([(apply, 1), (committed, 1), (backfill, 1)], timed=0)
    _check(figures, 3)


def test_the_group_judge_rejects_a_lost_row_and_a_slot_past_a_member(
    local_pg: ClusterInfo, tmp_path: Path
) -> None:
    """Negative control: a target that is not its source as of its position, and a slot
    confirmed past a member's position, are both caught."""
    with group_sweep(local_pg, _workdir(tmp_path), live_add=False) as sweep:
        sweep.restore()
        try:
            assert sweep.judge("untouched BEFORE") == "before"
            execute(sweep.sink_uri, "DELETE FROM landing.t2 WHERE id = 2")
            with pytest.raises(AssertionError, match="t2 at position"):
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
