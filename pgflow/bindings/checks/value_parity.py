"""The `value_parity` asset check: every value of the target equals the source's.

Both databases hash their own rows (pgflow.sources.value_hash): one order-independent sum of
64-bit row hashes per key bucket, over the source's columns that the target has with the same
type, in pinned text settings. Nothing but 256 (count, sum) pairs leaves either database.

When is a difference conclusive? The check compares the live source with the target:
- after a load that made the target one consistent snapshot (`pgflow/source_rows_exact`) and
  while the source still has that many rows, a difference is an ERROR: the target's values
  are wrong unless a source row was updated since the load (the description says so);
- otherwise (incremental, CDC, or the source's count moved on) a difference is a WARN: rows
  changed at the source since the last load differ too until the next load applies them.

Postgres -> Postgres only for now: Delta targets and sources are not offered the check. A
source query (`source.query`) is hashed as `(<query>) AS q`, read only like its loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
from psycopg import errors

from pgflow.bindings.checks import context
from pgflow.bindings.checks.comparison import (
    both_sides,
    counts_comparable,
    last_load,
    source_not_found,
)
from pgflow.bindings.checks.context import result, source_name, target_name
from pgflow.bindings.checks.names import VALUE_PARITY
from pgflow.config.model import PipelineSpec
from pgflow.config.naming import quote_name
from pgflow.sources.base import SourceConfigError
from pgflow.sources.catalog import TableInfo, TableNotFound, describe_table
from pgflow.sources.query import describe_query
from pgflow.sources.query_shape import as_subquery
from pgflow.sources.value_hash import BUCKETS, HashQuery, TableHash, bucket_rows, table_hash

EXAMPLE_BUCKETS = 3  # differing buckets searched for the keys behind them
EXAMPLES = 5


def offered(pipeline: PipelineSpec) -> bool:
    """Postgres to Postgres, where the target is meant to hold the source's rows."""
    return (
        pipeline.checks.value_parity.enabled
        and pipeline.source.type == "postgres"
        and pipeline.sink.type == "postgres"
        and counts_comparable(pipeline)
    )


def describe(pipeline: PipelineSpec) -> str:
    sample = pipeline.checks.value_parity.sample
    scope = "every row" if sample >= 1 else f"the rows of {sample:.0%} of the key buckets"
    return (
        f"An order-independent hash of {scope} (each value as text) is equal in the source "
        "and the target. context.ERROR when the last load was a consistent snapshot the source still "
        "matches in count, context.WARN otherwise (the source may have changed since the load)."
    )


@dataclass(frozen=True)
class Plan:
    """What both sides hash, and what is left out."""

    source: HashQuery
    target: HashQuery
    not_compared: tuple[str, ...]  # source columns missing from the target or retyped


def plan(
    pipeline: PipelineSpec, source: TableInfo, target: TableInfo, portable: bool = False
) -> Plan:
    options, strategy = pipeline.source.options, pipeline.sink.strategy
    wanted = [
        c
        for c in source.columns
        if c.name != options.deleted_column
        and (options.include_columns is None or c.name in options.include_columns)
    ]
    same = [c.name for c in wanted if _same_type(c.name, source, target)]
    not_compared = tuple(c.name for c in wanted if c.name not in same)
    key = strategy.unique_key if all(k in same for k in strategy.unique_key) else ()
    sample = pipeline.checks.value_parity.sample
    sampled = max(1, round(sample * BUCKETS)) if key else BUCKETS
    live = options.deleted_column if target.column(options.deleted_column or "") else None
    assert pipeline.sink.table
    query = pipeline.source.query
    relation = as_subquery(query) if query is not None else None
    return Plan(
        HashQuery(source.table, tuple(same), key, None, sampled, portable, relation),
        HashQuery(pipeline.sink.table, tuple(same), key, live, sampled, portable),
        not_compared,
    )


def _same_type(name: str, source: TableInfo, target: TableInfo) -> bool:
    theirs, ours = source.column(name), target.column(name)
    return ours is not None and theirs is not None and ours.type_sql == theirs.type_sql


def check(
    pipeline: PipelineSpec, run: context.CheckRun, instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    loaded = last_load(pipeline, run, instance, VALUE_PARITY)
    if isinstance(loaded, dg.AssetCheckResult):
        return loaded
    try:
        tables = _describe_both(pipeline, run)
    except TableNotFound:
        return source_not_found(pipeline, VALUE_PARITY)
    except SourceConfigError as exc:  # Postgres refused the source query
        text = f"the source cannot be hashed: {exc}"
        return result(pipeline, VALUE_PARITY, False, context.ERROR, text)
    parity = plan(pipeline, *tables, portable=_encodings_differ(run))
    if not parity.source.columns:
        text = (
            f"no column of {source_name(pipeline)} is in {target_name(pipeline)} with the "
            f"same type ({', '.join(parity.not_compared)}): no value to compare; see the "
            "schema check"
        )
        return result(pipeline, VALUE_PARITY, False, context.WARN, text)
    timeout = pipeline.checks.value_parity.timeout.total_seconds()
    try:
        source, target = _both_hashes(run, parity, timeout)
    except errors.QueryCanceled:
        return result(pipeline, VALUE_PARITY, False, context.WARN, _timeout_text(pipeline))
    return _outcome(pipeline, run, parity, source, target, loaded.exact_rows)


def _describe_both(pipeline: PipelineSpec, run: context.CheckRun) -> tuple[TableInfo, TableInfo]:
    source, sink = pipeline.source, pipeline.sink
    assert sink.table
    with run.source().transaction():  # READ ONLY: the checks' connections are
        if source.query is not None:
            theirs = describe_query(run.source(), source.query)
        else:
            assert source.table
            theirs = describe_table(run.source(), source.table)
    with run.target().transaction():
        ours = describe_table(run.target(), sink.table)
    return theirs, ours


def _encodings_differ(run: context.CheckRun) -> bool:
    """Databases of different encodings store the same text as different bytes."""
    found = {c.execute("SHOW server_encoding").fetchone() for c in (run.source(), run.target())}
    return len(found) > 1


def _both_hashes(
    run: context.CheckRun, parity: Plan, timeout: float
) -> tuple[TableHash, TableHash]:
    return both_sides(
        run,
        lambda: table_hash(run.source(), parity.source, timeout),
        lambda: table_hash(run.target(), parity.target, timeout),
        "pgflow-source-hash",
    )


def differing_buckets(source: TableHash, target: TableHash) -> list[int]:
    """Buckets whose row count differs, or whose hash differs where both were hashed."""
    return sorted(
        b
        for b in source.buckets.keys() | target.buckets.keys()
        if source.buckets.get(b, (0, None)) != target.buckets.get(b, (0, None))
    )


def _outcome(
    pipeline: PipelineSpec,
    run: context.CheckRun,
    parity: Plan,
    source: TableHash,
    target: TableHash,
    exact: int | None,
) -> dg.AssetCheckResult:
    differ = differing_buckets(source, target)
    hashed = parity.source.sampled
    examples = _examples(run, parity, differ) if differ else []
    metadata: dict[str, Any] = {
        "source_rows": dg.MetadataValue.int(source.rows),
        "target_rows": dg.MetadataValue.int(target.rows),
        "columns_compared": dg.MetadataValue.int(len(parity.source.columns)),
        "columns_not_compared": dg.MetadataValue.text(", ".join(parity.not_compared)),
        "buckets": dg.MetadataValue.int(BUCKETS),
        "buckets_hashed": dg.MetadataValue.int(hashed),
        "buckets_differing": dg.MetadataValue.int(len(differ)),
        "examples": dg.MetadataValue.json(examples),
        "mode": dg.MetadataValue.text("snapshot" if exact is not None else "live"),
    }
    scope = "every row" if hashed == BUCKETS else f"the rows of {hashed} of {BUCKETS} key buckets"
    columns = f"{len(parity.source.columns)} column(s)"
    skipped = f"; not compared: {', '.join(parity.not_compared)}" if parity.not_compared else ""
    if not differ:
        text = (
            f"{target_name(pipeline)} equals {source_name(pipeline)} in {scope} "
            f"({source.rows:,} rows, {columns}){skipped}"
        )
        return result(pipeline, VALUE_PARITY, True, context.ERROR, text, metadata)
    conclusive = exact is not None and source.rows == exact
    text = (
        f"{target_name(pipeline)} differs from {source_name(pipeline)} in {len(differ)} of "
        f"{BUCKETS} buckets of rows ({scope} hashed, {columns}; {target.rows:,} target rows, "
        f"{source.rows:,} source rows){_examples_text(examples)}{skipped}. "
        + (_conclusive_text(exact) if conclusive else _inconclusive_text(exact, source.rows))
    )
    return result(
        pipeline, VALUE_PARITY, False, context.ERROR if conclusive else context.WARN, text, metadata
    )


def _examples(run: context.CheckRun, parity: Plan, differ: list[int]) -> list[dict[str, str]]:
    """A few keys whose rows differ, from small differing buckets (keyed pipelines only)."""
    if not parity.source.key:
        return []
    key = f"({', '.join(quote_name(k) for k in parity.source.key)})"
    found: list[dict[str, str]] = []
    timeout = run.pipeline.checks.value_parity.timeout.total_seconds()
    for bucket in differ[:EXAMPLE_BUCKETS]:
        theirs = bucket_rows(run.source(), parity.source, bucket, timeout)
        ours = bucket_rows(run.target(), parity.target, bucket, timeout)
        if theirs is None or ours is None:
            continue
        for value in sorted(theirs.keys() | ours.keys()):
            if theirs.get(value) == ours.get(value):
                continue
            how = (
                "missing from the target"
                if value not in ours
                else "not in the source"
                if value not in theirs
                else "values differ"
            )
            found.append({"key": f"{key}={value}", "difference": how})
            if len(found) == EXAMPLES:
                return found
    return found


def _examples_text(examples: list[dict[str, str]]) -> str:
    if not examples:
        return ""
    return ", e.g. " + "; ".join(f"{e['key']} {e['difference']}" for e in examples)


def _conclusive_text(exact: int | None) -> str:
    return (
        f"The last load made the target a consistent snapshot of {exact:,} source rows and "
        "the source still has as many: the target's values are wrong, unless source rows were "
        "updated since that load. Fix: materialize the asset with run config reset: true"
    )


def _inconclusive_text(exact: int | None, source_rows: int) -> str:
    since = (
        f"the source changed since the last load (its snapshot had {exact:,} rows, now "
        f"{source_rows:,})"
        if exact is not None
        else "the target holds the source as of the last load"
    )
    return (
        f"Not conclusive: {since}, and rows changed at the source since then differ too. "
        "Materialize the asset and run the check again; if it still differs, rebuild the "
        "target with run config reset: true"
    )


def _timeout_text(pipeline: PipelineSpec) -> str:
    spec = pipeline.checks.value_parity
    return (
        f"timed out after {spec.timeout.total_seconds():g} s (checks.value_parity.timeout): "
        "the check could not hash this table in time. Raise checks.value_parity.timeout, or "
        "hash a sample of the key buckets with checks.value_parity.sample (e.g. 0.1)"
    )
