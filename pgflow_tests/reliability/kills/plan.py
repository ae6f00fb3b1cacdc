"""Sweep planning: where to kill (ticks of the reference run, random times) and the figures."""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass

# Ticks of a stream, of which a sweep takes a few spread points (every other tick is taken);
# Arrow batches are few (a Delta load's own ticks are), so each of them is a kill point.
BULK_LABELS = ("sink copy chunk",)
COMMIT_WORDS = ("commit", "delta write", "delta merge")


def kill_points(labels: list[str], limit: int) -> list[int]:
    """Tick numbers to kill at: every structural tick, spread points of the streams; at
    most `limit`, keeping the ticks around commits."""
    if limit <= 4:
        return _fast_points(labels, limit)
    points: set[int] = set()
    run: list[int] = []
    for tick, label in enumerate([*labels, ""], start=1):
        if label in BULK_LABELS:
            run.append(tick)
            continue
        if run:
            picks = {0, len(run) // 3, (2 * len(run)) // 3, len(run) - 1}
            points.update(run[i] for i in picks)
            run = []
        if label:
            points.add(tick)
    ordered = sorted(points)
    if len(ordered) <= limit:
        return ordered
    must = [p for p in ordered if any(w in labels[p - 1] for w in COMMIT_WORDS)]
    must = must[-limit:] if len(must) > limit else must
    rest = [p for p in ordered if p not in must]
    room = limit - len(must)
    step = len(rest) / room if room else 0
    chosen = {rest[int(i * step)] for i in range(room)}
    return sorted(chosen | set(must))


def _fast_points(labels: list[str], limit: int) -> list[int]:
    """The fast subset: start, mid-stream, around the last commit."""
    bulk = [t for t, label in enumerate(labels, 1) if label in (*BULK_LABELS, "arrow batch")]
    commits = [
        t
        for t, label in enumerate(labels, 1)
        if label.endswith("commit") or label in ("delta write", "delta merge")
    ]
    committed = [t for t, label in enumerate(labels, 1) if label.endswith("committed")]
    picks = [bulk[len(bulk) // 2] if bulk else 2, commits[-1], committed[-1], 1]
    return sorted(set(picks[:limit]))


def timed_delays(
    labels: list[str], times: list[float], load_seconds: float, count: int, rng: random.Random
) -> list[float]:
    """Kill times (seconds into the run): alternately anywhere in the load, and within the
    last commit's window (from the tick before the last "committed" tick to that tick:
    the COMMIT round trip, or delta-rs writing its files and its log entry)."""
    last = max(i for i, label in enumerate(labels) if label.endswith("committed"))
    window = (times[last - 1], times[last])
    delays = []
    for i in range(count):
        low, high = (0.0, load_seconds) if i % 2 == 0 else window
        delays.append(rng.uniform(low, high))
    return delays


@dataclass
class KillRecord:
    point: str  # "tick 17 (sink CREATE UNLOGGED TABLE)" or "timed 0.42s"
    killed: bool
    verdict: str  # before | after | partial
    converged: bool
    orphans: int = 0  # committed staging tables the kill left (CDC), dropped by the next run


@dataclass
class Figures:
    strategy: str
    points: int  # distinct kill points where the process was actually killed
    before: int
    after: int
    partial: int
    converged: int
    ticks: int  # ticks of one whole load
    not_killed: int  # timed kills after the load had ended, unreached ticks (not counted)
    orphans: int  # kills that left committed staging tables, all dropped by the next run
    seconds: float

    @classmethod
    def of(cls, strategy: str, records: list[KillRecord], ticks: int, seconds: float) -> Figures:
        killed = [r for r in records if r.killed]
        return cls(
            strategy=strategy,
            points=len(killed),
            before=sum(r.verdict == "before" for r in killed),
            after=sum(r.verdict == "after" for r in killed),
            partial=sum(r.verdict == "partial" for r in killed),
            converged=sum(r.converged for r in killed),
            ticks=ticks,
            not_killed=len(records) - len(killed),
            orphans=sum(r.orphans > 0 for r in killed),
            seconds=seconds,
        )

    def line(self) -> str:
        text = (
            f"KILLS {self.strategy}: {self.points} points, {self.before} before, {self.after} after"
        )
        if self.partial:
            text += f", {self.partial} at a committed resume point"
        if self.orphans and self.strategy.startswith("delta_sink"):
            text += f", {self.orphans} left uncommitted data files"
        elif self.orphans:
            text += f", {self.orphans} left staging tables (dropped by the next run)"
        return (
            text + f", converged {self.converged}/{self.points} "
            f"({self.ticks} ticks per load, {self.seconds:.0f}s)"
        )


def report(figures: Figures) -> None:
    """Print the figures line; append it as JSON to $PGFLOW_RELIABILITY_FIGURES if set."""
    print(figures.line())
    path = os.environ.get("PGFLOW_RELIABILITY_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"suite": "kills", **asdict(figures)}) + "\n")
