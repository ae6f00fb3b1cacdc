"""SpecProblem and SpecError: the text that names the file, pipeline and field to fix."""

from __future__ import annotations

from pathlib import Path

from pgflow.config.errors import SpecError, SpecProblem


def test_spec_problem_and_error_text() -> None:
    file = Path("pipelines/shop.yaml")
    assert str(SpecProblem(file, None, None, "is not valid YAML")) == (
        "pipelines/shop.yaml: is not valid YAML"
    )
    assert str(SpecProblem(file, "orders", "sink.type", "bad")) == (
        "pipelines/shop.yaml: pipeline 'orders': field 'sink.type': bad"
    )
    assert str(SpecProblem(file, None, "pipelines[2]", "bad")) == (
        "pipelines/shop.yaml: field 'pipelines[2]': bad"
    )
    error = SpecError([SpecProblem(file, "orders", "name", "bad")])
    assert isinstance(error, ValueError)
    assert str(error) == (
        "pgflow found 1 problem in the pipeline specs:\n"
        "  - pipelines/shop.yaml: pipeline 'orders': field 'name': bad"
    )
