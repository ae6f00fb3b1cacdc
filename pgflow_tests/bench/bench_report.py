"""The suite's results: medians, the targets, the table (stdout and bench/README.md), the chart
(bench/chart.png) and bench/results.json.

`python -m pgflow_tests.bench.bench_report [bench/results-<rows>.json]` publishes a results file
again (the table, the chart and the README section), e.g. after a change to this module.

The chart needs matplotlib: the optional `bench` extra (`pip install -e '.[bench]'`, which
`make bench` does); without it the chart is skipped with a note."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[2] / "bench"
LIMIT = "psql COPY binary pipe"
RSS_LIMIT_MB = 250
TARGETS = {
    "limit_share": 0.85,  # pgflow full_refresh rows/s vs the psql pipe
    "x_dlt": 5.0,  # pgflow full_refresh rows/s vs dlt replace
    "x_incremental": 3.0,  # dlt's and Sling's incremental time vs pgflow's
    "cdc_per_s": 50_000,
    "unchanged_s": 2.0,
}


@dataclass
class Figure:
    scenario: str
    tool: str
    runs: int
    invalid: int
    wall: float  # median seconds
    rows: float  # median rows (or changes)
    rss_mb: float | None  # the largest peak over the runs
    own: float | None  # median of the tool's own load time
    mb_s: float | None
    ratio: float | None  # rows/s over the physical limit's

    @property
    def rows_s(self) -> float | None:
        return self.rows / self.wall if self.rows else None

    @property
    def valid(self) -> bool:
        return self.invalid == 0


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def figures(results: dict[str, Any]) -> list[Figure]:
    """One figure per (scenario, tool): medians of the measured (not initial) runs."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in results["runs"]:
        if run["repetition"] >= 0:
            groups.setdefault((run["scenario"], run["tool"]), []).append(run)
    limit = groups.get(("full_refresh", LIMIT))
    limit_rate = (
        statistics.median(r["rows"] for r in limit) / statistics.median(r["wall"] for r in limit)
        if limit
        else None
    )
    out = []
    for (scenario, tool), runs in groups.items():
        wall = statistics.median(r["wall"] for r in runs)
        rows = statistics.median(r["rows"] for r in runs)
        rss = [r["rss_mb"] for r in runs if r["rss_mb"] is not None]
        own = [r["own_seconds"] for r in runs if r["own_seconds"] is not None]
        rate = rows / wall if rows else None
        out.append(
            Figure(
                scenario, tool, len(runs), sum(not r["valid"] for r in runs), wall, rows,
                max(rss) if rss else None, statistics.median(own) if own else None,
                rows * results["row_bytes"] / wall / 1e6 if rows else None,
                rate / limit_rate if rate and limit_rate else None,
            )
        )  # fmt: skip
    return out


def find(figs: list[Figure], scenario: str, prefix: str) -> Figure | None:
    return next((f for f in figs if f.scenario == scenario and f.tool.startswith(prefix)), None)


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**NOT met**")


def ratio_target(
    label: str, fast: Figure | None, slow: Figure | None, need: float, own: bool = False
) -> tuple[str, str, bool | None]:
    """`slow`'s time over `fast`'s (own: fast's own load time) against `need`."""
    if fast is None or slow is None:
        return label, "-", None
    seconds = fast.own if own and fast.own is not None else fast.wall
    times = slow.wall / seconds
    text = f"{slow.wall:.2f} s / {seconds:.2f} s = {times:.2f}x"
    return label, text, times >= need and fast.valid and slow.valid


def targets(figs: list[Figure]) -> Iterator[tuple[str, str, bool | None]]:
    """(target, the figures, met) for each of the issue's targets."""
    limit, dlt = find(figs, "full_refresh", LIMIT), find(figs, "full_refresh", "dlt")
    refreshes = [f for f in figs if f.scenario == "full_refresh" and f.tool.startswith("pgflow ")]
    for pg in refreshes or [None]:
        method = pg.tool.removeprefix("pgflow ") if pg else "pgflow"
        if pg and limit and pg.rows_s and limit.rows_s:
            share = pg.rows_s / limit.rows_s
            yield (
                f"full_refresh {method} >= {TARGETS['limit_share']:.2f}x the psql pipe's rows/s",
                f"{pg.rows_s:,.0f} / {limit.rows_s:,.0f} rows/s = {share:.2f}x",
                share >= TARGETS["limit_share"] and pg.valid,
            )
        yield ratio_target(f"full_refresh {method} >= 5x dlt", pg, dlt, TARGETS["x_dlt"])
    incr = {
        "in-process upsert": find(figs, "incremental", "pgflow in-process upsert"),
        "in-process delete_insert": find(figs, "incremental", "pgflow in-process delete_insert"),
        "CLI process (upsert)": find(figs, "incremental", "pgflow CLI"),
    }
    for peer in ("dlt", "Sling"):
        other = find(figs, "incremental", peer)
        for name, pg in incr.items():
            yield ratio_target(
                f"incremental (1% changed), pgflow {name} >= 3x faster than {peer}",
                pg, other, TARGETS["x_incremental"],
            )  # fmt: skip
        yield ratio_target(
            f"incremental, pgflow CLI's own load time >= 3x faster than {peer}",
            incr["CLI process (upsert)"], other, TARGETS["x_incremental"], own=True,
        )  # fmt: skip
    cdc = next((f for f in figs if f.scenario == "cdc"), None)
    if cdc is not None and cdc.rows_s is not None:
        yield (
            f"CDC >= {TARGETS['cdc_per_s']:,} changes/s",
            f"{cdc.rows_s:,.0f} changes/s",
            cdc.rows_s >= TARGETS["cdc_per_s"] and cdc.valid,
        )
    pg_rss = [f for f in figs if f.tool.startswith("pgflow") and f.rss_mb is not None]
    if pg_rss:
        top = max(pg_rss, key=lambda f: f.rss_mb or 0)
        yield (
            f"peak RSS < {RSS_LIMIT_MB} MB (every pgflow figure)",
            f"largest {top.rss_mb:,.0f} MB ({top.tool}, {top.scenario})",
            (top.rss_mb or 0) < RSS_LIMIT_MB,
        )
    rerun = find(figs, "delta", "pgflow Delta -> Postgres, unchanged")
    if rerun is not None:
        yield (
            f"Delta -> Postgres unchanged re-run < {TARGETS['unchanged_s']:.0f} s",
            f"{rerun.wall:.2f} s",
            rerun.wall < TARGETS["unchanged_s"] and rerun.valid,
        )


def label(results: dict[str, Any]) -> str:
    """What names a run's files and README section: its size, and its server settings if any."""
    settings = results.get("server_settings") or {}
    return "".join([str(results["rows"]), *(f"-{k}={v}" for k, v in sorted(settings.items()))])


def settings_text(results: dict[str, Any]) -> str:
    settings = results.get("server_settings") or {}
    return "".join(f", {k} {v}" for k, v in sorted(settings.items()))


def heading(results: dict[str, Any]) -> str:
    m = results["machine"]
    earlier = "".join(
        f"; {', '.join(e['scenarios'])} from the run of {e['date']} (median of {e['repeat']})"
        for e in results.get("merged", [])
    )
    cdc = f", CDC {results['cdc_changes']:,} changes" if "cdc" in results["scenarios"] else ""
    return (
        f"{results['rows']:,} rows ({results['source_table_bytes'] / 1e6:,.0f} MB pg_table_size,"
        f" {results['row_bytes']:.0f} B/row){settings_text(results)}, median of {results['repeat']}"
        f"{cdc}; {results['date']}; {m['cpus']} CPUs"
        f" ({m['cpu']}), {m['memory_gb']} GB, PostgreSQL {m['postgres']}, Python {m['python']}"
        f"{earlier}"
    )


def table(results: dict[str, Any]) -> str:
    """The results and the targets as Markdown (also readable on stdout)."""
    figs = figures(results)
    lines = [
        f"Run: {heading(results)}.",
        "",
        "| scenario | tool | wall s | own s | rows | rows/s | MB/s | peak RSS MB | x limit | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in figs:
        check = "ok" if f.valid else f"INVALID ({f.invalid} of {f.runs})"
        lines.append(
            f"| {f.scenario} | {f.tool} | {f.wall:.2f} | {fmt(f.own, '.2f')} | {f.rows:,.0f}"
            f" | {fmt(f.rows_s, ',.0f')} | {fmt(f.mb_s, ',.1f')} | {fmt(f.rss_mb, ',.0f')}"
            f" | {fmt(f.ratio, '.2f')} | {check} |"
        )
    lines += ["", "| target | figures | result |", "|---|---|---|"]
    lines += [f"| {name} | {text} | {verdict(ok)} |" for name, text, ok in targets(figs)]
    for failure in results["failures"]:
        reason = failure["reason"].splitlines()[0][:200]
        lines.append(f"\n**{failure['tool']} ({failure['scenario']}) failed**: {reason}")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> bool:
    """Bars of rows/s per tool, one panel per scenario, the physical limit as a dashed line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("chart skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return False
    figs = [f for f in figures(results) if f.rows_s]
    scenarios = list(dict.fromkeys(f.scenario for f in figs))
    if not scenarios:
        return False
    limit = find(figs, "full_refresh", LIMIT)
    fig, axes = plt.subplots(
        len(scenarios), 1, figsize=(10, 1.2 + 0.55 * len(figs) + 0.4 * len(scenarios)),
        squeeze=False, gridspec_kw={"height_ratios": [
            max(1, sum(f.scenario == s for f in figs)) for s in scenarios]},
    )  # fmt: skip
    for ax, scenario in zip(axes[:, 0], scenarios, strict=True):
        mine = [f for f in figs if f.scenario == scenario]
        colors = [
            "#999999" if f.tool == LIMIT else "#d62728" if not f.valid
            else "#1f77b4" if f.tool.startswith("pgflow") else "#ff7f0e"
            for f in mine
        ]  # fmt: skip
        ax.barh([f.tool for f in mine], [f.rows_s or 0 for f in mine], color=colors)
        for i, f in enumerate(mine):
            ax.text(f.rows_s or 0, i, f" {f.rows_s:,.0f}", va="center", fontsize=8)
        if limit and limit.rows_s:
            ax.axvline(limit.rows_s, color="black", linestyle="--", linewidth=1)
        ax.invert_yaxis()
        unit = {"cdc": "changes/s", "incremental": "changed rows/s"}.get(scenario, "rows/s")
        ax.set_title(f"{scenario} ({unit}; dashed: psql pipe, the physical limit)", fontsize=9)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.tick_params(labelsize=8)
        ax.margins(x=0.2)
    fig.suptitle(f"pgflow bench: {results['rows']:,} rows", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def readme_section(results: dict[str, Any], chart_name: str | None) -> str:
    body = table(results)
    picture = f"\n\n![rows/s per tool]({chart_name})" if chart_name else ""
    return f"### {results['rows']:,} rows{settings_text(results)}\n\n{body}{picture}\n"


def update_readme(results: dict[str, Any], section: str) -> None:
    """Replace (or add) this size's (and settings') generated section of bench/README.md."""
    readme = OUT / "README.md"
    text = readme.read_text() if readme.exists() else "# pgflow bench\n\n## Results\n"
    start = f"<!-- results rows={label(results)} start (generated by the suite) -->"
    end = f"<!-- results rows={label(results)} end -->"
    block = f"{start}\n{section}{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(text)


SCENARIO_ORDER = ("full_refresh", "incremental", "cdc", "delta")


def merged(results: dict[str, Any]) -> dict[str, Any]:
    """`results` with the previous run's figures of the same size for the scenarios this run
    did not run (BENCH_SCENARIOS), labelled with that run's date."""
    previous = OUT / f"results-{label(results)}.json"
    if not previous.exists():
        return results
    old = json.loads(previous.read_text())
    kept = [s for s in old["scenarios"] if s not in results["scenarios"]]
    if not kept:
        return results
    # An earlier run's label keeps only the scenarios still shown from it.
    carried = [
        {**m, "scenarios": [s for s in m["scenarios"] if s in kept]}
        for m in old.get("merged", [])
        if set(m["scenarios"]) & set(kept)
    ]
    own = sorted(set(kept) - {s for m in carried for s in m["scenarios"]})
    if own:
        carried.append({"scenarios": own, "date": old["date"], "repeat": old["repeat"]})
    runs = [r for r in old["runs"] if r["scenario"] in kept] + results["runs"]
    return {
        **results,
        "scenarios": sorted({*results["scenarios"], *kept}, key=SCENARIO_ORDER.index),
        "runs": sorted(runs, key=lambda r: SCENARIO_ORDER.index(r["scenario"])),
        "failures": [f for f in old["failures"] if f["scenario"] in kept] + results["failures"],
        "cdc_changes": old["cdc_changes"] if "cdc" in kept else results["cdc_changes"],
        "merged": carried,
    }


def publish(results: dict[str, Any]) -> None:
    """Print the table; write results.json, the chart and the README section."""
    OUT.mkdir(exist_ok=True)
    results = merged(results)
    print("\n" + table(results) + "\n")
    (OUT / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (OUT / f"results-{label(results)}.json").write_text(json.dumps(results, indent=1) + "\n")
    chart_name = f"chart-{label(results)}.png"
    drawn = chart(results, OUT / chart_name)
    if drawn:
        shutil.copy(OUT / chart_name, OUT / "chart.png")
    update_readme(results, readme_section(results, chart_name if drawn else None))
    print(f"written: {OUT}/results.json, {OUT}/{chart_name} (and chart.png), {OUT}/README.md")


if __name__ == "__main__":
    import sys

    publish(
        json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else OUT / "results.json").read_text())
    )
