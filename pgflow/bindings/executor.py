"""The code location's executor: small runs in the run's process, larger ones fanned out.

Dagster's default executor starts a process per step. A pgflow step spends its time waiting
on Postgres, and a fresh step process first re-imports Dagster and pgflow (about 1.5 s), more
than a small incremental load takes. So a run of one pgflow step (an asset's, which runs its
checks too; or a checks op), or of one step and one checks op (a schema-wide spec's tables and
their checks), executes in the run's own process, and a run of more assets (a group schedule,
a UI selection) gets a process per step, so their loads overlap as with Dagster's default.
Run config chooses as the multiprocess executor's does (`execution: {config:
{max_concurrent: 4}}`).

The run's process also keeps its storage connections: Dagster's Postgres storage opens a new
connection for every event it writes or reads (about 120 in a one-asset run, each a TCP
connect and a SCRAM handshake); pooled as the webserver pools them, it opens one per storage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dagster as dg

from pgflow.bindings.checks.names import CHECKS_ONLY_TAG

# One step that loads, plus at most one that only checks.
IN_PROCESS_MAX_STEPS = 2
# A pooled storage connection is replaced at its first use after this many seconds, so one
# left idle through a long load is never reused (servers and firewalls drop idle sessions).
STORAGE_POOL_RECYCLE_SECONDS = 60
# Extra connections for threads that write at the same moment; closed when given back.
STORAGE_POOL_MAX_OVERFLOW = 10


# Dagster's public API does not export the types of an executor's plan, context, retry mode
# and step dependency config (only its private modules do), so they are `Any` here: _BySize
# hands each one, unchanged, to one of Dagster's own executors.
class _BySize(dg.Executor):
    def __init__(self, single: dg.Executor, multi: dg.Executor):
        self._single, self._multi = single, multi

    @property
    def retries(self) -> Any:
        return self._multi.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._multi.step_dependency_config

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        steps = [execution_plan.get_step_by_key(k) for k in execution_plan.step_keys_to_execute]
        chosen = self._single if in_process(steps) else self._multi
        return chosen.execute(plan_context, execution_plan)


def in_process(steps: Sequence[Any]) -> bool:
    """One step, or two of which at least one only checks (CHECKS_ONLY_TAG): two loads
    overlap in processes of their own."""
    if len(steps) > IN_PROCESS_MAX_STEPS:
        return False
    return len(steps) < IN_PROCESS_MAX_STEPS or any(
        (step.tags or {}).get(CHECKS_ONLY_TAG) for step in steps
    )


def _create(init_context: dg.InitExecutorContext) -> dg.Executor:
    _pool_storage_connections(init_context.instance)
    multi = _creation_fn(dg.multiprocess_executor)(init_context)
    in_process_config = {"retries": init_context.executor_config.get("retries", {"enabled": {}})}
    single = _creation_fn(dg.in_process_executor)(
        dg.InitExecutorContext(
            job=init_context.job,
            executor_def=init_context.executor_def,
            executor_config=in_process_config,
            instance=init_context.instance,
        )
    )
    return _BySize(single, multi)


def _pool_storage_connections(instance: dg.DagsterInstance) -> None:
    """One kept connection per storage (runs, events, schedules) for the rest of this process,
    instead of one per query; the instance closes them when the run's process disposes it.
    Storages other than Postgres ignore it. Statement timeout 0 is Postgres' own default."""
    instance.optimize_for_webserver(
        statement_timeout=0,
        pool_recycle=STORAGE_POOL_RECYCLE_SECONDS,
        max_overflow=STORAGE_POOL_MAX_OVERFLOW,
    )


def _creation_fn(
    executor: dg.ExecutorDefinition,
) -> Callable[[dg.InitExecutorContext], dg.Executor]:
    create = executor.executor_creation_fn
    assert create is not None, "Dagster's own executors are built by a function"
    return create


pgflow_executor = dg.ExecutorDefinition(
    name="pgflow",
    config_schema=dg.multiprocess_executor.config_schema.as_field(),
    requirements=dg.multiple_process_executor_requirements(),
    executor_creation_fn=_create,
)
