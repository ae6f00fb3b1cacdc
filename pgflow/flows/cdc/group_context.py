"""What every step of one group run works with."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from pgflow.flows.cdc.group_model import Failures, GroupSettings, MemberRun
from pgflow.flows.cdc.sink_connections import SinkConnections
from pgflow.sources import cdc, publication


@dataclass
class GroupRun:
    connect_source: cdc.ConnectSource
    control: psycopg.Connection  # source, autocommit: slot and publication
    settings: GroupSettings
    members: list[MemberRun]
    sinks: SinkConnections
    failures: Failures
    slot_confirmed: int | None = None  # the slot's confirmed position at the start

    @property
    def selected(self) -> list[MemberRun]:
        return [m for m in self.members if m.selected]

    def healthy(self) -> list[MemberRun]:
        """Selected members that have not failed."""
        return [m for m in self.members if m.selected and not self.failures.failed(m)]

    def fail(self, member: MemberRun, error: BaseException) -> None:
        self.failures.fail(member, error)

    def owns_publication(self) -> bool:
        """pgflow made the publication for this group (its comment names the group, or a
        member that owned it alone before, and the slot)."""
        settings = self.settings
        owner = publication.publication_owner(self.control, settings.publication)
        owners = {settings.name, *settings.former_owners}
        return owner is not None and owner.pipeline in owners and owner.slot == settings.slot
