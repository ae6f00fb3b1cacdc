"""The child of a group kill sweep: one run of a CDC group (`replicate_group`, every member
or a subset selected), killed with SIGKILL at the n-th tick of a given label.

The psycopg hooks are child.py's. A group's threads interleave (the main thread stages, the
applier thread applies), so a tick number is not stable from run to run; a label and its
occurrence are, within one thread. Labels carry the member whose work they are: the applier's
ticks `[t2] sink UPDATE ...`, a live add's backfill `[t4 backfill] ...`, the end of the run
`[reached] ...`; `slot confirm` ticks before each confirmation is handed to the stream.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

import pgflow.flows.cdc.backfill as backfill
import pgflow.flows.cdc.group_stream as group_stream
import pgflow.flows.cdc.postgres_member as postgres_member
from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.cdc.group_model import GroupMember, GroupSettings
from pgflow.flows.cdc.group_run import replicate_group
from pgflow.flows.cdc.model import CdcTarget
from pgflow.sources.replication_stream import ReplicationStream
from pgflow_tests.reliability.kills import child

# A staging table's name ends in a random suffix: a label must name the same tick in every run.
STAGING_SUFFIX = re.compile(r'__[0-9a-f]{8}"')
MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))
GROUP = "kills_group"


@dataclass(frozen=True)
class GroupJob:
    source_uri: str
    sink_uri: str
    sink_dbname: str  # which psycopg connections are the sink's
    slot: str
    tables: tuple[str, ...]  # members: public.<name> -> landing.<name>
    batch_changes: int
    app_name: str
    record_path: str  # the child's record (JSON) when it ends normally
    kill_label: str | None = None
    kill_nth: int = 1  # SIGKILL at this occurrence of kill_label
    kill_at_seconds: float | None = None
    record_ticks: bool = False
    selected: tuple[str, ...] | None = None  # the members this run materializes (None: all)


class GroupTicker:
    """Counts ticks per label; the label is prefixed with the thread's current tag."""

    def __init__(self, job: GroupJob) -> None:
        self.job = job
        self.labels: list[str] = []
        self.times: list[float] = []
        self.counts: Counter[str] = Counter()
        self.last = "start"
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.local = threading.local()

    def tick(self, label: str) -> None:
        tag = getattr(self.local, "tag", None)
        label = STAGING_SUFFIX.sub('__*"', label)
        label = f"[{tag}] {label}" if tag else label
        with self._lock:
            self.counts[label] += 1
            nth = self.counts[label]
            self.last = label
            if self.job.record_ticks:
                self.labels.append(label)
                self.times.append(time.monotonic() - self.started)
        if label == self.job.kill_label and nth == self.job.kill_nth:
            _kill(self.job, label)

    def committed(self, label: str) -> None:
        self.tick(label)

    @contextmanager
    def tagged(self, tag: str) -> Iterator[None]:
        before = getattr(self.local, "tag", None)
        self.local.tag = tag
        try:
            yield
        finally:
            self.local.tag = before


def _kill(job: GroupJob, label: str) -> None:
    Path(job.record_path + ".killed").write_text(label)
    os.kill(os.getpid(), signal.SIGKILL)


def _install(ticker: GroupTicker, job: GroupJob) -> None:
    """Test-only instrumentation, in the child process only: child.py's psycopg hooks, and
    the member tags around the engine's per-member steps."""
    hook_job = child.ChildJob("", {}, job.app_name, job.sink_dbname, job.record_path)
    child._hook_psycopg(ticker, hook_job)  # type: ignore[arg-type]
    apply_staged = getattr(postgres_member, "apply_staged")  # noqa: B009 (imported there)
    start_member = backfill.start_member
    store_reached = group_stream._store_reached
    confirm = ReplicationStream.confirm

    def tagged_apply(conn: Any, target: Any, info: Any, staged: Any, *rest: Any) -> Any:
        with ticker.tagged(target.table.name):
            return apply_staged(conn, target, info, staged, *rest)

    def tagged_start(run: Any, member: Any, *rest: Any) -> None:
        with ticker.tagged(f"{member.member.table.name} backfill"):
            start_member(run, member, *rest)

    def tagged_reached(*args: Any) -> None:
        with ticker.tagged("reached"):
            store_reached(*args)

    def ticking_confirm(self: ReplicationStream, lsn: int) -> None:
        ticker.tick("slot confirm")
        confirm(self, lsn)

    # Module attributes looked up at call time: the engine's own functions, wrapped.
    for module, name, wrapper in (
        (postgres_member, "apply_staged", tagged_apply),
        (backfill, "start_member", tagged_start),
        (group_stream, "_store_reached", tagged_reached),
        (ReplicationStream, "confirm", ticking_confirm),
    ):
        setattr(module, name, wrapper)


def _connector(uri: str, app_name: str) -> Callable[..., Any]:
    @contextmanager
    def connect(**kwargs: Any) -> Iterator[psycopg.Connection]:
        with psycopg.connect(uri, application_name=app_name, **kwargs) as conn:
            yield conn

    return connect


def run_group(job: GroupJob) -> dict[str, str | None]:
    """One group run; per member: None (applied) or its error."""
    settings = GroupSettings(
        name=GROUP, slot=job.slot, publication=job.slot, batch_changes=job.batch_changes
    )
    sink = _connector(job.sink_uri, job.app_name)
    members = [
        GroupMember(
            pipeline=name,
            table=TableName("public", name),
            target=CdcTarget(TableName("landing", name), MERGE),
            connect_sink=sink,
            sink_id="warehouse",
        )
        for name in job.tables
    ]
    source = _connector(job.source_uri, job.app_name)
    outcome = replicate_group(source, settings, members, list(job.selected or job.tables))
    return {k: repr(v) if isinstance(v, BaseException) else None for k, v in outcome.items()}


def group_child_main(job: GroupJob) -> None:
    """Entry point of a child process (forked from child.py's forkserver)."""
    ticker = GroupTicker(job)
    _install(ticker, job)
    timer = None
    if job.kill_at_seconds is not None:
        timer = threading.Timer(job.kill_at_seconds, lambda: _kill(job, f"after {ticker.last}"))
        timer.daemon = True
        timer.start()
    error, members = None, {}
    try:
        members = run_group(job)
        failed = {k: v for k, v in members.items() if v is not None}
        error = f"members failed: {failed}" if failed else None
    except BaseException:
        error = traceback.format_exc()
    if timer is not None:
        timer.cancel()
    record = {
        "labels": ticker.labels,
        "times": ticker.times,
        "seconds": time.monotonic() - ticker.started,
        "members": members,
        "error": error,
    }
    Path(job.record_path + ".tmp").write_text(json.dumps(record))
    os.replace(job.record_path + ".tmp", job.record_path)
    os._exit(1 if error else 0)


def run_group_child(job: GroupJob) -> child.ChildOutcome:
    """Run `job` in a child forked from the sweep's forkserver; wait for its end or kill."""
    for suffix in ("", ".killed"):
        Path(job.record_path + suffix).unlink(missing_ok=True)
    started = time.monotonic()
    process = child._CONTEXT.Process(target=group_child_main, args=(job,), daemon=True)
    process.start()
    process.join(child.CHILD_TIMEOUT)
    if process.is_alive():
        process.kill()
        process.join()
        raise AssertionError(f"group child run did not end within {child.CHILD_TIMEOUT}s")
    exitcode = process.exitcode
    process.close()
    record_file, label_file = Path(job.record_path), Path(job.record_path + ".killed")
    record = json.loads(record_file.read_text()) if record_file.exists() else None
    label = label_file.read_text() if label_file.exists() else None
    return child.ChildOutcome(exitcode, record, label, time.monotonic() - started)
