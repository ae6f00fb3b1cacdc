"""The live-add part of the shared-slot bench (bench/cdc_group.py): a table of
BENCH_CDC_LIVE_ROWS (1,000,000) rows joins a group while the group streams.

BENCH_CDC_LIVE_TABLES (4) tables of 10,000 rows form a group; a writer process (`python -m
bench.cdc_group_live --writer SETTINGS`) inserts into them, BENCH_CDC_LIVE_RATE (2,000) rows/s
in transactions of 100 rows, each row stamped with clock_timestamp() (updated_at), the tables
taking turns. The group runs back to back, as a schedule with no gap would: LIVE_PHASE_S
(15) seconds of runs, then the big table joins the group's members (the next run adds it to
the publication and backfills it through a temporary slot, engine: flows/cdc/backfill.py),
then LIVE_PHASE_S more seconds of runs with every member. Then the writer stops, one last run
catches up, and every target is checked against its source.

The others' lag, sampled every SAMPLE_S seconds on the sink: now - updated_at of the newest
row applied to each target (the writer's rows only: ids above the base rows): how far behind
the writer the target is, commit to applied, at the sample's resolution. Reported per phase
(before, the run that adds the table, after): median and max over samples of the largest lag
of the tables.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.cdc_group_common import Group, create_tables
from bench.common import ORDERS_FILL

LIVE_ROWS = int(os.environ.get("BENCH_CDC_LIVE_ROWS", "1000000"))
LIVE_TABLES = int(os.environ.get("BENCH_CDC_LIVE_TABLES", "4"))
LIVE_RATE = int(os.environ.get("BENCH_CDC_LIVE_RATE", "2000"))
LIVE_PHASE_S = float(os.environ.get("BENCH_CDC_LIVE_PHASE_S", "15"))
BASE_ROWS = 10_000
WRITER_TX_ROWS = 100
SAMPLE_S = 0.2
REPO = Path(__file__).resolve().parents[1]
# The orders rows, stamped with the time they are written.
WRITER_FILL = ORDERS_FILL.replace(
    "'2024-01-01'::timestamptz + g * interval '10 s' + (g %% 3600) * interval '1 s',",
    "clock_timestamp(),",
)
LAG = "SELECT extract(epoch FROM clock_timestamp() - updated_at) FROM {} WHERE id > %s ORDER BY id DESC LIMIT 1"


def live_add(source_uri: str, sink_uri: str) -> dict[str, Any]:
    others = tuple(f"l{i}" for i in range(LIVE_TABLES))
    create_tables(source_uri, others, BASE_ROWS)
    create_tables(source_uri, ("l_big",), LIVE_ROWS)
    group = Group("bench_live", others, "cdc_live")
    grown = Group("bench_live", (*others, "l_big"), "cdc_live")
    group.run(source_uri, sink_uri)
    sampler = _Sampler(sink_uri, group)
    writer = _start_writer(source_uri, others)
    runs: list[dict[str, Any]] = []
    try:
        sampler.start()
        _runs_for(group, source_uri, sink_uri, "before", runs)
        _one_run(grown, source_uri, sink_uri, "add", runs)
        _runs_for(grown, source_uri, sink_uri, "after", runs)
    finally:
        writer.terminate()
        writer.wait(30)
        sampler.stop()
    grown.run(source_uri, sink_uri)  # catch up with what the writer left
    differ = grown.check(source_uri, sink_uri)
    return {
        "others": len(others),
        "base_rows": BASE_ROWS,
        "big_rows": LIVE_ROWS,
        "writer_rows_per_s": LIVE_RATE,
        "runs": runs,
        "lag": {phase: sampler.summary(runs, phase) for phase in ("before", "add", "after")},
        "valid": not differ,
        "differ": differ,
    }


def _runs_for(group: Group, source_uri: str, sink_uri: str, phase: str, runs: list[Any]) -> None:
    until = time.monotonic() + LIVE_PHASE_S
    while time.monotonic() < until:
        _one_run(group, source_uri, sink_uri, phase, runs)


def _one_run(group: Group, source_uri: str, sink_uri: str, phase: str, runs: list[Any]) -> None:
    started = time.time()
    results = group.run(source_uri, sink_uri)
    big = results.get(f"{group.slot}_l_big")
    snapshot = big.snapshot if big is not None else None
    runs.append(
        {
            "phase": phase,
            "start": started,
            "end": time.time(),
            "changes": sum(r.changes for r in results.values()),
            "backfill_s": snapshot.seconds if snapshot is not None else None,
            "backfill_rows": snapshot.rows if snapshot is not None else None,
        }
    )


class _Sampler:
    """The others' lag on the sink, every SAMPLE_S seconds, in a thread."""

    def __init__(self, sink_uri: str, group: Group) -> None:
        self.sink_uri, self.group = sink_uri, group
        self.samples: list[tuple[float, float]] = []  # (time, the largest lag of the tables)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        queries = [
            sql.SQL(LAG).format(sql.Identifier(self.group.target_schema, t))  # type: ignore[arg-type]
            for t in self.group.tables
        ]
        with psycopg.connect(self.sink_uri, autocommit=True) as conn:
            while not self._stop.wait(SAMPLE_S):
                lags = [conn.execute(q, (BASE_ROWS,)).fetchone() for q in queries]
                if all(row is not None for row in lags):
                    self.samples.append((time.time(), max(float(r[0]) for r in lags)))  # type: ignore[index]

    def summary(self, runs: list[dict[str, Any]], phase: str) -> dict[str, Any]:
        spans = [(r["start"], r["end"]) for r in runs if r["phase"] == phase]
        if not spans:
            return {}
        lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
        lags = [lag for at, lag in self.samples if lo <= at <= hi]
        durations = [e - s for s, e in spans]
        return {
            "runs": len(spans),
            "seconds": hi - lo,
            "run_s_median": statistics.median(durations),
            "run_s_max": max(durations),
            "samples": len(lags),
            "lag_s_median": statistics.median(lags) if lags else None,
            "lag_s_max": max(lags) if lags else None,
        }


def _start_writer(source_uri: str, tables: tuple[str, ...]) -> subprocess.Popen[bytes]:
    settings = {"source": source_uri, "tables": list(tables), "rate": LIVE_RATE}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cdc_group_live", "--writer", json.dumps(settings)],
        cwd=REPO,
    )


def writer(settings: dict[str, Any]) -> None:
    """Insert `rate` rows/s into the tables, in turns, until terminated."""
    tables, rate = settings["tables"], settings["rate"]
    next_id = {t: BASE_ROWS + 1 for t in tables}
    interval = WRITER_TX_ROWS / rate
    with psycopg.connect(settings["source"], autocommit=True) as conn:
        due = time.monotonic()
        for turn in range(sys.maxsize):
            table = tables[turn % len(tables)]
            lo = next_id[table]
            conn.execute(
                WRITER_FILL.format(table=table),  # type: ignore[arg-type]
                {"lo": lo, "hi": lo + WRITER_TX_ROWS - 1},
            )
            next_id[table] = lo + WRITER_TX_ROWS
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))


def report(live: dict[str, Any]) -> None:
    print(
        f"\nlive add: a {live['big_rows']:,}-row table joins a group of {live['others']} tables"
        f" while a writer inserts {live['writer_rows_per_s']:,} rows/s into them"
        f"{'' if live['valid'] else '  INVALID: ' + ', '.join(live['differ'])}"
    )
    add = [r for r in live["runs"] if r["phase"] == "add"]
    if add and add[0]["backfill_s"] is not None:
        run = add[0]
        print(
            f"  the run that adds it: {run['end'] - run['start']:.1f} s, of which the backfill"
            f" of {run['backfill_rows']:,} rows {run['backfill_s']:.1f} s"
        )
    print(
        f"  {'phase':<8} {'runs':>4} {'run s (median)':>14} {'lag s median':>12} {'lag s max':>9}"
    )
    for phase, s in live["lag"].items():
        if s:
            print(
                f"  {phase:<8} {s['runs']:>4} {s['run_s_median']:>14.1f}"
                f" {_fmt(s['lag_s_median']):>12} {_fmt(s['lag_s_max']):>9}"
            )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--writer"]:
        writer(json.loads(sys.argv[2]))
