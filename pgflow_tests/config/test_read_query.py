"""`source.query` in specs: read with its trailing semicolons gone; every combination that
cannot work is refused at load naming the file, the pipeline and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgflow.config.loader import load_project
from pgflow.config.read_query import strip_query
from pgflow_tests.config.specs import DROP, ENV, MERGE_SINK, load_one, only_problem, pipeline, write

QUERY = 'SELECT o.id, c."Näme" FROM orders o JOIN "Kunden" c USING (cid)'
BY_QUERY = {"table": DROP, "query": QUERY}


def test_a_query_source_is_read_without_its_trailing_semicolons(tmp_path: Path) -> None:
    spec = pipeline(source={**BY_QUERY, "query": f"  {QUERY} ;\n; \n"}, sink=MERGE_SINK)
    loaded = load_one(write(tmp_path / "p.yaml", spec))
    assert loaded.source.query == QUERY
    assert loaded.source.table is None
    assert loaded.asset_key == ("landing", "orders")  # named by the target, as for a table
    assert loaded.name == "landing_orders"


def test_a_query_pipeline_has_no_source_asset_key_to_collide(tmp_path: Path) -> None:
    specs = [
        pipeline(source=BY_QUERY),
        pipeline(name="second", source=BY_QUERY, sink={"table": {"name": "orders_2"}}),
    ]
    project = load_project(write(tmp_path / "p.yaml", {"pipelines": specs}), environ=ENV)
    assert [p.source.query for p in project.pipelines] == [QUERY, QUERY]


WHERE = "{file}: pipeline 'landing_orders': "


@pytest.mark.parametrize(
    ("source", "sink", "field", "message"),
    [
        (
            {"query": QUERY},
            {},
            "source.query",
            "and source.table are both given; a source reads one table or one query: remove "
            "one of them",
        ),
        (
            {"table": DROP},
            {},
            "source.table",
            "is required (a mapping), or give source.query (one SELECT)",
        ),
        ({**BY_QUERY, "query": " ; "}, {}, "source.query", "is empty; give one SELECT"),
        ({**BY_QUERY, "query": ["SELECT 1"]}, {}, "source.query", "must be a string, got list"),
        (
            {**BY_QUERY, "options": {"incremental_strategy": "cdc"}},
            MERGE_SINK,
            "source.options.incremental_strategy",
            "cdc reads a table's changes; a query cannot be replicated",
        ),
        (
            {**BY_QUERY, "options": {"incremental_strategy": "xmin"}},
            MERGE_SINK,
            "source.options.incremental_strategy",
            "xmin is a table's system column; a query has none",
        ),
        (
            BY_QUERY,
            {"strategy": {"mode": "full_refresh", "method": "exchange", "parallelism": 2}},
            "sink.strategy.parallelism",
            "splits a table's pages between connections; a query is read by one",
        ),
        (
            {**BY_QUERY, "type": "delta", "connection_id": DROP, "path": "/lake/x"},
            MERGE_SINK,
            "source.query",
            "applies to postgres sources only",
        ),
    ],
    ids=["both", "neither", "empty", "not-text", "cdc", "xmin", "parallel", "delta-source"],
)
def test_what_a_query_source_cannot_do_is_refused_at_load(
    tmp_path: Path, source: dict[str, Any], sink: dict[str, Any], field: str, message: str
) -> None:
    file = write(tmp_path / "p.yaml", pipeline(source=source, sink=sink))
    problem = only_problem(file)
    assert problem.startswith(f"{WHERE.format(file=file)}field '{field}': {message}"), problem


def test_keep_last_into_delta_is_refused_for_a_query(tmp_path: Path) -> None:
    sink = {
        "type": "delta",
        "connection_id": DROP,
        "table": DROP,
        "path": "/lake/orders",
        "strategy": {**MERGE_SINK["strategy"], "duplicate_policy": "keep_last"},
    }
    file = write(tmp_path / "p.yaml", pipeline(name="orders", source=BY_QUERY, sink=sink))
    problem = only_problem(file)
    assert "field 'sink.strategy.duplicate_policy': keep_last into a Delta table" in problem


def test_a_keyed_mode_needs_a_unique_key_as_for_a_table(tmp_path: Path) -> None:
    sink = {"strategy": {"mode": "incremental_merge"}}
    file = write(tmp_path / "p.yaml", pipeline(source=BY_QUERY, sink=sink))
    expected = "field 'sink.strategy.unique_key': is required for mode incremental_merge"
    assert expected in only_problem(file)


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("SELECT 1;  -- the end", "SELECT 1"),
        ("SELECT 1 ; /* a /* nested */ ; */ ;\n", "SELECT 1"),
        ("SELECT ';--' AS x -- c", "SELECT ';--' AS x"),
        ("SELECT $$ ; -- $$ ;", "SELECT $$ ; -- $$"),
        ('SELECT $a$ x $a$ AS "a;--" ;;', 'SELECT $a$ x $a$ AS "a;--"'),
        ("SELECT E'it\\'s;' ; -- x", "SELECT E'it\\'s;'"),
        ("SELECT 1; SELECT 2; -- Postgres refuses two", "SELECT 1; SELECT 2"),
    ],
)
def test_a_query_ends_at_its_last_code(written: str, read: str) -> None:
    assert strip_query(written) == read
