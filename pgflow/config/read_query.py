"""`source.query`: one SELECT read instead of `source.table` (Sling's custom SQL streams, dlt's
query adapter). What needs no connection is checked here, when the specs load; Postgres
checks the rest (one statement, read only, its output columns) before a run writes anything.
"""

from __future__ import annotations

import re

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
    """`query` up to its last character of code: without the blanks, comments and semicolons
    that end it (a statement's end; a subquery's must not have them)."""
    return query[: _code_end(query)].strip()


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$")


def _code_end(query: str) -> int:
    """The index after the last character that is code, not a blank, a comment or `;`.
    String literals, quoted identifiers and dollar quotes are code, whatever they hold."""
    i, end, n = 0, 0, len(query)
    while i < n:
        if query.startswith("--", i):
            newline = query.find("\n", i)
            i = n if newline < 0 else newline + 1
        elif query.startswith("/*", i):
            i = _block_comment_end(query, i)
        elif query[i] in "'\"":
            i = end = _quoted_end(query, i)
        elif (tag := _DOLLAR_TAG.match(query, i)) and not _in_word(query, i):
            close = query.find(tag.group(), tag.end())
            i = end = n if close < 0 else close + len(tag.group())
        else:
            if not query[i].isspace() and query[i] != ";":
                end = i + 1
            i += 1
    return end


def _block_comment_end(query: str, i: int) -> int:
    depth, i = 1, i + 2  # Postgres' block comments nest
    while i < len(query) and depth:
        step = query[i : i + 2]
        depth += 1 if step == "/*" else -1 if step == "*/" else 0
        i += 2 if step in ("/*", "*/") else 1
    return i


def _quoted_end(query: str, i: int) -> int:
    quote = query[i]
    escapes = quote == "'" and i > 0 and query[i - 1] in "eE" and not _in_word(query, i - 1)
    j = i + 1
    while j < len(query):
        if escapes and query[j] == "\\":
            j += 2
        elif query[j] == quote and query.startswith(quote * 2, j):
            j += 2  # a doubled quote stands for itself
        elif query[j] == quote:
            return j + 1
        else:
            j += 1
    return len(query)


def _in_word(query: str, i: int) -> bool:
    return i > 0 and (query[i - 1].isalnum() or query[i - 1] in "_$")


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
