"""Valid specs that ask for what this version cannot run yet are refused, naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgflow_tests.config.specs import DROP, only_problem, pipeline, write


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        pytest.param(
            {
                "sink": {
                    "type": "delta",
                    "connection_id": DROP,
                    "table": DROP,
                    "path": "s3://lake/landing/orders/",
                    "strategy": {
                        "mode": "incremental_merge",
                        "unique_key": ["id"],
                        "merge_policy": "upsert",
                    },
                },
            },
            "sink.type",
            "delta sink with mode 'incremental_merge' (upsert) is not supported yet",
            id="delta-upsert",
        ),
    ],
)
def test_valid_but_not_built_yet_is_refused_naming_the_field(
    tmp_path: Path, overrides: dict[str, Any], field: str, message: str
) -> None:
    spec = write(tmp_path / "p.yaml", pipeline(**overrides))
    problem = only_problem(spec)
    assert f"{spec}: pipeline '" in problem
    assert f"field '{field}': " in problem
    assert message in problem
