"""The apply thread of a run: staged batches applied in order, each confirmed on the slot."""

from __future__ import annotations

import queue
import threading
from contextlib import suppress

from pgflow.flows.cdc.apply import apply_staged
from pgflow.flows.cdc.model import BatchResult, RunContext
from pgflow.flows.cdc.stage import StagedBatch, drop_staged
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources import cdc
from pgflow.sources.catalog import TableInfo


class Applier:
    """Applies staged batches in order, each in ONE sink transaction with its end LSN, and
    advances the slot after each commit; in a thread, so that the next batch is decoded and
    staged meanwhile. At most one batch waits while one applies (staging is on the sink)."""

    def __init__(self, run: RunContext, info: TableInfo) -> None:
        self.run, self.info = run, info
        self.results: list[BatchResult] = []
        self._queue: queue.Queue[StagedBatch | None] = queue.Queue(maxsize=1)
        self._pending: list[StagedBatch] = []  # submitted, not yet committed
        self._error: BaseException | None = None
        self._cancel = False
        self._thread = threading.Thread(target=self._loop, name="pgflow-cdc-apply", daemon=True)

    def __enter__(self) -> Applier:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._cancel = kind is not None  # batches still queued are not applied
        self._queue.put(None)
        self._thread.join()
        self._drop_unapplied()
        if kind is None:
            self._raise()

    def submit(self, batch: StagedBatch) -> None:
        self._pending.append(batch)  # first: dropped on exit if never applied
        self._raise()
        self._queue.put(batch)

    def drain(self) -> None:
        """Wait until every submitted batch is committed and its slot advanced."""
        self._queue.join()
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

    def _apply(self, batch: StagedBatch) -> None:
        run = self.run
        done = apply_staged(run.sink, run.target, self.info, batch, run.identity, run.pipeline)
        self._pending.remove(batch)  # its staging tables were dropped in its transaction
        self.results.append(done)
        assert done.end_lsn is not None
        cdc.advance_slot(run.control, run.settings.slot, done.end_lsn)

    def _drop_unapplied(self) -> None:
        """Staging tables are committed on the stager: drop those no apply consumed."""
        if not self._pending:
            return
        # Best effort, whatever stops it (the server, or connecting through the resource):
        # the run's own error is the one to report, and the next run drops tagged leftovers.
        with suppress(Exception), self.run.connect_sink(autocommit=True) as conn:
            log = SqlLog(conn)
            for batch in self._pending:
                drop_staged(log, batch)
        self._pending.clear()
