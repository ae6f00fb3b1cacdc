"""Which checks each pipeline gets, and the multi-asset checks that run them (subsettable: a
run executes only the selected checks). The code location builds one per chunk of pipelines
sharing a group and a source pool, not one per pipeline: each op costs its load about 1 ms.

A scan check (it reads a whole table) is left out of a load's run: that run costs what the load
read, a scan as much again. The op does not yield it, which Dagster records as skipped (the
check's op is subsettable, so its outputs are optional); the scan job (scan_job.py) runs it on
its own schedule, and a spec with `checks.scan_after_load` has it run after whole loads too.

No `from __future__ import annotations` here: Dagster inspects the resource annotations.
"""

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import dagster as dg
import psycopg
from psycopg import errors

from pgflow.bindings.assets import asset_key, pool_for
from pgflow.bindings.checks import (
    freshness,
    rejected,
    row_count,
    schema,
    slot,
    unique_key,
    value_parity,
)
from pgflow.bindings.checks.comparison import run_load
from pgflow.bindings.checks.context import (
    COUNT_TIMEOUT_SECONDS,
    ERROR,
    WARN,
    CheckRun,
    Clock,
    RunLoad,
    result,
)
from pgflow.bindings.checks.names import (
    CHECKS_ONLY_TAG,
    FRESHNESS,
    REJECTED_ROWS,
    ROW_COUNT_PARITY,
    SCAN_JOB,
    SCHEMA,
    SLOT_HEALTH,
    UNIQUE_KEY,
    VALUE_PARITY,
)
from pgflow.bindings.error_text import exception_line
from pgflow.config.model import PipelineSpec, Project
from pgflow.config.naming import dagster_name
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.connections.secrets import ConnectionConfigError

RunCheck = Callable[[PipelineSpec, CheckRun, dg.DagsterInstance], dg.AssetCheckResult]
# A scan check's result where it needs no scan, else None.
WithoutScan = Callable[[PipelineSpec, CheckRun, dg.DagsterInstance], dg.AssetCheckResult | None]


@dataclass(frozen=True)
class Check:
    """One kind of check: the pipelines it means something for, its description, its run, and
    whether it may read a whole table (a scan check) or only catalogs, state and event logs."""

    name: str
    offered: Callable[[PipelineSpec], bool]
    describe: Callable[[PipelineSpec], str]
    run: RunCheck
    scans: bool
    without_scan: WithoutScan | None = None


# In the order a pipeline lists them.
CHECKS = (
    Check(
        UNIQUE_KEY,
        unique_key.offered,
        unique_key.describe,
        unique_key.check,
        scans=True,
        without_scan=unique_key.from_catalog,  # a unique index settles it
    ),
    Check(
        ROW_COUNT_PARITY,
        row_count.offered,
        row_count.describe,
        row_count.check,
        scans=True,
        without_scan=row_count.after_snapshot_load,  # the ledger against the snapshot's rows
    ),
    Check(SCHEMA, schema.offered, schema.describe, schema.check, scans=False),
    Check(FRESHNESS, freshness.offered, freshness.describe, freshness.check, scans=False),
    Check(SLOT_HEALTH, slot.offered, slot.describe, slot.check, scans=False),
    Check(
        VALUE_PARITY, value_parity.offered, value_parity.describe, value_parity.check, scans=True
    ),
    Check(REJECTED_ROWS, rejected.offered, rejected.describe, rejected.check, scans=False),
)
_BY_NAME = {c.name: c for c in CHECKS}


# Pipelines whose checks one op runs. Every op costs the code location's load about 1 ms and a
# step's failure abandons only its own op's checks, so chunks stay modest.
CHUNK_SIZE = 50


def pipeline_checks(project: Project, clock: Clock = time.time) -> list[dg.AssetChecksDefinition]:
    """One checks op per pipeline."""
    return [pipeline_check(p, clock) for p in project.pipelines if check_names(p)]


def grouped_checks(
    project: Project,
    clock: Clock = time.time,
    size: int = CHUNK_SIZE,
    in_asset_steps: Collection[str] = (),
) -> list[dg.AssetChecksDefinition]:
    """The code location's checks op: one per `size` tables of a schema-wide spec that share a
    group and a source pool; any other pipeline keeps its own op. The pipelines named in
    `in_asset_steps` run their checks in their assets' own steps (in_step.py): no op."""
    pipelines = [p for p in project.pipelines if p.name not in in_asset_steps]
    return [
        pipeline_check(chunk[0], clock) if len(chunk) == 1 else chunk_check(chunk, index, clock)
        for index, chunk in enumerate(check_chunks(pipelines, size))
    ]


def check_chunks(pipelines: Sequence[PipelineSpec], size: int) -> list[list[PipelineSpec]]:
    """The pipelines with checks: a schema-wide spec's tables by group and source connection,
    in chunks of `size`; every other pipeline alone. A checks step waits for the asset steps
    of its chunk in a run, and one that failed abandons it: a wildcard's tables load in one
    step, so their chunks lose nothing, but explicit pipelines would lose their neighbours'
    checks to one failed load."""
    shared: dict[tuple[str, str | None, str], list[PipelineSpec]] = {}
    chunks: list[list[PipelineSpec]] = []
    for pipeline in pipelines:
        if not check_names(pipeline):
            continue
        if pipeline.partitions is not None or pipeline.expansion is None:
            chunks.append([pipeline])
            continue
        key = (pipeline.group, pipeline.source.connection_id, pipeline.expansion.wildcard)
        shared.setdefault(key, []).append(pipeline)
    for members in shared.values():
        chunks.extend(members[i : i + size] for i in range(0, len(members), size))
    return chunks


def check_names(pipeline: PipelineSpec) -> list[str]:
    """The checks that mean something for `pipeline`."""
    return [c.name for c in CHECKS if c.offered(pipeline)]


def check_specs(pipeline: PipelineSpec) -> list[dg.AssetCheckSpec]:
    """The checks of `pipeline` as Dagster declares them, each with its description."""
    return [
        dg.AssetCheckSpec(
            name, asset=asset_key(pipeline), description=_BY_NAME[name].describe(pipeline)
        )
        for name in check_names(pipeline)
    ]


def scan_check_names(pipeline: PipelineSpec) -> list[str]:
    """The scan checks of `pipeline`: those the scan job runs."""
    return [c.name for c in CHECKS if c.scans and c.offered(pipeline)]


def pipeline_check(pipeline: PipelineSpec, clock: Clock = time.time) -> dg.AssetChecksDefinition:
    return _checks_op(
        f"{dagster_name(pipeline.name)}_checks",
        [pipeline],
        f"pgflow checks of pipeline '{pipeline.name}' ({pipeline.file}).",
        {"pgflow/pipeline": pipeline.name},
        clock,
    )


def chunk_check(
    pipelines: Sequence[PipelineSpec], index: int, clock: Clock = time.time
) -> dg.AssetChecksDefinition:
    first, last = pipelines[0], pipelines[-1]
    source = first.source.connection_id or "delta"
    # The index (over the project's chunks) makes the name unique; the rest makes it readable.
    where = first.group if source == first.group else f"{first.group}__{source}"
    return _checks_op(
        f"{dagster_name(where)}__checks_{index}",
        pipelines,
        f"pgflow checks of {len(pipelines)} pipelines of group '{first.group}' "
        f"('{first.name}' to '{last.name}').",
        {"pgflow/group": first.group},
        clock,
    )


def _checks_op(
    name: str,
    pipelines: Sequence[PipelineSpec],
    description: str,
    tags: dict[str, str],
    clock: Clock,
) -> dg.AssetChecksDefinition:
    """One subsettable op over the checks of `pipelines`: a run executes only the selected
    checks, pipeline by pipeline, each pipeline's in name order."""
    by_key = {asset_key(p): p for p in pipelines}
    specs = [spec for p in pipelines for spec in check_specs(p)]
    source_id = pipelines[0].source.connection_id
    pool = pool_for(source_id) if source_id else None
    at_once = checked_at_once(pipelines[0])

    @dg.multi_asset_check(
        name=name,
        specs=specs,
        can_subset=True,
        description=description,
        op_tags={**tags, CHECKS_ONLY_TAG: "true"},
        # A source count scans the table like a load does: same cap on the OLTP database.
        pool=pool,
    )
    def _checks(
        context: dg.AssetCheckExecutionContext, pg: PostgresConnections, delta: DeltaStorage
    ) -> Iterator[dg.AssetCheckResult]:
        selected: dict[dg.AssetKey, list[str]] = {}
        for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
            selected.setdefault(key.asset_key, []).append(key.name)
        work = [(p, selected[k]) for k, p in by_key.items() if k in selected]
        runner = CheckRunner(
            pg, delta, clock, context.instance, context.run.run_id, context.log.info
        )
        yield from _run_selected(work, runner, at_once)

    return _checks


@dataclass(frozen=True)
class CheckRunner:
    """What every pipeline's checks in one step use."""

    pg: PostgresConnections
    delta: DeltaStorage
    clock: Clock
    instance: dg.DagsterInstance
    run_id: str
    log: Callable[[str], None]
    # After a load in the same step: a check that raises is a failed result, not a failed step.
    contain_errors: bool = False

    def results(self, pipeline: PipelineSpec, names: list[str]) -> Iterator[dg.AssetCheckResult]:
        """The named checks of `pipeline`, on connections opened on first use, closed at the
        end; after an incremental load, without the scans."""
        load = run_load(pipeline, self.instance, self.run_id)
        left: list[str] = []
        with ExitStack() as stack:
            run = CheckRun(pipeline, self.pg, self.delta, stack, self.clock, load)
            for name in names:
                outcome = self._outcome(name, pipeline, run)
                if outcome is None:
                    left.append(name)
                else:
                    yield outcome
        if left:
            self.log(_left_text(pipeline, left, load))

    def all_results(self, pipeline: PipelineSpec, names: list[str]) -> list[dg.AssetCheckResult]:
        return list(self.results(pipeline, names))

    def _outcome(
        self, name: str, pipeline: PipelineSpec, run: CheckRun
    ) -> dg.AssetCheckResult | None:
        try:
            return run_check(name, pipeline, run, self.instance)
        except Exception as exc:
            if not self.contain_errors:
                raise
            failed = raised_result(pipeline, name, exc)
            self.log(f"pipeline '{pipeline.name}': check {name}: {failed.description}")
            return failed


def raised_result(pipeline: PipelineSpec, name: str, error: Exception) -> dg.AssetCheckResult:
    """A check that raised after its asset's load, as a failed result naming the error (one
    line, no password)."""
    text = f"the check could not run: {exception_line(error)}"
    return result(pipeline, name, False, ERROR, text)


def checked_at_once(pipeline: PipelineSpec) -> int:
    """How many pipelines of a chunk have their checks run at once: as many as a schema-wide
    spec loads at once (its step's bound on the source's connections), else one. A chunk
    claims one slot of its source's pool, as one pipeline's checks did."""
    return pipeline.expansion.parallel_tables if pipeline.expansion else 1


def _run_selected(
    work: list[tuple[PipelineSpec, list[str]]], runner: CheckRunner, at_once: int
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks, pipeline by pipeline in chunk order, `at_once` pipelines at a
    time in threads. A pipeline whose checks raise does not stop the others': its error fails
    the step once they are done."""
    failures: list[tuple[PipelineSpec, Exception]] = []
    if len(work) <= 1 or at_once <= 1:
        for pipeline, names in work:
            try:
                yield from runner.results(pipeline, names)
            except Exception as exc:  # raised below, once the others' checks ran
                failures.append((pipeline, exc))
    else:
        with ThreadPoolExecutor(at_once, thread_name_prefix="pgflow-checks") as threads:
            futures = [(p, threads.submit(runner.all_results, p, n)) for p, n in work]
            for pipeline, future in futures:
                try:
                    yield from future.result()
                except Exception as exc:
                    failures.append((pipeline, exc))
    if failures:
        _, first = failures[0]
        for pipeline, other in failures[1:]:
            first.add_note(f"the checks of pipeline '{pipeline.name}' failed too: {other!r}")
        raise first


def _left_text(pipeline: PipelineSpec, names: list[str], load: RunLoad) -> str:
    it, reads = ("they", "read") if len(names) > 1 else ("it", "reads")
    schedule = pipeline.checks.scan_schedule
    return (
        f"{pipeline.name}: {', '.join(names)} not run (skipped) after {_LOADS[load]}: {it} "
        f"{reads} whole tables; the job {SCAN_JOB} runs {'them' if it == 'they' else 'it'}"
        + (f" ({schedule.cron})" if schedule else "")
        + (
            ""
            if load == "incremental"
            else _AFTER_WHOLE.format(it="them" if it == "they" else "it")
        )
    )


_AFTER_WHOLE = "; `checks.scan_after_load: true` runs {it} after whole loads too"
_LOADS: dict[RunLoad, str] = {
    "incremental": "an incremental load",
    "whole": "a whole load",
    "none": "no load",
}


def run_check(
    name: str, pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult | None:
    """One check's result, None for a scan check this run leaves out; errors a check can meet
    in normal operation become failed results."""
    check = _BY_NAME[name]
    try:
        if check.scans and not may_scan(pipeline, run.load):
            return check.without_scan(pipeline, run, instance) if check.without_scan else None
        return check.run(pipeline, run, instance)
    except ConnectionConfigError as exc:  # already free of secrets
        return result(pipeline, name, False, ERROR, f"{exc}; the check could not run")
    except errors.QueryCanceled:
        return result(
            pipeline,
            name,
            False,
            WARN,
            f"timed out after {COUNT_TIMEOUT_SECONDS} s (statement_timeout); the check could "
            "not finish on this table",
        )
    except (psycopg.OperationalError, _unsupported_delta()) as exc:
        return result(pipeline, name, False, ERROR, f"the check could not run: {exc}")


def may_scan(pipeline: PipelineSpec, load: RunLoad) -> bool:
    """A run of checks alone may scan; a load's run costs what the load read, so it scans only
    after a whole load, and only where the spec asks (`checks.scan_after_load`)."""
    return load == "none" or (load == "whole" and pipeline.checks.scan_after_load)


def _unsupported_delta() -> type[Exception]:
    """Imported when a check failed: pgflow.sources.delta imports deltalake (heavy)."""
    from pgflow.sources.delta import UnsupportedDeltaTable

    return UnsupportedDeltaTable
