"""The identifier rule: any text Postgres keeps as it is, nothing it would cut or hide."""

from __future__ import annotations

import pytest

from pgflow.config.identifiers import identifier_problem, read_identifier, read_identifiers
from pgflow.config.reader import Section


@pytest.mark.parametrize("name", ['Mixed "Case"', "a;b", "訂單", "x" * 63, "é" * 31])
def test_quoted_names_of_any_text_are_identifiers(name: str) -> None:
    assert identifier_problem(name) is None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty; name a table, schema or column"),
        ("  ", "is empty; name a table, schema or column"),
        ("a\x00b", "'a\\x00b' holds the control character U+0000; write the name without"),
        ("evil\u202etxt", "holds the control character U+202E"),
        ("x" * 64, "'" + "x" * 64 + "' is 64 bytes long; Postgres cuts names after 63 bytes"),
        ("é" * 32, "is 64 bytes long"),
    ],
)
def test_names_postgres_would_change_are_refused(name: str, problem: str) -> None:
    found = identifier_problem(name)
    assert found is not None and problem in found, found


def test_readers_report_the_field_and_keep_only_valid_names() -> None:
    problems: list[str] = []
    section = Section(
        {"column": "ok", "bad": "a\nb", "keys": ["id", ""], "one": "id"},
        "sink.strategy",
        lambda field, message: problems.append(f"{field}: {message}"),
    )
    assert read_identifier(section, "column") == "ok"
    assert read_identifier(section, "bad") is None
    assert read_identifier(section, "missing") is None
    assert read_identifiers(section, "keys") is None
    assert read_identifiers(section, "one") == ("id",)
    assert [p.split(":")[0] for p in problems] == ["sink.strategy.bad", "sink.strategy.keys"]
