"""The COPY text line of a change: the fast path (plain text and NULLs) must produce exactly
what escaping every value would, and step aside whenever a value needs escaping."""

from __future__ import annotations

import pytest

from pgflow.flows.cdc.copy_lines import copy_escaped, plain_line
from pgflow.sources.pgoutput_messages import UNCHANGED


def escaped(values: tuple) -> str:
    return "\t".join("\\N" if v is None else copy_escaped(v) for v in values)


@pytest.mark.parametrize(
    "values",
    [
        ("1", "new", None, "{a,b}", '{"k": 1}'),
        (None, None),
        ("",),
        ("é ü ☃",),
    ],
)
def test_plain_values_take_the_fast_path(values: tuple) -> None:
    assert plain_line(values) == escaped(values)


@pytest.mark.parametrize(
    "values",
    [
        ("a\\N", None),  # a backslash next to a NULL: the counts must not cancel out
        ("\\N",),  # the text \N is not NULL
        ("a\tb", "c"),
        ("x\ny",),
        ("x\ry",),
        ("C:\\dir",),
        (b"\x00", "a"),
        ("a", UNCHANGED),
    ],
)
def test_values_that_need_escaping_or_are_not_text_step_aside(values: tuple) -> None:
    assert plain_line(values) is None
