"""The sweep: one scenario on one cluster: set up BEFORE, record AFTER, then kill and judge."""

from __future__ import annotations

import contextlib
import random
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from pgflow.config.model import TableName
from pgflow.localdb.cluster import ClusterInfo
from pgflow_tests.reliability.kills.child import ChildJob, ChildOutcome, run_child
from pgflow_tests.reliability.kills.copies import ClusterCopies
from pgflow_tests.reliability.kills.judge import Judge, same_data
from pgflow_tests.reliability.kills.observe import (
    delta_snapshot,
    id_qty_delta,
    id_qty_postgres,
    pg_snapshot,
    position_number,
    uncommitted_files,
)
from pgflow_tests.reliability.kills.plan import (
    Figures,
    KillRecord,
    kill_points,
    timed_delays,
)
from pgflow_tests.reliability.kills.scenarios import TARGET, Scenario
from pgflow_tests.reliability.kills.source_data import (
    change_delta_source,
    change_postgres_source,
    create_postgres_source,
    seed_delta_target,
    write_delta_source,
)

SOURCE_TABLE = TableName("public", "items")


class KillSweep:
    """One scenario on one cluster: set up BEFORE, record AFTER, then kill and judge."""

    def __init__(self, scenario: Scenario, cluster: ClusterInfo, workdir: Path) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.tag = uuid.uuid4().hex[:10]
        self.copies = ClusterCopies(cluster, self.tag)
        self.lake = workdir / "lake"
        self.spec_dir = workdir / "specs"
        self.before_lake = workdir / "lake_before"
        self.runs = 0
        self.judge = Judge(scenario, before={}, after={})  # filled in by setup()
        self.labels: list[str] = []
        self.load_seconds = 0.0
        self.times: list[float] = []
        self.current_db: str | None = None

    # -- runs ----------------------------------------------------------------------------------

    def sink_uri(self, db: str | None = None) -> str:
        db = db or self.current_db
        assert db is not None
        return self.copies.cluster.uri(db)

    def job(self, **kwargs: Any) -> ChildJob:
        self.runs += 1
        env = {
            "PGFLOW_CONN_SHOP": self.copies.cluster.uri(self.copies.source_db),
            "PGFLOW_CONN_WAREHOUSE": self.sink_uri(),
            "POSTGRES_MAX_RETRIES": "0",
            **self.scenario.env,
        }
        return ChildJob(
            spec_dir=str(self.spec_dir),
            env=env,
            app_name=f"pgflow-kills-{self.tag}-{self.runs}",
            sink_dbname=None if self.scenario.sink == "delta" else self.current_db,
            record_path=str(self.workdir / f"run-{self.runs}.json"),
            exclude_columns=self.scenario.exclude_columns,
            delta_batch_rows=self.scenario.delta_batch_rows,
            min_slice_blocks=self.scenario.min_slice_blocks,
            **kwargs,
        )

    def run(self, **kwargs: Any) -> ChildOutcome:
        job = self.job(**kwargs)
        outcome = run_child(job)
        self.copies.wait_gone(job.app_name)
        if self.scenario.cdc:
            self.copies.wait_slot_free(self.copies.slot)
        return outcome

    def run_ok(self, **kwargs: Any) -> ChildOutcome:
        outcome = self.run(**kwargs)
        assert outcome.exitcode == 0 and outcome.record is not None, (
            f"{self.scenario.name}: run failed (exit {outcome.exitcode}):\n"
            f"{outcome.record and outcome.record['error']}"
        )
        return outcome

    def snapshot(self) -> dict[str, Any]:
        if self.scenario.sink == "delta":
            return delta_snapshot(self.lake / "target")
        return pg_snapshot(self.sink_uri(), self.scenario.exclude_columns)

    # -- set-up: BEFORE and AFTER --------------------------------------------------------------

    def setup(self) -> None:
        self._make_source()
        self._make_before()
        self._record_after()

    def _make_source(self) -> None:
        self.spec_dir.mkdir(parents=True)
        self.lake.mkdir(parents=True)
        spec = self.scenario.spec_yaml(self.lake, self.copies.slot)
        (self.spec_dir / "pipeline.yaml").write_text(spec)
        self.copies.create_database(self.copies.source_db)
        if self.scenario.source == "delta":
            write_delta_source(self.lake / "source")
        else:
            create_postgres_source(self.source_uri)

    @property
    def source_uri(self) -> str:
        return self.copies.cluster.uri(self.copies.source_db)

    def _make_before(self) -> None:
        scenario = self.scenario
        self.copies.create_database(self.copies.template_db)
        self.current_db = self.copies.template_db
        if scenario.sink_ddl:
            self._sink_execute(scenario.sink_ddl)
            if scenario.sink == "delta":  # the Delta target made from the table the DDL made
                seed_delta_target(self.sink_uri(), self.lake / "target")
        if scenario.first_load:  # BEFORE: no target at all (CDC: no slot either)
            (self.lake / "target").mkdir()
        else:
            self.run_ok()  # the first load
            if scenario.target_ddl:
                self._sink_execute(scenario.target_ddl)
            if scenario.cdc:
                self.run_ok()  # a streaming run: the slot and the stored LSN in step
                self.copies.save_slot()
            self.judge.position_floor = self.change_source()
        if scenario.sink == "delta":
            shutil.copytree(self.lake / "target", self.before_lake)
        self.judge.before = self.snapshot()

    def _sink_execute(self, statements: str) -> None:
        with psycopg.connect(self.sink_uri(), autocommit=True) as conn:
            conn.execute(statements)  # a scenario's DDL, written out in scenarios.py

    def _record_after(self) -> None:
        """The reference run: AFTER, the ticks of a whole load, its resume points."""
        self.restore()
        observe = self.sink_uri() if self.scenario.partial else None
        reference = self.run_ok(record_ticks=True, observe_uri=observe)
        assert reference.record is not None
        self.labels = reference.record["labels"]
        self.times = reference.record["times"]
        self.load_seconds = reference.record["seconds"]
        after = self.judge.after = self.snapshot()
        # A resume point may hold all of AFTER's rows with an unfinished position (a first
        # sync killed between its last batch and its finish): judged by data and position.
        self.judge.partials = [
            s
            for s in reference.record["observed"]
            if not (same_data(s, after) and s["position"] == after["position"])
        ]
        self.check_after()
        self.release()

    def change_source(self) -> int | None:
        """Change the source; returns a lower bound for AFTER's position (advancing rules)."""
        if self.scenario.source == "delta":
            change_delta_source(self.lake / "source")
            return None
        lsn = change_postgres_source(self.source_uri, split=self.scenario.split_change)
        # CDC: AFTER's LSN is past the change's commit. No such floor for xmin: the checkpoint
        # is the snapshot's xmin, which any transaction still running (a DROP DATABASE of
        # this harness, say) holds back below the change's ID; it only never goes back.
        return position_number(lsn) if self.scenario.cdc else None

    def check_after(self) -> None:
        """AFTER differs from BEFORE and holds the source's rows (all of them, or a superset
        when the strategy keeps rows deleted at the source)."""
        name = self.scenario.name
        assert not same_data(self.judge.after, self.judge.before), (
            f"{name}: the run changed nothing"
        )
        if self.scenario.source == "delta":
            source = id_qty_delta(self.lake / "source")
        else:
            source = id_qty_postgres(self.source_uri, SOURCE_TABLE)
        if self.scenario.sink == "delta":
            target = id_qty_delta(self.lake / "target")
        else:
            target = id_qty_postgres(self.sink_uri(), TARGET)
        if self.scenario.source_equality == "apart":  # the scenario's own test checks AFTER
            return
        if self.scenario.source_equality == "equal":
            assert target == source, f"{name}: AFTER is not the source"
        else:
            assert source <= target, f"{name}: AFTER lacks source rows"
            assert len(target - source) > 0, f"{name}: deletes expected to stay"

    # -- restore -------------------------------------------------------------------------------

    def restore(self) -> None:
        """Put a fresh copy of BEFORE in place of the target (and the CDC slot)."""
        if self.scenario.sink == "delta":
            shutil.rmtree(self.lake / "target", ignore_errors=True)
            shutil.copytree(self.before_lake, self.lake / "target")
            self.current_db = self.copies.template_db  # unused by a Delta sink's run
            return
        self.current_db = self.copies.next_clone()
        if self.scenario.cdc:
            self.copies.reset_slot(restore=not self.scenario.first_load)

    def release(self) -> None:
        used = self.current_db
        if self.scenario.sink == "postgres" and used not in (None, self.copies.template_db):
            assert used is not None
            self.copies.drop_later(used)
        self.current_db = self.copies.template_db

    def close(self) -> None:
        self.copies.close()

    # -- kills ---------------------------------------------------------------------------------

    def kill_once(
        self, point: str, kill_at: int | None, kill_at_seconds: float | None = None
    ) -> KillRecord:
        self.restore()
        try:
            outcome = self.run(kill_at=kill_at, kill_at_seconds=kill_at_seconds)
            if outcome.killed:
                point = f"{point} ({outcome.kill_label})"
            else:
                # A timed kill after the load ended, or (CDC, whose threads interleave) a run
                # with fewer ticks than the reference: not a kill, but it must have succeeded.
                assert outcome.exitcode == 0, (
                    f"{self.scenario.name}: run failed (exit {outcome.exitcode}): "
                    f"{outcome.record and outcome.record['error']}"
                )
            verdict, orphans = self._judge_kill(point)
            converged = self._check_convergence(point, verdict)
            return KillRecord(point, outcome.killed, verdict, converged, orphans)
        finally:
            self.release()

    def _judge_kill(self, point: str) -> tuple[str, int]:
        """The killed run's target: its verdict, and the orphans it left."""
        name = self.scenario.name
        snap = self.snapshot()
        verdict = self.judge.verdict(snap)
        assert verdict is not None, (
            f"{name}: killed at {point}, the target is neither before nor after:\n"
            f"  got    {snap}\n  before {self.judge.before}\n  after  {self.judge.after}"
        )
        orphans: int = snap.get("staging", 0)
        if self.scenario.sink == "delta":
            # written by the killed run, in no commit
            orphans = uncommitted_files(self.lake / "target", self.before_lake)
        elif not (self.scenario.cdc or self.scenario.min_slice_blocks):
            # Only CDC and the parallel exchange commit staging tables outside their apply.
            assert orphans == 0, f"{name}: killed at {point}, staging tables left behind"
        return verdict, orphans

    def _check_convergence(self, point: str, verdict: str) -> bool:
        """One more run without a kill reaches AFTER and leaves no staging table behind."""
        name = self.scenario.name
        self.run_ok()
        final = self.snapshot()
        converged = self.judge.converged(final)
        assert converged, (
            f"{name}: after the kill at {point} ({verdict}), the next run did not reach "
            f"AFTER:\n  got   {final}\n  after {self.judge.after}"
        )
        if self.scenario.sink == "postgres":
            assert final["staging"] == 0, f"{name}: staging tables left after {point}"
        return converged

    def sweep(self, event_points: int, timed_points: int, seed: int = 9) -> Figures:
        started = time.monotonic()
        records: list[KillRecord] = []
        for tick in kill_points(self.labels, event_points):
            records.append(self.kill_once(f"tick {tick}", tick, None))
        rng = random.Random(f"{seed}:{self.scenario.name}")
        delays = timed_delays(self.labels, self.times, self.load_seconds, timed_points, rng)
        for delay in delays:
            records.append(self.kill_once(f"timed {delay:.4f}s", None, delay))
        seconds = time.monotonic() - started
        return Figures.of(self.scenario.name, records, len(self.labels), seconds)


@contextlib.contextmanager
def kill_sweep(scenario: Scenario, cluster: ClusterInfo, workdir: Path) -> Iterator[KillSweep]:
    sweep = KillSweep(scenario, cluster, workdir)
    try:
        sweep.setup()
        yield sweep
    finally:
        sweep.close()
