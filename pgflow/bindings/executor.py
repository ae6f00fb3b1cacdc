"""The code location's executor: small runs in the run's process, larger ones fanned out.

Dagster's default executor starts a process per step. A pgflow step spends its time waiting
on Postgres, and a fresh step process first re-imports Dagster and pgflow (about 1.5 s), more
than a small incremental load takes. So a run of one pgflow asset and its checks executes in
the run's own process, and a run of more assets (a group schedule, a UI selection) gets a
process per step, so their loads overlap as with Dagster's default. Run config chooses as the
multiprocess executor's does (`execution: {config: {max_concurrent: 4}}`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg

# One asset step plus its checks step.
IN_PROCESS_MAX_STEPS = 2


class _BySize(dg.Executor):
    def __init__(self, single: dg.Executor, multi: dg.Executor):
        self._single, self._multi = single, multi

    @property
    def retries(self) -> Any:
        return self._multi.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._multi.step_dependency_config

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
        steps = execution_plan.step_keys_to_execute
        chosen = self._single if len(steps) <= IN_PROCESS_MAX_STEPS else self._multi
        return chosen.execute(plan_context, execution_plan)


@dg.executor(
    name="pgflow",
    config_schema=dg.multiprocess_executor.config_schema,
    requirements=dg.multiple_process_executor_requirements(),
)
def pgflow_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    multi = dg.multiprocess_executor.executor_creation_fn(init_context)  # type: ignore[misc]
    in_process_config = {"retries": init_context.executor_config.get("retries", {"enabled": {}})}
    single = dg.in_process_executor.executor_creation_fn(  # type: ignore[misc]
        init_context._replace(executor_config=in_process_config)
    )
    return _BySize(single, multi)
