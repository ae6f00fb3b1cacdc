"""Stream a group's changes: read the slot once (START_REPLICATION), route each change to its
member, stage batches of whole transactions per member (a Postgres target: on its sink's staging
connection; a Delta target: in temporary tables of a source session of the batch's own), and
hand each batch to the applier while the next one is read.

A run catches up to where the WAL was when it started (`upto`), so it ends even while the
source keeps writing; at the end every member that took part stores that position (an idle
table must not pin the slot's WAL) and the slot is confirmed to the group's lowest position.
"""

from __future__ import annotations

from collections.abc import Iterator

from pgflow.flows.cdc.group_applier import GroupApplier, GroupBatch
from pgflow.flows.cdc.group_context import GroupRun
from pgflow.flows.cdc.group_model import MemberRun, low_position
from pgflow.flows.cdc.member_sink import MemberStager, member_sink
from pgflow.flows.cdc.sink_connections import BatchConnections
from pgflow.flows.cdc.stage import follow_relation
from pgflow.sources import cdc
from pgflow.sources.changes import ChangeEvent, RelationSeen, TransactionEnd
from pgflow.sources.group_changes import StreamedTable, group_changes
from pgflow.sources.replication_stream import ReplicationStream


def stream_group(run: GroupRun, start: int) -> None:
    """Apply the slot's changes after `start` to the streaming members."""
    members = [m for m in run.members if m.streaming]
    upto = cdc.flush_lsn(run.control)
    settings = run.settings
    with ReplicationStream(
        run.connect_source, settings.slot, settings.publication, start, upto
    ) as stream:
        with GroupApplier(run, stream.confirm, stream.keep_alive) as applier:
            batches = _Batches(run, members, applier)
            try:
                reached = batches.read(stream.messages(), start, upto)
            finally:
                batches.close()
            applier.drain()
        _store_reached(run, members, reached)
        low = low_position(run.members)
        if low is not None:
            stream.confirm(low)


class _Batches:
    """Cuts the routed stream into batches of whole transactions and stages them."""

    def __init__(self, run: GroupRun, members: list[MemberRun], applier: GroupApplier) -> None:
        self.run, self.members, self.applier = run, members, applier
        self.relations: dict[int, RelationSeen] = {}  # the shape each member streams with
        self.stagers: dict[int, MemberStager] = {}
        self.connections = BatchConnections()  # the open batch's own (Delta members)
        self.in_transaction: set[int] = set()
        self.messages_at_start = 0
        self.changes = 0
        self.batch_changes: dict[int, int] = {}  # per member, in the open batch

    def read(self, messages: Iterator[bytes], start: int, upto: int) -> int:
        """Stage and submit every batch; the LSN the run has seen everything before."""
        tables = [
            StreamedTable(m.member.table, m.member.target.strategy.unique_key, m.position or 0)
            for m in self.members
        ]
        limit = self.run.settings.max_changes
        reached = start
        for item in group_changes(messages, tables):
            if isinstance(item, TransactionEnd):
                reached = self._end_transaction(item)
                if limit is not None and self.changes >= limit:
                    self._submit(reached)
                    return reached
            else:
                self._take(*item)
        self._submit(reached)
        return max(reached, upto)

    def _take(self, index: int, event: ChangeEvent) -> None:
        member = self.members[index]
        if self.run.failures.failed(member):
            return
        try:
            if isinstance(event, RelationSeen):
                self._relation(index, event)
                return
            self._stager(index).take(event)
            self.in_transaction.add(index)
            self.changes += 1
            self.batch_changes[index] = self.batch_changes.get(index, 0) + 1
        except Exception as error:  # this member's sink or shape: the others go on
            self._fail(index, error)

    def _relation(self, index: int, event: RelationSeen) -> None:
        stager = self.stagers.get(index)
        if stager is not None:
            stager.take(event)
        else:
            member = self.members[index]
            assert member.info is not None
            follow_relation(member.info, event.relation.columns)
        self.relations[index] = event

    def _stager(self, index: int) -> MemberStager:
        stager = self.stagers.get(index)
        if stager is None:
            member = self.members[index]
            relation = self.relations.get(index)
            sink = member_sink(member)
            stager = sink.stager(self.run, member, relation, self.connections)
            self.stagers[index] = stager
        return stager

    def _end_transaction(self, end: TransactionEnd) -> int:
        for index in self.in_transaction:
            stager = self.stagers.get(index)
            if stager is not None:
                stager.take(end)
        self.in_transaction.clear()
        if self._batch_full(end):
            self.messages_at_start = end.messages
            self._submit(end.end_lsn)
        return end.end_lsn

    def _batch_full(self, end: TransactionEnd) -> bool:
        """`batch_changes` is per table: a batch ends with the transaction that gives one
        table that many changes, or the stream that many messages per table. A table's part
        of a batch then stays large however many tables share the slot (each part costs a
        staging table and a transaction of its own)."""
        size = self.run.settings.batch_changes
        if max(self.batch_changes.values(), default=0) >= size:
            return True
        return end.messages - self.messages_at_start >= size * len(self.members)

    def _submit(self, end_lsn: int) -> None:
        batch = GroupBatch(end_lsn, connections=self.connections)
        self.connections = BatchConnections()
        for index, stager in self.stagers.items():
            try:
                staged = stager.finish()
            except Exception as error:
                self._fail(index, error, stager)
                continue
            staged.result.end_lsn = end_lsn
            batch.staged.append((self.members[index], staged))
        self.stagers.clear()
        self.batch_changes.clear()
        if batch.staged:
            self.applier.submit(batch)
        else:
            batch.connections.close()

    def close(self) -> None:
        """Close what the batch being staged holds (a stopped read: it is never applied)."""
        self.connections.close()

    def _fail(self, index: int, error: Exception, stager: MemberStager | None = None) -> None:
        self.run.fail(self.members[index], error)
        stager = stager or self.stagers.pop(index, None)
        self.stagers.pop(index, None)
        if stager is not None:
            stager.abort()


def _store_reached(run: GroupRun, members: list[MemberRun], reached: int) -> None:
    """Every member that took part has seen everything before `reached`: store it, so that
    the slot can move on even for a table that had no changes."""
    for member in members:
        if run.failures.failed(member) or member.position is None:
            continue
        if member.position >= reached:
            continue
        try:
            if member_sink(member).store_reached(run, member, reached):
                member.position = reached
        except Exception as error:
            run.fail(member, error)


def drop_leftover_staging(run: GroupRun) -> None:
    """Staging tables a killed run committed and left behind, per streaming member."""
    for member in run.members:
        if not member.streaming:
            continue
        try:
            member_sink(member).drop_leftovers(run, member)
        except Exception as error:
            run.fail(member, error)
