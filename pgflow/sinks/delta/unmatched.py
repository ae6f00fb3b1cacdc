"""The read's keys that the Delta table lacks: counted before `update` or `delete` writes.

delta-rs' merge reports rows updated or deleted, not source rows that matched nothing, and
it has no dry run, so the count is an anti-join made before the merge:

1. the read's distinct keys, read again from Postgres in the read's snapshot (`SELECT
   DISTINCT <key>` over the read's own filter, carried in the read's Arrow forms), are held
   in memory: keys only, never whole rows;
2. the table's key columns are streamed from DataFusion one batch at a time and semi-joined
   with them (null-safe, like the merge predicate), keeping the keys found;
3. the read's keys not found are the unmatched ones: their count and a sorted sample.

Memory is bounded by the read's distinct keys (twice, at most) plus one batch of the table's
keys, not by the table or the rows read. Nothing is written, so `on_unmatched: fail` stops
the load before its one commit.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import polars as pl
from arro3.core import Table
from deltalake import DeltaTable, QueryBuilder
from psycopg import sql

from pgflow.sinks.delta.context import DeltaContext
from pgflow.sinks.delta.keys import quote
from pgflow.sinks.delta.table import SchemaChanged
from pgflow.sources.arrow import ArrowRead

SAMPLE_KEYS = 5
# Distinct keys of the read held at once (bigint keys: ~8 MB a million, plus the join's hash
# table); a read with more is checked chunk by chunk, each chunk one scan of the table's keys.
KEY_CHUNK_ROWS = 1_000_000
BATCH_ROWS = 100_000


@dataclass(frozen=True)
class Unmatched:
    count: int  # distinct keys of the read the table does not hold
    sample: tuple[str, ...]  # up to SAMPLE_KEYS of them, sorted, as text
    read_keys: int  # distinct keys of the read

    def described(self) -> str:
        more = ", ..." if self.count > len(self.sample) else ""
        return f"{self.count:,} key(s) read ({', '.join(self.sample)}{more})"


def unmatched_keys(ctx: DeltaContext) -> Unmatched:
    """The read's distinct keys the table at `ctx.table` lacks (see the module doc)."""
    assert ctx.table is not None, "update and delete refuse a missing table before reading"
    have = {f.name for f in ctx.table.schema().fields}
    lacking = [k for k in ctx.strategy.unique_key if k not in have]
    if lacking:
        raise SchemaChanged(
            f"the Delta table at {ctx.path} has no column(s) {', '.join(lacking)} of "
            f"unique_key, which mode {ctx.strategy.mode} matches rows by; nothing was written. "
            "Correct sink.strategy.unique_key or sink.path"
        )
    count = read = 0
    samples: list[pl.DataFrame] = []
    chunks = _read_key_chunks(ctx)
    try:
        for chunk in chunks:
            found = _found_keys(ctx.table, chunk)
            missing = chunk.join(found, on=chunk.columns, how="anti", nulls_equal=True)
            count, read = count + missing.height, read + chunk.height
            samples.append(missing.sort(missing.columns).head(SAMPLE_KEYS))
    finally:
        chunks.close()  # a failure mid-way ends the keys' COPY now, not when collected
    if not count:
        return Unmatched(0, (), read)
    first = pl.concat(samples).sort(samples[0].columns).head(SAMPLE_KEYS)
    return Unmatched(count, tuple(_as_text(row) for row in first.iter_rows()), read)


def _read_key_chunks(ctx: DeltaContext) -> Generator[pl.DataFrame, None, None]:
    """The read's distinct keys, typed as the read carries them (its numeric forms too), in
    chunks of up to KEY_CHUNK_ROWS (DISTINCT: no key is in two chunks)."""
    key = ctx.strategy.unique_key
    keys = ArrowRead(ctx.source, key, batch_rows=min(KEY_CHUNK_ROWS, BATCH_ROWS), prefetch=0)
    keys.use_columns([c for name in key for c in ctx.read.columns if c.name == name])
    # The read's own filter (cursor range, boundary rows skipped), in its snapshot.
    keys.select = sql.SQL("SELECT DISTINCT * FROM ({}) AS k").format(
        ctx.source.select_query(keys.expressions)
    )
    held: list[pl.DataFrame] = []
    try:
        for frame in keys.frames():
            held.append(frame)
            if sum(f.height for f in held) >= KEY_CHUNK_ROWS:
                yield pl.concat(held)
                held = []
    finally:
        keys.close()
    if held:
        yield pl.concat(held)


def _found_keys(table: DeltaTable, read_keys: pl.DataFrame) -> pl.DataFrame:
    """The read's keys the table holds, the table's key columns streamed batch by batch."""
    names = read_keys.columns
    query = f"SELECT {', '.join(quote(n) for n in names)} FROM target"
    stream = QueryBuilder().register("target", table).execute(query)
    _check_key_types(pl.DataFrame(Table.from_batches([], schema=stream.schema)).schema, read_keys)
    found: list[pl.DataFrame] = []
    for batch in stream:
        keys = pl.DataFrame(batch).cast(read_keys.schema)
        hit = keys.join(read_keys, on=names, how="semi", nulls_equal=True)
        if hit.height:
            found.append(hit.unique())
    if not found:
        return read_keys.clear()
    return pl.concat(found).unique()


def _check_key_types(table: pl.Schema, read_keys: pl.DataFrame) -> None:
    """Refuse key columns of another kind in the table: DataFusion would coerce them (a date
    compared with a bigint) and silently match nothing. Numbers of any width match numbers."""
    differ = [
        f"{name} ({table[name]} in the table, {dtype} read)"
        for name, dtype in read_keys.schema.items()
        if _kind(table[name]) != _kind(dtype)
    ]
    if differ:
        raise SchemaChanged(
            f"unique_key column(s) {', '.join(differ)} are not of one kind, so no key would "
            "match; nothing was written. Run the loading pipeline with reset to retype the "
            "table, or correct sink.strategy.unique_key"
        )


def _kind(dtype: pl.DataType) -> object:
    return "number" if dtype.is_numeric() else dtype.base_type()


def _as_text(row: tuple[object, ...]) -> str:
    values = ["NULL" if v is None else str(v) for v in row]
    return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"
