"""The child of the CDC-into-Delta kill sweep: one run of `replicate_group` over d1 (into a
Delta table) and p1 (into Postgres) on one slot, then, when asked, the Delta table's
maintenance; killed at the n-th tick of a label or at a time.

Ticks (test instrumentation in the child only, as group_child.py's): psycopg statements, COPY
chunks and commits on every connection (the Delta member's typing runs on the SOURCE, so its
statements are "source ..."), Delta merges and writes before and after their commit
("delta merge" / "delta write" ... "delta committed"), the slot's confirmation, and the
maintenance's optimize, vacuum and checkpoint calls before and after. The ticks of a member's
apply are prefixed with its tag: "[delta]" or "[p1]"; the maintenance's with "[maintain]".
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import deltalake
import psycopg
from deltalake import DeltaTable
from deltalake.table import TableOptimizer

import pgflow.flows.cdc.backfill as backfill
import pgflow.flows.cdc.group_applier as group_applier
import pgflow.flows.cdc.group_stream as group_stream
from pgflow.config.model import DeltaMaintenance, StrategySpec, TableName
from pgflow.flows import delta_maintenance
from pgflow.flows.cdc.group_model import GroupMember, GroupSettings
from pgflow.flows.cdc.group_run import replicate_group
from pgflow.flows.cdc.model import CdcTarget, DeltaCdcTarget
from pgflow.sources.replication_stream import ReplicationStream
from pgflow_tests.reliability.kills import child
from pgflow_tests.reliability.kills.delta_world import DELTA, PG
from pgflow_tests.reliability.kills.group_child import GroupTicker

MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
GROUP = "kills_delta"
MAINTENANCE = DeltaMaintenance(
    vacuum_retention=timedelta(0), allow_short_retention=True, checkpoint=True
)
# Random parts of names (staging tables, temporary tables): a label names the same tick in
# every run.
RANDOM_PART = re.compile(r"[0-9a-f]{8,}")


@dataclass(frozen=True)
class DeltaJob:
    source_uri: str
    sink_uri: str
    sink_dbname: str  # which psycopg connections are the Postgres sink's
    slot: str
    delta_path: str
    batch_changes: int
    app_name: str
    record_path: str  # the child's record (JSON) when it ends normally
    tables: tuple[str, ...] = (DELTA, PG)
    maintain: bool = False  # after the CDC run, the Delta table's maintenance
    kill_label: str | None = None
    kill_nth: int = 1  # SIGKILL at this occurrence of kill_label
    kill_delay: float | None = None  # ... or this many seconds after it (inside the call)
    kill_at_seconds: float | None = None
    record_ticks: bool = False
    selected: tuple[str, ...] | None = None


class DeltaTicker(GroupTicker):
    """group_child's ticker, with random parts of names masked, and a kill that may come a
    delay after its tick: inside the call the tick precedes (a merge, a vacuum)."""

    def __init__(self, job: DeltaJob) -> None:
        super().__init__(job)  # type: ignore[arg-type]
        self.delta_job = job
        # The delayed kill happens here instead: GroupTicker never sees the label.
        self.delayed = job.kill_label if job.kill_delay is not None else None
        if self.delayed is not None:
            self.job = replace(job, kill_label=None)  # type: ignore[assignment]

    def tick(self, label: str) -> None:
        label = RANDOM_PART.sub("*", label)
        super().tick(label)
        tag = getattr(self.local, "tag", None)
        full = f"[{tag}] {label}" if tag else label
        if full == self.delayed and self.counts[full] == self.delta_job.kill_nth:
            self.delayed = None
            delay = self.delta_job.kill_delay or 0.0
            timer = threading.Timer(delay, _kill, (self.delta_job.record_path, f"{full} +{delay}"))
            timer.daemon = True
            timer.start()


def _install(ticker: DeltaTicker, job: DeltaJob) -> None:
    """Test-only instrumentation, in the child process only."""
    hook_job = child.ChildJob("", {}, job.app_name, job.sink_dbname, job.record_path)
    child._hook_psycopg(ticker, hook_job)  # type: ignore[arg-type]
    child._hook_delta(ticker)  # type: ignore[arg-type]
    _hook_write_deltalake(ticker)
    _hook_maintenance(ticker)
    _tag_applies(ticker)
    confirm = ReplicationStream.confirm

    def ticking_confirm(self: ReplicationStream, lsn: int) -> None:
        ticker.tick("slot confirm")
        confirm(self, lsn)

    ReplicationStream.confirm = ticking_confirm  # type: ignore[method-assign]


def _tag_applies(ticker: DeltaTicker) -> None:
    """The ticks of a member's apply carry its tag ("delta" or the Postgres table's name),
    those of storing the position reached at the end of the stream "reached", those of a
    member's snapshot "<table> backfill"."""
    apply_member = group_applier.GroupApplier._apply_member
    store_reached = group_stream._store_reached

    def tagged_apply(self: Any, member: Any, staged: Any) -> None:
        target = member.member.target
        tag = target.table.name if isinstance(target, CdcTarget) else "delta"
        with ticker.tagged(tag):
            apply_member(self, member, staged)

    def tagged_reached(*args: Any) -> None:
        with ticker.tagged("reached"):
            store_reached(*args)

    group_applier.GroupApplier._apply_member = tagged_apply  # type: ignore[method-assign]
    start_member = backfill.start_member

    def tagged_start(run: Any, member: Any, *rest: Any) -> None:
        with ticker.tagged(f"{member.member.table.name} backfill"):
            start_member(run, member, *rest)

    backfill.start_member = tagged_start  # type: ignore[assignment]
    group_stream._store_reached = tagged_reached  # type: ignore[assignment]


def _hook_write_deltalake(ticker: DeltaTicker) -> None:
    """write_deltalake wherever pgflow imported it by name (child.py hooks one module)."""
    original = deltalake.write_deltalake

    def delta_write(*args: Any, **kwargs: Any) -> Any:
        ticker.tick("delta write")
        result = original(*args, **kwargs)
        ticker.tick("delta committed")
        return result

    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "")
        if name.startswith("pgflow.") and getattr(module, "write_deltalake", None) is original:
            module.write_deltalake = delta_write  # type: ignore[attr-defined]


def _hook_maintenance(ticker: DeltaTicker) -> None:
    """Ticks before and after each maintenance operation of delta-rs."""

    def ticking(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            ticker.tick(f"delta {name}")
            result = function(*args, **kwargs)
            ticker.tick(f"delta {name} done")
            return result

        return call

    TableOptimizer.compact = ticking("compact", TableOptimizer.compact)  # type: ignore[method-assign]
    TableOptimizer.z_order = ticking("z_order", TableOptimizer.z_order)  # type: ignore[method-assign]
    for name in ("vacuum", "create_checkpoint", "cleanup_metadata"):
        setattr(DeltaTable, name, ticking(name, getattr(DeltaTable, name)))


def _connector(uri: str, app_name: str) -> Callable[..., Any]:
    @contextmanager
    def connect(**kwargs: Any) -> Iterator[psycopg.Connection]:
        with psycopg.connect(uri, application_name=app_name, **kwargs) as conn:
            yield conn

    return connect


def members(job: DeltaJob) -> list[GroupMember]:
    """d1 into the Delta table (typed on the source), p1 into landing.p1 on the sink."""
    made = []
    for name in job.tables:
        delta = name == DELTA
        target = (
            DeltaCdcTarget(job.delta_path, MERGE)
            if delta
            else CdcTarget(TableName("landing", name), MERGE)
        )
        made.append(
            GroupMember(
                pipeline=name,
                table=TableName("public", name),
                target=target,
                connect_sink=_connector(job.source_uri if delta else job.sink_uri, job.app_name),
                sink_id="delta" if delta else "warehouse",
            )
        )
    return made


def run_group(job: DeltaJob) -> dict[str, str | None]:
    """One group run; per member: None (applied) or its error."""
    settings = GroupSettings(
        name=GROUP, slot=job.slot, publication=job.slot, batch_changes=job.batch_changes
    )
    source = _connector(job.source_uri, job.app_name)
    outcome = replicate_group(source, settings, members(job), list(job.selected or job.tables))
    return {k: repr(v) if isinstance(v, BaseException) else None for k, v in outcome.items()}


def maintain(path: str) -> Any:
    """The Delta table's maintenance as a user schedules it: compaction, vacuum of every file
    no longer referenced (retention 0), a checkpoint."""
    return delta_maintenance.maintain(path, None, MAINTENANCE)


def delta_child_main(job: DeltaJob) -> None:
    """Entry point of a child process (forked from child.py's forkserver)."""
    ticker = DeltaTicker(job)
    _install(ticker, job)
    timer = None
    if job.kill_at_seconds is not None:
        timer = threading.Timer(
            job.kill_at_seconds, lambda: _kill(job.record_path, f"after {ticker.last}")
        )
        timer.daemon = True
        timer.start()
    error, outcome = None, {}
    try:
        outcome = run_group(job)
        failed = {k: v for k, v in outcome.items() if v is not None}
        error = f"members failed: {failed}" if failed else None
        if job.maintain and error is None:
            with ticker.tagged("maintain"):
                maintain(job.delta_path)
    except BaseException:
        error = traceback.format_exc()
    if timer is not None:
        timer.cancel()
    record = {
        "labels": ticker.labels,
        "times": ticker.times,
        "seconds": time.monotonic() - ticker.started,
        "members": outcome,
        "error": error,
    }
    Path(job.record_path + ".tmp").write_text(json.dumps(record))
    os.replace(job.record_path + ".tmp", job.record_path)
    os._exit(1 if error else 0)


def _kill(record_path: str, label: str) -> None:
    import signal

    Path(record_path + ".killed").write_text(label)
    os.kill(os.getpid(), signal.SIGKILL)


def run_delta_child(job: DeltaJob) -> child.ChildOutcome:
    """Run `job` in a child forked from the sweep's forkserver; wait for its end or kill."""
    for suffix in ("", ".killed"):
        Path(job.record_path + suffix).unlink(missing_ok=True)
    started = time.monotonic()
    process = child._CONTEXT.Process(target=delta_child_main, args=(job,), daemon=True)
    process.start()
    process.join(child.CHILD_TIMEOUT)
    if process.is_alive():
        process.kill()
        process.join()
        raise AssertionError(f"delta child run did not end within {child.CHILD_TIMEOUT}s")
    exitcode = process.exitcode
    process.close()
    record_file, label_file = Path(job.record_path), Path(job.record_path + ".killed")
    record = json.loads(record_file.read_text()) if record_file.exists() else None
    label = label_file.read_text() if label_file.exists() else None
    return child.ChildOutcome(exitcode, record, label, time.monotonic() - started)
