"""sink.options: numeric_as, read for Delta sinks and refused for Postgres ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgflow_tests.config.specs import DROP, load_one, only_problem, pipeline, write


def test_delta_sink_numeric_as_is_read_and_defaults_to_decimal(tmp_path: Path) -> None:
    sink = {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/lake/orders"}
    strategy = {"mode": "full_refresh"}
    as_text = {**sink, "strategy": strategy, "options": {"numeric_as": "string"}}
    assert load_one(write(tmp_path / "a.yaml", pipeline(sink=as_text))).sink.numeric_as == "string"
    plain = {**sink, "strategy": strategy}
    assert load_one(write(tmp_path / "b" / "b.yaml", pipeline(sink=plain))).sink.numeric_as == (
        "decimal"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"numeric_as": "float"},
            "field 'sink.options.numeric_as': 'float' is not allowed; use one of: decimal, string",
        ),
        (
            {"numeric_as": "string"},
            "field 'sink.options.numeric_as': applies to Delta sinks only (a Postgres target "
            "keeps numeric as numeric); remove it",
        ),
        ({"numeric_az": "string"}, "sink.options.numeric_az"),
    ],
)
def test_sink_options_are_checked(tmp_path: Path, options: dict, message: str) -> None:
    sink = {"options": options}
    if options.get("numeric_as") == "float":
        sink |= {"type": "delta", "connection_id": DROP, "table": DROP, "path": "/lake/orders"}
    spec = write(tmp_path / "p.yaml", pipeline(sink=sink))
    assert message in only_problem(spec)
