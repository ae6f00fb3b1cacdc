"""Benchmark (not a test): CDC into Delta (issue 23), next to CDC into Postgres on the same WAL.

    python -m bench.cdc_delta                       # 2,000,000 rows, 10 rounds
    BENCH_CDC_DELTA_ROWS=200000 BENCH_CDC_DELTA_ROUNDS=3 python -m bench.cdc_delta

`make bench` runs it with BENCH_SCENARIOS `cdc_delta` (bench/suite.py). Two throwaway clusters
(as cdc.py: the source, wal_level logical, and the Postgres sink). The suite's orders table of
BENCH_CDC_DELTA_ROWS rows (default BENCH_ROWS, 2,000,000) in the source, and two lone
pipelines on it, each with a slot of its own: `delta` into a local Delta table (a
DeltaCdcTarget: its changes typed on the source, one merge commit per batch) and `postgres`
into the sink (incremental_merge, delete_insert, as the suite's CDC scenario). Each first runs
once: its snapshot (timed, not CDC).

Then BENCH_CDC_DELTA_ROUNDS (10) rounds (BENCH_CDC_DELTA_RUN_EVERY=N: the pipelines run after
every N rounds instead, e.g. 10: one run catching up; results-cdc-delta-every-N.json). A round changes the source in ten transactions: 1% of
the rows updated (status, amount, attrs, updated_at; the ids of one residue mod 100, spread
over the table), 0.1% deleted (another residue), 1% inserted (new ids); then each pipeline
runs once (their order alternates), in a subprocess of its own (bench/cdc_delta_measure.py):
one replicate() call, one batch, one Delta commit. Per run: wall time of the call, the
applier's time ("apply alone": typing the batch and the merge for Delta; the sink transaction
for Postgres), of which delta-rs's merge, and the peak RSS (VmHWM, reset just before the call).
changes/s = the rounds' changes / the summed wall (or apply) seconds.

After the rounds: the Delta table's files (active, on disk, log entries), then its maintenance
(pgflow.flows.delta_maintenance.maintain: compaction, vacuum with retention 0, a checkpoint),
measured the same way, and the files after. Finally both targets are checked against the
source: Postgres with cdc_pipelines.checksum, Delta row by row on the key: a hash of every
column's value as text, rendered in SQL on the source and cast in polars from the Delta table
(cdc_delta_measure.compare), no row missing, extra or different. Results: bench/results-cdc-delta.json. Targets: >= 100,000 changes/s applied into
Delta, peak RSS < 400 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.cdc_delta_measure import MERGE_METRICS, compare, delta_rows, source_rows
from bench.cdc_pipelines import checksum
from bench.common import ORDERS_FILL, create_orders, throwaway_cluster
from bench.server_cpu import postmaster_pid
from pgflow.config.model import TableName

ROWS = int(os.environ.get("BENCH_CDC_DELTA_ROWS", os.environ.get("BENCH_ROWS", "2000000")))
ROUNDS = int(os.environ.get("BENCH_CDC_DELTA_ROUNDS", "10"))
# The pipelines run after every this many rounds (1: one run, one batch, per round; ROUNDS: one
# run catching up on them all, in batches of batch_changes, 100,000 by default).
RUN_EVERY = int(os.environ.get("BENCH_CDC_DELTA_RUN_EVERY", "1"))
PROFILE = os.environ.get("BENCH_CDC_PROFILE", "") not in ("", "0")
POLICY = "delete_insert"
TABLE = "orders"
TRANSACTIONS = 10  # per round
TARGET_CHANGES_PER_S = 100_000
TARGET_PEAK_MB = 400
_RESULTS_NAME = "results-cdc-delta" + ("" if RUN_EVERY == 1 else f"-every-{RUN_EVERY}")
RESULTS = Path(__file__).resolve().parent / f"{_RESULTS_NAME}.json"
REPO = Path(__file__).resolve().parents[1]
SINKS = ("delta", "postgres")

UPDATE = """
UPDATE orders SET status = 'changed', amount = amount + 1, updated_at = clock_timestamp(),
       attrs = attrs || jsonb_build_object('round', %(round)s::int)
WHERE id = ANY(%(ids)s)
"""
DELETE = "DELETE FROM orders WHERE id = ANY(%(ids)s)"


def make_round(uri: str, number: int, next_id: int) -> tuple[int, int]:
    """One round's changes on the source; (changes made, the next new id)."""
    updated = list(range(number, ROWS + 1, 100))  # residue `number` mod 100
    deleted = list(range(550 + number, ROWS + 1, 1000))  # never one a round updates
    inserted = ROWS // 100
    made = 0
    with psycopg.connect(uri) as conn:
        for t in range(TRANSACTIONS):
            lo = next_id + t * inserted // TRANSACTIONS
            hi = next_id + (t + 1) * inserted // TRANSACTIONS - 1
            with conn.transaction():
                made += conn.execute(
                    UPDATE, {"round": number, "ids": updated[t::TRANSACTIONS]}
                ).rowcount
                made += conn.execute(DELETE, {"ids": deleted[t::TRANSACTIONS]}).rowcount
                made += conn.execute(ORDERS_FILL.format(table=TABLE), {"lo": lo, "hi": hi}).rowcount
    return made, next_id + inserted


def measure(settings: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cdc_delta_measure", json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=REPO,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"the measured {settings['kind']} call failed:\n{tail}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def settings_for(sink: str, source: str, sink_uri: str, path: str) -> dict[str, Any]:
    return {
        "kind": "cdc",
        "sink": sink,
        "source": source,
        "sink_uri": sink_uri,
        "path": path,
        "table": TABLE,
        "target": ["cdc", TABLE],
        "policy": POLICY,
        "slot": f"bench_cdc_{sink}",
        "profile": PROFILE,
        "postmasters": {"source": postmaster_pid(source), "sink": postmaster_pid(sink_uri)},
    }


def run_rounds(source: str, sink_uri: str, path: str) -> dict[str, Any]:
    pipelines = {sink: settings_for(sink, source, sink_uri, path) for sink in SINKS}
    snapshots = {}
    for sink, settings in pipelines.items():
        first = measure(settings)
        assert first["snapshot"], f"{sink}: the first run took no snapshot"
        snapshots[sink] = {"wall": first["wall"], "peak_rss_mb": first["peak_rss_mb"]}
        print(f"  {sink:<8} snapshot of {ROWS:,} rows: {first['wall']:.1f} s", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {sink: [] for sink in SINKS}
    next_id, pending = ROWS + 1, 0
    for number in range(1, ROUNDS + 1):
        started = time.perf_counter()
        made, next_id = make_round(source, number, next_id)
        pending += made
        print(f"  round {number}: {made:,} changes in {time.perf_counter() - started:.1f} s")
        if number % RUN_EVERY and number != ROUNDS:
            continue  # the pipelines run after every RUN_EVERY rounds
        for sink in SINKS if number % 2 else SINKS[::-1]:
            runs[sink].append(_run(pipelines[sink], pending, number))
        pending = 0
    return {"snapshots": snapshots, "runs": runs}


def _run(settings: dict[str, Any], changes: int, number: int) -> dict[str, Any]:
    run = measure(settings)
    sink = settings["sink"]
    if run["changes"] != changes:
        raise RuntimeError(f"{sink}, round {number}: {run['changes']} of {changes} changes")
    print(
        f"    {sink:<8} {run['wall']:6.2f} s (apply {run['apply_s']:5.2f} s,"
        f" merge {run['merge_s']:5.2f} s, {run['batches']} batches),"
        f" {run['changes'] / run['wall']:>9,.0f} changes/s, peak {run['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return run


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    changes = sum(r["changes"] for r in runs)
    wall = sum(r["wall"] for r in runs)
    apply = sum(r["apply_s"] for r in runs)
    return {
        "changes": changes,
        "wall_s": wall,
        "apply_s": apply,
        "merge_s": sum(r["merge_s"] for r in runs),
        "arrow_read_s": sum(r["arrow_read_s"] for r in runs),
        "apply_sql_s": sum(r["parts"]["apply_sql"] for r in runs),
        "changes_per_s": changes / wall,
        "apply_changes_per_s": changes / apply if apply else None,
        "peak_rss_mb": max(r["peak_rss_mb"] or 0 for r in runs),
        "cpu_s": sum(r["cpu_s"] for r in runs),
        "source_cpu_s": sum(r["source_cpu_s"] for r in runs),
        "sink_cpu_s": sum(r["sink_cpu_s"] for r in runs),
        "parts": {k: sum(r["parts"][k] for r in runs) for k in runs[0]["parts"]},
        "merge_metrics": {
            k: sum(r["merge_metrics"].get(k, 0) for r in runs) for k in MERGE_METRICS
        },
    }


def check(source: str, sink_uri: str, path: str) -> dict[str, Any]:
    started = time.perf_counter()
    delta = compare(source_rows(source, TABLE), delta_rows(path))
    pg_expected = checksum(source, TableName("public", TABLE))
    pg_got = checksum(sink_uri, TableName("cdc", TABLE))
    return {
        "delta": {**delta, "valid": delta["differing"] == 0},
        "postgres": {"source": pg_expected, "target": pg_got, "valid": pg_expected == pg_got},
        "seconds": time.perf_counter() - started,
    }


def bench() -> dict[str, Any]:
    with (
        throwaway_cluster(["bench_source"]) as source_info,
        throwaway_cluster(["bench_sink"]) as sink_info,
        tempfile.TemporaryDirectory(prefix="pgflow-bench-delta-") as tmp,
    ):
        source, sink_uri = source_info.uri("bench_source"), sink_info.uri("bench_sink")
        path = str(Path(tmp) / "orders")
        started = time.perf_counter()
        create_orders(source, ROWS, TABLE)
        print(f"\ncdc_delta: {ROWS:,} orders made in {time.perf_counter() - started:.0f} s")
        figures = run_rounds(source, sink_uri, path)
        maintenance = measure({"kind": "maintain", "path": path})
        print(
            f"  maintenance: {maintenance['wall']:.1f} s, files {maintenance['files_before']}"
            f" -> {maintenance['files_after']}, peak {maintenance['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        checked = check(source, sink_uri, path)
        from bench.suite import machine

        return {
            "rows": ROWS,
            "rounds": ROUNDS,
            "run_every": RUN_EVERY,
            "transactions_per_round": TRANSACTIONS,
            "machine": machine(source),
            **figures,
            "summary": {sink: summary(figures["runs"][sink]) for sink in SINKS},
            "maintenance": maintenance,
            "check": checked,
        }


def report(results: dict[str, Any]) -> None:
    print(
        f"\nCDC into Delta vs into Postgres: {results['rounds']} rounds of 1% update / 0.1%"
        f" delete / 1% insert on {results['rows']:,} rows, a run every {results['run_every']} round(s):"
    )
    print(
        f"  {'sink':<9} {'changes':>9} {'wall s':>7} {'changes/s':>10} {'apply s':>8}"
        f" {'apply ch/s':>10} {'merge s':>8} {'peak MB':>8}  check"
    )
    for sink in SINKS:
        s = results["summary"][sink]
        valid = results["check"][sink]["valid"]
        print(
            f"  {sink:<9} {s['changes']:>9,} {s['wall_s']:>7.1f} {s['changes_per_s']:>10,.0f}"
            f" {s['apply_s']:>8.1f} {s['apply_changes_per_s'] or 0:>10,.0f}"
            f" {s['merge_s']:>8.1f} {s['peak_rss_mb']:>8.0f}  {'ok' if valid else 'INVALID'}"
        )
    m = results["maintenance"]
    print(
        f"  Delta files after the rounds: {m['files_before']}; after maintenance: {m['files_after']}"
    )
    d = results["summary"]["delta"]
    met = (
        d["changes_per_s"] >= TARGET_CHANGES_PER_S
        and d["peak_rss_mb"] < TARGET_PEAK_MB
        and results["check"]["delta"]["valid"]
    )
    print(
        f"  target >= {TARGET_CHANGES_PER_S:,} changes/s into Delta and < {TARGET_PEAK_MB} MB:"
        f" {'MET' if met else 'NOT MET'}"
    )
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in d["parts"].items())
    print(f"  where the Delta runs' time went: {parts}")
    print(
        f"  of the apply: merge {d['merge_s']:.1f} s (reading the typed changes"
        f" {d['arrow_read_s']:.1f} s), SQL on the source {d['apply_sql_s']:.1f} s; the merges"
        f" {json.dumps(d['merge_metrics'])}"
    )


def main() -> None:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results = {"date": started, **bench()}
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    report(results)


if __name__ == "__main__":
    from bench.runs import RUN_DELTA_CDC

    # --if-asked (make bench): only when BENCH_SCENARIOS names `cdc_delta` (its default does).
    if sys.argv[1:2] != ["--if-asked"] or RUN_DELTA_CDC:
        main()
