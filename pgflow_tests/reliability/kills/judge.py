"""Judging a target after a kill: BEFORE, AFTER, a committed resume point, or wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgflow_tests.reliability.kills.observe import position_number
from pgflow_tests.reliability.kills.scenarios import Scenario


def same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("rows", "digest", "relations")
    return all(a.get(k) == b.get(k) for k in keys)


def same_commit(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Delta: the same table version and pipeline run (Postgres targets: always)."""
    return a.get("version") == b.get("version") and a.get("run") == b.get("run")


@dataclass
class Judge:
    """BEFORE and AFTER of one scenario (snapshots), and the resume points between them."""

    scenario: Scenario
    before: dict[str, Any]
    after: dict[str, Any]
    partials: list[dict[str, Any]] = field(default_factory=list)
    position_floor: int | None = None  # AFTER's position is past it (advancing rules)

    def position_after_ok(self, snap: dict[str, Any]) -> bool:
        got, want = snap["position"], self.after["position"]
        if self.scenario.position_rule == "exact":
            return bool(got == want)
        before = self.before["position"]
        if got is None or want is None:
            return False
        value = position_number(got[2])
        return (
            [got[0], got[1], got[3], got[4]] == [want[0], want[1], want[3], want[4]]
            and (before is None or value >= position_number(before[2]))
            and (self.position_floor is None or value > self.position_floor)
        )

    def verdict(self, snap: dict[str, Any]) -> str | None:
        """before | after | partial (a committed resume point) | None (anything else).

        Postgres positions also carry `written` (the writing transaction's now()): BEFORE's
        row untouched, or rewritten by this run, so that an equal value (an xmin checkpoint
        held back by a running transaction) still tells whether the run stored it."""
        rewritten = (
            self.scenario.sink == "delta"  # a Delta position is judged by its commit's run
            or snap["position"] is None
            or snap.get("written") != self.before.get("written")
        )
        if self._is_before(snap):
            return "before"
        if (
            same_data(snap, self.after)
            and self.position_after_ok(snap)
            and rewritten
            and same_commit(snap, self.after)
        ):
            return "after"
        if self.scenario.partial:
            for state in self.partials:
                if same_data(snap, state) and snap["position"] == state["position"] and rewritten:
                    return "partial"
        return None

    def _is_before(self, snap: dict[str, Any]) -> bool:
        return (
            same_data(snap, self.before)
            and snap["position"] == self.before["position"]
            and snap.get("written") == self.before.get("written")
            and same_commit(snap, self.before)
        )

    def converged(self, final: dict[str, Any]) -> bool:
        """The run after a kill reached AFTER. A Delta run always commits (its run counter), so
        the next run makes a new version: it converged when rows and position are AFTER's, in
        a newer commit."""
        return (
            same_data(final, self.after)
            and self.position_after_ok(final)
            and final.get("run", 0) >= self.after.get("run", 0)
        )
