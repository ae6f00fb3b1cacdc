"""Benchmark (not a test): CDC groups, many tables read through ONE replication slot (issue 21).

    python -m bench.cdc_group                       # every part, the sizes below
    BENCH_CDC_SLOTS_CHANGES=100000 BENCH_CDC_GROUP_CHANGES=200000 BENCH_CDC_LIVE_ROWS=100000 \
        python -m bench.cdc_group                   # a quick run
    BENCH_CDC_GROUP_PARTS=throughput python -m bench.cdc_group

`make bench` runs it after the suite (bench/suite.py). Two throwaway clusters, as in cdc.py:
the source (wal_level logical, max_replication_slots 64: the 50-slot part needs 52) and the
sink. The parts (BENCH_CDC_GROUP_PARTS, comma-separated):

- slots: BENCH_CDC_SLOTS_TABLES (50) empty orders-shaped tables, then BENCH_CDC_SLOTS_CHANGES
  (1,000,000) inserts in transactions of 2,000 rows, the tables taking turns. The same WAL is
  then replicated three ways, one after the other: one table through a slot of its own (the
  baseline), the 50 tables through ONE slot (a group), and 50 pipelines with a slot each (run
  one after the other). Per way: wall time, the source cluster's CPU seconds (every process
  of the cluster, walsenders included, bench/server_cpu.py), the sink's, and the WAL the
  way's slots retain after the run. The issue's target: the group's source CPU within 1.5x
  of the one table's, well below the 50 slots'.
- throughput: one group of BENCH_CDC_GROUP_TABLES (4) tables, BENCH_CDC_GROUP_CHANGES
  (10,000,000) changes in all: cdc.py's mixed scenario on each table (40% inserts, 40%
  updates, 20% deletes per transaction of 10,000 rows; the tables' transactions taking
  turns). After the group's first run (its snapshot), ONE measured run applies them all, in a
  subprocess of its own (peak RSS: its VmHWM) with, unless BENCH_CDC_BREAKDOWN=0, where its
  time went (cdc_measure.breakdown: about 1 us per change more). Target: >= 150,000
  changes/s, < 250 MB peak RSS.
- live_add: bench/cdc_group_live.py.

Every target is checked against its source (count and checksum) before its figure counts.
Results: bench/results-group.json (each part replaces its own entry).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import cdc_group_live
from bench.cdc_group_common import (
    POLICY,
    SOURCE_SETTINGS,
    Group,
    create_tables,
    insert_round_robin,
    measured_group_call,
    mixed_round_robin,
    more_slots,
    retained_wal_mb,
)
from bench.cdc_measure import APPLY_PARTS, PARTS, SETTLE_S
from bench.common import throwaway_cluster
from bench.server_cpu import cluster_cpu_s, postmaster_pid

PARTS_RUN = tuple(
    p for p in os.environ.get("BENCH_CDC_GROUP_PARTS", "slots,throughput,live_add").split(",") if p
)
SLOTS_TABLES = int(os.environ.get("BENCH_CDC_SLOTS_TABLES", "50"))
SLOTS_CHANGES = int(os.environ.get("BENCH_CDC_SLOTS_CHANGES", "1000000"))
SLOTS_TX_ROWS = 2_000
GROUP_TABLES = int(os.environ.get("BENCH_CDC_GROUP_TABLES", "4"))
GROUP_CHANGES = int(os.environ.get("BENCH_CDC_GROUP_CHANGES", "10000000"))
GROUP_TX_ROWS = 10_000
BREAKDOWN = os.environ.get("BENCH_CDC_BREAKDOWN", "1") not in ("", "0")
PROFILE = os.environ.get("BENCH_CDC_PROFILE", "") not in ("", "0")
TARGET_CHANGES_PER_S = 150_000
TARGET_PEAK_MB = 250
TARGET_CPU_RATIO = 1.5
RESULTS = Path(__file__).resolve().parent / "results-group.json"
REPO = Path(__file__).resolve().parents[1]


# -- slots: one slot for 50 tables vs a slot each -------------------------------------------------


def slots(source_uri: str, sink_uri: str) -> dict[str, Any]:
    tables = tuple(f"s{i:02}" for i in range(SLOTS_TABLES))
    create_tables(source_uri, tables, 0)
    ways = {
        "one table, own slot": [Group("bench_one", tables[:1], "cdc_one")],
        f"{len(tables)} tables, one slot": [Group("bench_shared", tables, "cdc_shared")],
        f"{len(tables)} pipelines, own slots": [
            Group(f"bench_own_{name}", (name,), "cdc_own") for name in tables
        ],
    }
    for groups in ways.values():  # first runs: slots and (empty) snapshots
        for group in groups:
            group.run(source_uri, sink_uri)
    started = time.perf_counter()
    made = insert_round_robin(source_uri, tables, SLOTS_CHANGES, SLOTS_TX_ROWS)
    print(
        f"\nslots: {made:,} inserts over {len(tables)} tables made in"
        f" {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    figures = {name: _slots_way(groups, source_uri, sink_uri) for name, groups in ways.items()}
    one = figures["one table, own slot"]["source_cpu_s"]
    shared = figures[f"{len(tables)} tables, one slot"]["source_cpu_s"]
    own = figures[f"{len(tables)} pipelines, own slots"]["source_cpu_s"]
    return {
        "tables": len(tables),
        "changes": made,
        "tx_rows": SLOTS_TX_ROWS,
        "ways": figures,
        "shared_vs_one_cpu": shared / one if one else None,
        "own_vs_shared_cpu": own / shared if shared else None,
        "target_met": bool(one) and shared <= TARGET_CPU_RATIO * one and own > shared,
    }


def _slots_way(groups: list[Group], source_uri: str, sink_uri: str) -> dict[str, Any]:
    source_pm, sink_pm = postmaster_pid(source_uri), postmaster_pid(sink_uri)
    slot_names = [g.slot for g in groups]
    retained_before = retained_wal_mb(source_uri, slot_names)
    cpu = cluster_cpu_s(source_pm), cluster_cpu_s(sink_pm)
    started = time.perf_counter()
    changes = 0
    for group in groups:
        changes += sum(r.changes for r in group.run(source_uri, sink_uri).values())
    wall = time.perf_counter() - started
    time.sleep(SETTLE_S)
    source_cpu, sink_cpu = cluster_cpu_s(source_pm) - cpu[0], cluster_cpu_s(sink_pm) - cpu[1]
    differ = [t for g in groups for t in g.check(source_uri, sink_uri)]
    way = {
        "slots": len(groups),
        "changes": changes,
        "wall_s": wall,
        "source_cpu_s": source_cpu,
        "sink_cpu_s": sink_cpu,
        "retained_before_mb": retained_before,
        "retained_after_mb": retained_wal_mb(source_uri, slot_names),
        "unconfirmed_after_mb": retained_wal_mb(source_uri, slot_names, "confirmed_flush_lsn"),
        "valid": not differ,
    }
    print(f"  {len(groups):>2} slot(s): {json.dumps(way)}", flush=True)
    return way


# -- throughput: one group, end to end ------------------------------------------------------------


def throughput(source_uri: str, sink_uri: str) -> dict[str, Any]:
    tables = tuple(f"g{i}" for i in range(GROUP_TABLES))
    base = max(1, GROUP_CHANGES // len(tables))
    started = time.perf_counter()
    create_tables(source_uri, tables, base)
    group = Group("bench_throughput", tables, "cdc_throughput")
    group.run(source_uri, sink_uri)
    print(
        f"\nthroughput: {len(tables)} tables of {base:,} rows, made and snapshotted in"
        f" {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    started = time.perf_counter()
    made = mixed_round_robin(source_uri, tables, base, GROUP_TX_ROWS)
    print(f"  {made:,} changes made in {time.perf_counter() - started:.0f} s", flush=True)
    settings = {
        "source": source_uri,
        "sink": sink_uri,
        "slot": group.slot,
        "tables": list(tables),
        "target_schema": group.target_schema,
        "breakdown": BREAKDOWN,
        "profile": PROFILE,
        "postmasters": {"source": postmaster_pid(source_uri), "sink": postmaster_pid(sink_uri)},
    }
    figures = _measure(settings)
    differ = group.check(source_uri, sink_uri)
    rate = figures["changes"] / figures["wall"]
    peak = figures["peak_rss_mb"]
    figures.update(
        tables=len(tables),
        policy=POLICY,
        changes_made=made,
        changes_per_s=rate,
        valid=not differ,
        target_met=not differ and rate >= TARGET_CHANGES_PER_S and (peak or 0) < TARGET_PEAK_MB,
        breakdown=BREAKDOWN,
    )
    return figures


def _measure(settings: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cdc_group", "--measure", json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=REPO,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"the measured group call failed:\n{tail}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the report -----------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> None:
    if "slots" in results:
        s = results["slots"]
        print(f"\nslots: {s['changes']:,} inserts over {s['tables']} tables, the same WAL:")
        print(
            f"  {'way':<28} {'wall s':>7} {'src CPU s':>9} {'sink CPU s':>10} {'WAL kept MB':>11}"
        )
        for name, w in s["ways"].items():
            print(
                f"  {name:<28} {w['wall_s']:>7.1f} {w['source_cpu_s']:>9.1f}"
                f" {w['sink_cpu_s']:>10.1f} {w['retained_after_mb']:>11.1f}"
                f" {w['unconfirmed_after_mb']:>14.1f}"
                f"{'' if w['valid'] else '  INVALID'}"
            )
        print(
            f"  target: group's source CPU <= {TARGET_CPU_RATIO}x one table's:"
            f" {_ratio(s['shared_vs_one_cpu'])}, {'MET' if s['target_met'] else 'NOT MET'};"
            f" the own slots' / the group's: {_ratio(s['own_vs_shared_cpu'])}"
        )
    for key in sorted(k for k in results if k.startswith("throughput")):
        _report_throughput(results[key])
    if "live_add" in results:
        cdc_group_live.report(results["live_add"])


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _report_throughput(t: dict[str, Any]) -> None:
    print(
        f"\nthroughput: {t['changes']:,} changes, {t['tables']} tables, one group, {t['policy']}:"
        f" {t['wall']:.1f} s, {t['changes_per_s']:,.0f} changes/s, peak RSS"
        f" {t['peak_rss_mb']:.0f} MB, client CPU {t['cpu_s']:.1f} s, source CPU"
        f" {t['source_cpu_s']:.1f} s, sink CPU {t['sink_cpu_s']:.1f} s"
        f"{'' if t['valid'] else '  INVALID'}"
    )
    print(
        f"  target >= {TARGET_CHANGES_PER_S:,} changes/s and < {TARGET_PEAK_MB} MB:"
        f" {'MET' if t['target_met'] else 'NOT MET'}"
    )
    if t["parts"]:
        cells = ", ".join(
            f"{n} {t['parts'][n]:.1f} s ({t['parts'][n] / t['wall']:.0%})"
            for n in PARTS + APPLY_PARTS
        )
        print(f"  where the time went: {cells}")
        ranked = sorted(t["statements"].items(), key=lambda kv: -kv[1])
        for text, seconds in ranked[:6]:
            print(f"    {seconds:7.2f}  {text}")
    if t["profile"]:
        print(t["profile"])


def write_results(results: dict[str, Any]) -> None:
    """Each part replaces its own entry of bench/results-group.json."""
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**old, **results}, indent=1) + "\n")


def _measured_with() -> str:
    policy = "" if POLICY == "delete_insert" else f"_{POLICY}"
    return policy + ("_profiled" if PROFILE else "_breakdown" if BREAKDOWN else "")


def shown(uri: str, names: dict[str, str]) -> str:
    with psycopg.connect(uri) as conn:
        return ", ".join(
            f"{name} {conn.execute(sql.SQL('SHOW {}').format(sql.Identifier(name))).fetchone()[0]}"  # type: ignore[index]
            for name in names
        )


def main() -> None:
    from bench.suite import machine

    steps = {"slots": slots, "throughput": throughput, "live_add": cdc_group_live.live_add}
    unknown = set(PARTS_RUN) - set(steps)
    if unknown:
        raise SystemExit(f"BENCH_CDC_GROUP_PARTS: unknown {sorted(unknown)}; known {list(steps)}")
    results: dict[str, Any] = {}
    with (
        more_slots(),
        throwaway_cluster(["bench_source"]) as source_info,
        throwaway_cluster(["bench_sink"]) as sink_info,
    ):
        source_uri, sink_uri = source_info.uri("bench_source"), sink_info.uri("bench_sink")
        print(f"source: {shown(source_uri, SOURCE_SETTINGS)}", flush=True)
        for name in PARTS_RUN:
            started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            # A throughput measured with wrappers or a profiler is kept apart from one without.
            key = f"{name}{_measured_with()}" if name == "throughput" else name
            results[key] = {"date": started, **steps[name](source_uri, sink_uri)}
            results[key]["machine"] = machine(source_uri)
            write_results({key: results[key]})
    report(results)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measured_group_call(json.loads(sys.argv[2]))))
    else:
        main()
