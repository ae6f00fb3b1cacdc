"""The `freshness` check: age of the latest materialization vs `freshness` (warn_after: WARN,
fail_after or never: ERROR); the rule is shared with the freshness sensor."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import dagster as dg

from pgflow.bindings.assets import latest_materialization
from pgflow.bindings.checks.context import ERROR, WARN, CheckRun, result
from pgflow.bindings.checks.names import FRESHNESS
from pgflow.bindings.humanize import human
from pgflow.config.model import FreshnessSpec, PipelineSpec

FreshnessLevel = Literal["fresh", "warn", "fail"]


@dataclass(frozen=True)
class Freshness:
    """Where a pipeline stands against its freshness windows at one moment."""

    level: FreshnessLevel
    last: float | None  # timestamp of the latest materialization; None: never materialized
    age: timedelta | None
    spec: FreshnessSpec

    def describe(self) -> str:
        windows = (
            f"warn after {human(self.spec.warn_after)}, " if self.spec.warn_after else ""
        ) + f"fail after {human(self.spec.fail_after)}"
        if self.age is None:
            return f"never materialized ({windows})"
        return f"last materialized {human(self.age)} ago ({windows})"


def freshness(spec: FreshnessSpec, last: float | None, now: float) -> Freshness:
    """The freshness rule, shared by the check and the sensor: never or past fail_after is
    fail, past warn_after is warn, else fresh."""
    if last is None:
        return Freshness("fail", None, None, spec)
    age = timedelta(seconds=max(0.0, now - last))
    if age > spec.fail_after:
        level: FreshnessLevel = "fail"
    elif spec.warn_after is not None and age > spec.warn_after:
        level = "warn"
    else:
        level = "fresh"
    return Freshness(level, last, age, spec)


def pipeline_freshness(
    instance: dg.DagsterInstance, pipeline: PipelineSpec, now: float | None = None
) -> Freshness:
    assert pipeline.freshness
    latest = latest_materialization(instance, pipeline)
    last = latest.timestamp if latest is not None else None
    return freshness(pipeline.freshness, last, time.time() if now is None else now)


def offered(pipeline: PipelineSpec) -> bool:
    return pipeline.freshness is not None


def describe(pipeline: PipelineSpec) -> str:
    spec = pipeline.freshness
    if spec is None:
        return ""
    warn = f"WARN after {human(spec.warn_after)}, " if spec.warn_after else ""
    return (
        f"The latest materialization is recent: {warn}ERROR after {human(spec.fail_after)} or "
        "when never materialized."
    )


def check(
    pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    state = pipeline_freshness(instance, pipeline, run.clock())
    spec = state.spec
    metadata = {
        "last_materialization": dg.MetadataValue.timestamp(state.last) if state.last else None,
        "age_seconds": dg.MetadataValue.float(round(state.age.total_seconds(), 1))
        if state.age is not None
        else None,
        "warn_after": dg.MetadataValue.text(human(spec.warn_after)) if spec.warn_after else None,
        "fail_after": dg.MetadataValue.text(human(spec.fail_after)),
        "state": dg.MetadataValue.text(state.level),
    }
    text = state.describe()
    if state.level == "fresh":
        return result(pipeline, FRESHNESS, True, WARN, text, metadata)
    if state.last is None:
        text += ": materialize the asset (is its schedule or sensor running?)"
    else:
        limit = spec.fail_after if state.level == "fail" else spec.warn_after
        assert limit is not None
        text += f": older than {human(limit)}; is its schedule or sensor running, do runs fail?"
    severity = ERROR if state.level == "fail" else WARN
    return result(pipeline, FRESHNESS, False, severity, text, metadata)
