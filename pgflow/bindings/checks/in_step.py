"""A pipeline's checks in its asset's own step, after the load (issue 24).

A checks op of its own costs a one-asset run a second step: its start and success events, a
claim and a release of a pool slot, and the executor's bookkeeping between the two. A pipeline
with a step of its own (not a shared slot's nor a schema's) and no time partitions declares its
checks on its asset instead (pipeline_asset.py): the step loads, then runs the selected checks
on the same connections' settings, and a run of checks alone (the scan job, the UI's "Execute
checks") runs the same op without the load, as a subsettable multi-asset does.

A time-partitioned asset keeps a checks op: its checks judge the whole target, and a run of
them alone must not need a partition key.

A check that raises after the load does not fail the step: the load is committed, and a
failed step would be retried, loading again. Its error (one line, no password) becomes its
failed result, and the log says so; the other checks still run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import dagster as dg

from pgflow.bindings.checks.definitions import CheckRunner, check_names, raised_result
from pgflow.bindings.error_text import exception_line
from pgflow.config.model import PipelineSpec


def checks_in_asset_step(pipeline: PipelineSpec) -> bool:
    """Whether `pipeline`'s own asset step runs its checks (else a checks op does)."""
    return pipeline.partitions is None and bool(check_names(pipeline))


def step_checks(
    pipeline: PipelineSpec,
    names: list[str],
    runner: CheckRunner,
    after_load: bool,
    log: dg.DagsterLogManager,
) -> Iterator[dg.AssetCheckResult]:
    """The checks `names` of `pipeline`, in the step that ran its load when `after_load`:
    then an error becomes failed results instead of a failed (and retried) step. Without a
    load, an error fails the step once, as a checks op's did (the asset's retry policy is for
    loads)."""
    if not after_load:
        try:
            yield from runner.results(pipeline, names)
        except Exception as exc:  # a check's own bug: the asset's retries would not mend it
            text = f"pipeline '{pipeline.name}': its checks failed: {exception_line(exc)}"
            raise dg.Failure(text, allow_retries=False) from exc
        return
    reported: set[str] = set()
    try:
        for outcome in replace(runner, contain_errors=True).results(pipeline, names):
            reported.add(outcome.check_name or "")
            yield outcome
    except Exception as exc:  # outside any one check (the event log, a connection's close)
        text = exception_line(exc)
        log.error(f"pipeline '{pipeline.name}': the checks after the load failed: {text}")
        yield from (raised_result(pipeline, n, exc) for n in names if n not in reported)
