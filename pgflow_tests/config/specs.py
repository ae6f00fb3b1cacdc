"""Spec files for the config tests: a valid pipeline to vary, and loads that return its
problems as text.

Specs are written into `tmp_path`; every load passes an explicit `environ` so nothing depends on
the process environment.
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgflow.config.errors import SpecError
from pgflow.config.loader import load_project
from pgflow.config.model import PipelineSpec

ENV = {
    "PGFLOW_CONN_SHOP": "postgresql://app@shop-db:5432/shop",
    "PGFLOW_CONN_WAREHOUSE": "postgresql://etl@dwh:5432/warehouse",
}

VAULT_ENV = {**ENV, "VAULT_ADDR": "https://vault.example.com:8200"}

PIPELINE_KEYS = (
    "asset_key, checks, description, freshness, group, name, owners, partitions, schedule, "
    "sink, source, tags"
)
DROP = object()  # in overrides: remove the key

MERGE_SINK = {"strategy": {"mode": "incremental_merge", "unique_key": ["id"]}}

DELTA_SOURCE = {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/lake/orders"}


def pipeline(**overrides: Any) -> dict[str, Any]:
    """A valid full_refresh pipeline (shop public.orders -> warehouse landing.orders)."""
    base: dict[str, Any] = {
        "source": {
            "type": "postgres",
            "connection_id": "shop",
            "table": {"schema": "public", "name": "orders"},
        },
        "sink": {
            "type": "postgres",
            "connection_id": "warehouse",
            "table": {"schema": "landing", "name": "orders"},
            "strategy": {"mode": "full_refresh"},
        },
    }
    return _merge(base, overrides)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is DROP:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def write(path: Path, content: str | dict[str, Any] | list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(textwrap.dedent(content))
    else:
        path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def problems_of(path: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SpecError) as exc:
        load_project(path, environ=ENV if environ is None else environ)
    assert exc.value.problems, "a SpecError always carries its problems"
    return [str(problem) for problem in exc.value.problems]


def only_problem(path: Path, environ: dict[str, str] | None = None) -> str:
    problems = problems_of(path, environ)
    assert len(problems) == 1, problems
    return problems[0]


def load_one(path: Path, environ: dict[str, str] | None = None) -> PipelineSpec:
    project = load_project(path, environ=ENV if environ is None else environ)
    assert len(project.pipelines) == 1
    return project.pipelines[0]
