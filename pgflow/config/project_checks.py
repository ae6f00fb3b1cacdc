"""Checks across the files of a project: what each pipeline must not share with another (CDC
slot groups: cdc_groups.py), the connections they use, and the groups declared for them."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pgflow.config.cdc_groups import group_problems
from pgflow.config.environment import env_var_for
from pgflow.config.errors import SpecProblem
from pgflow.config.model import ConnectionSpec, GroupSpec, PipelineSpec
from pgflow.config.naming import key_problems


def check_project(
    pipelines: list[PipelineSpec],
    declared: dict[str, ConnectionSpec],
    environ: Mapping[str, str],
) -> list[SpecProblem]:
    """Targets, asset keys and names each pipeline needs for itself, the rules of CDC slot
    groups, and the connections every pipeline names."""
    problems = _check_unique(
        pipelines, lambda p: p.sink.target_id, "sink", "writes the same target as"
    )
    problems.extend(key_problems(pipelines))
    problems.extend(_check_unique(pipelines, lambda p: p.name, "name", "has the same name as"))
    problems.extend(group_problems(pipelines))
    problems.extend(_check_connections(pipelines, declared, environ))
    return problems


def _check_unique(
    pipelines: list[PipelineSpec], key: Callable[[PipelineSpec], str], field: str, verb: str
) -> list[SpecProblem]:
    first_by_key: dict[str, PipelineSpec] = {}
    problems = []
    for pipeline in pipelines:
        value = key(pipeline)
        first = first_by_key.setdefault(value, pipeline)
        if first is not pipeline:
            problems.append(
                SpecProblem(
                    pipeline.file,
                    pipeline.name,
                    field,
                    f"{verb} pipeline '{first.name}' in {first.file} ({value}); "
                    "each pipeline needs its own",
                )
            )
    return problems


def _check_connections(
    pipelines: list[PipelineSpec],
    declared: dict[str, ConnectionSpec],
    environ: Mapping[str, str],
) -> list[SpecProblem]:
    problems = []
    for pipeline in pipelines:
        for side, endpoint in (("source", pipeline.source), ("sink", pipeline.sink)):
            message = _unknown_connection(
                endpoint.connection_id, endpoint.connection_type, declared, environ
            )
            if message:
                field = f"{side}.connection_id"
                problems.append(SpecProblem(pipeline.file, pipeline.name, field, message))
    return problems


def _unknown_connection(
    connection_id: str | None,
    connection_type: str,
    declared: dict[str, ConnectionSpec],
    environ: Mapping[str, str],
) -> str | None:
    """A connection is known when declared under `connections:` or configured for its type."""
    if connection_id is None:
        return None
    if connection_id in declared:
        spec = declared[connection_id]
        if spec.type != connection_type:
            return (
                f"connection '{connection_id}' is declared with type {spec.type} in {spec.file}, "
                f"but used here with connection_type {connection_type}; make them agree"
            )
        return None
    if connection_type == "env" and environ.get(env_var_for(connection_id)):
        return None
    if connection_type == "vault" and environ.get("VAULT_ADDR"):
        return None
    if connection_type == "vault":
        return (
            f"connection '{connection_id}' is unknown: set VAULT_ADDR (and VAULT_TOKEN or "
            f"VAULT_ROLE_ID/VAULT_SECRET_ID) or declare it under `connections:`"
        )
    return (
        f"connection '{connection_id}' is unknown: set {env_var_for(connection_id)} to a "
        f"libpq URI or declare it under `connections:`"
    )


def merge_groups(groups: dict[str, GroupSpec], found: dict[str, GroupSpec]) -> list[SpecProblem]:
    """Add the groups one file declares; a group declared again is a problem."""
    problems = []
    for name, group in found.items():
        first = groups.setdefault(name, group)
        if first is not group:
            problems.append(
                SpecProblem(
                    group.file,
                    None,
                    f"groups.{name}",
                    f"is also declared in {first.file}; declare each group once",
                )
            )
    return problems


def check_groups(groups: dict[str, GroupSpec], pipelines: list[PipelineSpec]) -> list[SpecProblem]:
    """Every declared group holds a pipeline (else its name is likely a typo)."""
    used = {p.group for p in pipelines}
    problems = []
    for name, group in groups.items():
        if name not in used:
            known = ", ".join(sorted(used)) or "none yet"
            problems.append(
                SpecProblem(
                    group.file,
                    None,
                    f"groups.{name}",
                    f"no pipeline is in group '{name}' (groups in use: {known}); "
                    "fix the name or set `group:` on the pipelines",
                )
            )
    return problems
