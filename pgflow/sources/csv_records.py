"""Postgres' CSV COPY stream cut into batches of whole records.

Record boundaries: Postgres' CSV quotes any field holding a quote, a newline or a comma and
doubles the quotes inside, so a newline ends a record exactly when the number of quote
characters before it is even. A batch is cut at the last such newline; the rest starts the
next one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from psycopg.abc import Buffer

from pgflow.sources.arrow_errors import ArrowReadError


def csv_batches(chunks: Iterable[Buffer], batch_rows: int, batch_bytes: int) -> Iterator[bytes]:
    """Regroup CSV COPY chunks into runs of whole records: ~batch_rows rows, ~batch_bytes.

    Postgres sends each row of a COPY TO as one message, which psycopg yields as one chunk,
    so chunks count rows. Cuts are made at record boundaries found in the data, so they stay
    right whatever the chunks hold; a chunk of several rows only makes its batch longer.
    """
    pending = bytearray()  # appending copies the chunk: psycopg's buffer is freed at once
    count = 0
    limit = batch_bytes
    for chunk in chunks:
        pending += chunk
        count += 1
        if count < batch_rows and len(pending) < limit:
            continue
        cut = complete_records(pending)
        if cut == 0:  # one record larger than the limit: read on, without re-scanning often
            limit = len(pending) * 2
            continue
        with memoryview(pending) as view, view[:cut] as records:
            data = bytes(records)
        del pending[:cut]
        yield data
        count, limit = 0, batch_bytes
    if pending:
        if complete_records(pending) != len(pending):
            raise ArrowReadError("the CSV COPY stream ended inside a record")
        yield bytes(pending)


def complete_records(data: bytes | bytearray) -> int:
    """Length of the longest prefix of `data` that is whole CSV records (0 when none)."""
    end = len(data)
    odd = data.count(b'"') & 1  # quotes in data[:end] are odd: inside a quoted field
    while True:
        newline = data.rfind(b"\n", 0, end)
        if newline < 0:
            return 0
        odd ^= data.count(b'"', newline + 1, end) & 1  # now: quotes before the newline
        if not odd:
            return newline + 1
        end = newline
