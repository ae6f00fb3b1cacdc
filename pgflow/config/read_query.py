"""`source.query`: one SELECT read instead of `source.table` (Sling's custom SQL streams, dlt's
query adapter). What needs no connection is checked here, when the specs load; Postgres
checks the rest (one statement, read only, its output columns) before a run writes anything.
"""

from __future__ import annotations

from pgflow.config.model import SinkSpec, SourceSpec
from pgflow.config.reader import Report, Section

EXAMPLE = 'e.g. query: "SELECT o.id, o.total, c.name FROM orders o JOIN customers c USING (cid)"'


def read_query(section: Section, source_type: str | None) -> str | None:
    """`query:`, without trailing semicolons (it is read as a subquery); None when absent or
    not valid (reported). Exactly one of `table` and `query`."""
    query = section.text("query")
    if query is None:
        return None
    query = strip_query(query)
    if not query:
        section.problem("query", f"is empty; give one SELECT statement, {EXAMPLE}")
        return None
    if source_type == "delta":
        section.problem("query", "applies to postgres sources only; a delta source reads `path`")
        return None
    if section.has("table"):
        section.problem(
            "query",
            "and source.table are both given; a source reads one table or one query: "
            "remove one of them",
        )
        return None
    return query


def strip_query(query: str) -> str:
    """`query` without the blanks and semicolons that end it (a statement's, not a subquery's)."""
    stripped = query.strip()
    while stripped.endswith(";"):
        stripped = stripped[:-1].rstrip()
    return stripped


def check_query_source(source: SourceSpec, sink: SinkSpec, report: Report) -> None:
    """What a query cannot do that a table can: be replicated, or be read by xmin or in
    parallel slices of its pages."""
    if source.query is None:
        return
    strategy = source.options.incremental_strategy
    if strategy == "cdc":
        report(
            "source.options.incremental_strategy",
            "cdc reads a table's changes; a query cannot be replicated: use full, or column "
            "with an output column of the query as incremental_column, or read source.table",
        )
    if strategy == "xmin":
        report(
            "source.options.incremental_strategy",
            "xmin is a table's system column; a query has none: use full, or column with an "
            "output column of the query as incremental_column",
        )
    if sink.type == "delta" and sink.strategy.duplicate_policy == "keep_last":
        report(
            "sink.strategy.duplicate_policy",
            "keep_last into a Delta table keeps the row its table wrote last (by xmin); a "
            "query's rows have no xmin: use fail, or a postgres sink (which keeps the last "
            "row read)",
        )
    if sink.strategy.parallelism > 1:
        report(
            "sink.strategy.parallelism",
            "splits a table's pages between connections; a query is read by one: remove it",
        )
