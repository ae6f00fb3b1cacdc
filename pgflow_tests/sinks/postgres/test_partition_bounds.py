"""partition_bounds.bound_datums: a partition's bound expression read as constants."""

from __future__ import annotations

import pytest

from pgflow.sinks.postgres.partition_bounds import bound_datums


@pytest.mark.parametrize(
    ("bound", "strategy_code", "datums"),
    [
        (
            "FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')",
            "r",
            [("lo", "'2024-01-01'"), ("hi", "'2024-02-01'")],
        ),
        ("FOR VALUES FROM (MINVALUE) TO ('-5')", "r", [("lo", None), ("hi", "'-5'")]),
        ("FOR VALUES FROM (10) TO (MAXVALUE)", "r", [("lo", "10"), ("hi", None)]),
        (
            "FOR VALUES IN ('a', 'it''s', NULL, 'x) TO (y')",
            "l",
            [("v", "'a'"), ("v", "'it''s'"), ("v", None), ("v", "'x) TO (y'")],
        ),
        ("FOR VALUES FROM ('a', 1) TO ('b', 2)", "r", None),
        ("FOR VALUES IN ('unterminated)", "l", None),
        ("DEFAULT", "l", None),
    ],
)
def test_partition_bounds_are_read_as_constants(bound, strategy_code, datums):
    assert bound_datums(bound, strategy_code) == datums
