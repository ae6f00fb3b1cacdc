"""Which checks each pipeline gets, and the one multi-asset check per pipeline that runs them
(subsettable: a run executes only the selected checks).

No `from __future__ import annotations` here: Dagster inspects the resource annotations.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import dagster as dg
import psycopg
from psycopg import errors

from pgflow.bindings.assets import asset_key, pool_for
from pgflow.bindings.checks import (
    freshness,
    row_count,
    schema,
    slot,
    unique_key,
    value_parity,
)
from pgflow.bindings.checks.context import (
    COUNT_TIMEOUT_SECONDS,
    ERROR,
    WARN,
    CheckRun,
    Clock,
    result,
)
from pgflow.bindings.checks.names import (
    FRESHNESS,
    ROW_COUNT_PARITY,
    SCHEMA,
    SLOT_HEALTH,
    UNIQUE_KEY,
    VALUE_PARITY,
)
from pgflow.config.model import PipelineSpec, Project
from pgflow.config.naming import dagster_name
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections
from pgflow.connections.secrets import ConnectionConfigError

RunCheck = Callable[[PipelineSpec, CheckRun, dg.DagsterInstance], dg.AssetCheckResult]


@dataclass(frozen=True)
class Check:
    """One kind of check: the pipelines it means something for, its description, its run."""

    name: str
    offered: Callable[[PipelineSpec], bool]
    describe: Callable[[PipelineSpec], str]
    run: RunCheck


# In the order a pipeline lists them.
CHECKS = (
    Check(UNIQUE_KEY, unique_key.offered, unique_key.describe, unique_key.check),
    Check(ROW_COUNT_PARITY, row_count.offered, row_count.describe, row_count.check),
    Check(SCHEMA, schema.offered, schema.describe, schema.check),
    Check(FRESHNESS, freshness.offered, freshness.describe, freshness.check),
    Check(SLOT_HEALTH, slot.offered, slot.describe, slot.check),
    Check(VALUE_PARITY, value_parity.offered, value_parity.describe, value_parity.check),
)
_BY_NAME = {c.name: c for c in CHECKS}


def pipeline_checks(project: Project, clock: Clock = time.time) -> list[dg.AssetChecksDefinition]:
    return [pipeline_check(p, clock) for p in project.pipelines if check_names(p)]


def check_names(pipeline: PipelineSpec) -> list[str]:
    """The checks that mean something for `pipeline`."""
    return [c.name for c in CHECKS if c.offered(pipeline)]


def pipeline_check(pipeline: PipelineSpec, clock: Clock = time.time) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(
            name, asset=asset_key(pipeline), description=_BY_NAME[name].describe(pipeline)
        )
        for name in check_names(pipeline)
    ]
    source_id = pipeline.source.connection_id

    @dg.multi_asset_check(
        name=f"{dagster_name(pipeline.name)}_checks",
        specs=specs,
        can_subset=True,
        description=f"pgflow checks of pipeline '{pipeline.name}' ({pipeline.file}).",
        op_tags={"pgflow/pipeline": pipeline.name},
        # A source count scans the table like a load does: same cap on the OLTP database.
        pool=pool_for(source_id) if source_id else None,
    )
    def _checks(
        context: dg.AssetCheckExecutionContext, pg: PostgresConnections, delta: DeltaStorage
    ) -> Iterator[dg.AssetCheckResult]:
        with ExitStack() as stack:
            run = CheckRun(pipeline, pg, delta, stack, clock)
            for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
                yield run_check(key.name, pipeline, run, context.instance)

    return _checks


def run_check(
    name: str, pipeline: PipelineSpec, run: CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    """One check's result; errors a check can meet in normal operation become failed results."""
    try:
        return _BY_NAME[name].run(pipeline, run, instance)
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


def _unsupported_delta() -> type[Exception]:
    """Imported when a check failed: pgflow.sources.delta imports deltalake (heavy)."""
    from pgflow.sources.delta import UnsupportedDeltaTable

    return UnsupportedDeltaTable
