"""Reliability: SIGKILL a load at many points, for every strategy (harness: the kills package).

Each test sets up a target (BEFORE), changes the source, records an uninterrupted run
(AFTER), then kills fresh copies of the BEFORE state at chosen ticks of the load and at random
times. After every kill the target (rows, relations, stored position) must be exactly BEFORE
or exactly AFTER (delta_sync: or one of the resume points its reference run committed), and
the next run must reach AFTER with no staging table left.

Strategies (kills.SCENARIOS): full_refresh truncate_insert / exchange / exchange over 3
parallel streams (and a first load into no target), incremental_merge delete_insert / upsert /
shadow_swap, replace, partition_replace native (a LIST-partitioned target) and delete/insert, column cursor (and its first load), xmin, CDC (one batch,
several batches, the first run with its snapshot), Delta sink (merge with a cursor, full
refresh, first load) and Delta -> Postgres sync (and its first load).

The fast subset (per strategy: mid-COPY, just before and just after the last commit, one
random time) runs in `make test`; the full sweep (>= 30 kill points per strategy) is marked
`faults` (`make test-faults`). Figures are printed (conftest.py repeats them at the end) and,
with PGFLOW_RELIABILITY_FIGURES=<file>, appended to that file as JSON lines.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pgflow_tests.reliability.kills.judge import same_data
from pgflow_tests.reliability.kills.plan import Figures, report
from pgflow_tests.reliability.kills.scenarios import SCENARIOS
from pgflow_tests.reliability.kills.sweep import kill_sweep

FAST_EVENT_POINTS = 3
FAST_TIMED_POINTS = 1
FULL_EVENT_POINTS = 32
FULL_TIMED_POINTS = 6
MIN_POINTS = 30

NAMES = sorted(SCENARIOS)


def _check(figures: Figures, minimum: int) -> None:
    report(figures)
    assert figures.points >= minimum, figures.line()
    assert figures.before + figures.after + figures.partial == figures.points
    assert figures.converged == figures.points


@pytest.mark.parametrize("name", NAMES)
def test_kills_fast(name: str, local_pg, tmp_path: Path) -> None:
    with kill_sweep(SCENARIOS[name], local_pg, _workdir(tmp_path)) as sweep:
        figures = sweep.sweep(FAST_EVENT_POINTS, FAST_TIMED_POINTS)
    _check(figures, FAST_EVENT_POINTS)


@pytest.mark.faults
@pytest.mark.parametrize("name", NAMES)
def test_kills_sweep(name: str, local_pg, tmp_path: Path) -> None:
    with kill_sweep(SCENARIOS[name], local_pg, _workdir(tmp_path)) as sweep:
        figures = sweep.sweep(FULL_EVENT_POINTS, FULL_TIMED_POINTS)
        assert len(sweep.labels) >= MIN_POINTS, "a load too short to kill at 30 points"
    _check(figures, MIN_POINTS)
    # Both outcomes occur: kills before the commit leave BEFORE, after it AFTER.
    assert figures.before > 0 and figures.after > 0, figures.line()


def test_the_judge_rejects_a_half_applied_target(local_pg, tmp_path: Path) -> None:
    """Negative control: a state that is neither BEFORE nor AFTER is caught. The Delta sync
    commits per batch by design; judged as if it had to be atomic, a kill just after its
    first batch commit must be rejected (and the next run still converges)."""
    strict = dataclasses.replace(SCENARIOS["delta_sync"], partial=False)
    with kill_sweep(strict, local_pg, _workdir(tmp_path)) as sweep:
        first_batch = sweep.labels.index("sink copy chunk")
        just_committed = sweep.labels.index("sink committed", first_batch) + 1  # a tick number
        sweep.restore()
        try:
            assert sweep.run(kill_at=just_committed).killed
            half = sweep.snapshot()
            assert sweep.judge.verdict(half) is None, half
            assert '"finished": false' in half["position"][2]  # a resume point, committed
            sweep.run_ok()
            assert sweep.judge.verdict(sweep.snapshot()) == "after"
        finally:
            sweep.release()


def _workdir(tmp_path: Path) -> Path:
    path = tmp_path / "kills"
    path.mkdir()
    return path


def test_cdc_kill_before_the_staging_mark_leaves_no_table(local_pg, tmp_path: Path) -> None:
    """CDC commits its staging tables outside the apply; each commits with its tag in one
    transaction, so a kill between the CREATE and the tag leaves no table at all."""
    with kill_sweep(SCENARIOS["cdc"], local_pg, _workdir(tmp_path)) as sweep:
        tick = sweep.labels.index("sink COMMENT ON TABLE") + 1  # just before the mark
        sweep.restore()
        try:
            killed = sweep.run(kill_at=tick)
            assert killed.killed and killed.kill_label == "sink COMMENT ON TABLE"
            assert sweep.snapshot()["untagged_staging"] == 0
            sweep.run_ok()
            final = sweep.snapshot()
            assert same_data(final, sweep.judge.after) and sweep.judge.position_after_ok(final)
            assert final["staging"] == 0
        finally:
            sweep.release()
