"""The apply thread of a group run: staged batches applied in order, each member's part in its
own sink transaction (a Delta member's: one commit) with the batch's end LSN, then the slot
confirmed to the lowest position of the group. A member whose apply fails stops there; the
others go on. The batch's own sessions (Delta members' staging) close after its apply."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import MemberRun, low_position
from pgflow.flows.cdc.member_sink import Staged, member_sink
from pgflow.flows.cdc.sink_connections import BatchConnections

# How long the reading thread waits on the applier before it tells the server it is alive.
WAIT_SECONDS = 1.0


@dataclass
class GroupBatch:
    """Whole transactions of the stream, staged per member that had changes in them."""

    end_lsn: int
    staged: list[tuple[MemberRun, Staged]] = field(default_factory=list)
    # Open while the batch is staged and applied; closed by the applier after its apply.
    connections: BatchConnections = field(default_factory=BatchConnections)


class GroupApplier:
    """Applies group batches in a thread while the next one is decoded and staged. At most one
    batch waits while one applies. `confirm` gets the group's new low position after each."""

    def __init__(
        self, run: GroupRun, confirm: Callable[[int], None], keep_alive: Callable[[], None]
    ) -> None:
        self.run, self._confirm, self._keep_alive = run, confirm, keep_alive
        self._queue: queue.Queue[GroupBatch | None] = queue.Queue(maxsize=1)
        self._pending: list[GroupBatch] = []  # submitted, not yet applied
        self._error: BaseException | None = None
        self._cancel = False
        self._thread = threading.Thread(target=self._loop, name="pgflow-cdc-apply", daemon=True)

    def __enter__(self) -> GroupApplier:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._cancel = kind is not None  # batches still queued are not applied
        self._queue.put(None)
        self._thread.join()
        self._drop_unapplied()
        if kind is None:
            self._raise()

    def submit(self, batch: GroupBatch) -> None:
        self._pending.append(batch)  # first: dropped on exit if never applied
        self._raise()
        while True:
            try:
                self._queue.put(batch, timeout=WAIT_SECONDS)
                return
            except queue.Full:
                self._keep_alive()  # a long apply: the stream must not time out meanwhile

    def drain(self) -> None:
        """Wait until every submitted batch is applied and confirmed."""
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                if not done.wait(timeout=WAIT_SECONDS):
                    self._keep_alive()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                if self._error is None and not self._cancel:
                    self._apply(batch)
            except BaseException as exc:  # handed to the main thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _apply(self, batch: GroupBatch) -> None:
        while batch.staged:
            member, staged = batch.staged[0]
            if self.run.failures.failed(member):
                member_sink(member).discard(self.run, member, staged)
            else:
                self._apply_member(member, staged)
            batch.staged.pop(0)  # applied (its staging dropped with it) or the member failed
        self._pending.remove(batch)
        with suppress(Exception):  # a lost session had nothing left to keep
            batch.connections.close()
        low = low_position(self.run.members)
        if low is not None:
            self._confirm(low)

    def _apply_member(self, member: MemberRun, staged: Staged) -> None:
        run, sink = self.run, member_sink(member)
        try:
            done = sink.apply(run, member, staged)
        except Exception as error:  # this member's sink or data: the others go on
            run.fail(member, error)
            sink.discard(run, member, staged)
            return
        member.result.batches.append(done)
        assert done.end_lsn is not None
        member.position = done.end_lsn

    def _drop_unapplied(self) -> None:
        """Staging tables are committed on the stager: drop those no apply consumed (a Delta
        member's die with the batch's sessions, closed here)."""
        for batch in self._pending:
            for member, staged in batch.staged:
                member_sink(member).discard(self.run, member, staged)
            with suppress(Exception):  # best effort: the run's own error is the one to report
                batch.connections.close()
        self._pending.clear()
