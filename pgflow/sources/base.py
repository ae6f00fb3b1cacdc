"""The contract between sources and sinks: a table shape plus a COPY byte stream."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, Protocol

from pgflow.sources.catalog import TableInfo

CopyFormat = Literal["binary", "text"]


class TableSource(Protocol):
    """One consistent read of a table, streamed as Postgres COPY data."""

    @property
    def info(self) -> TableInfo: ...

    def copy_out(self, columns: Sequence[str], fmt: CopyFormat) -> Iterator[bytes]:
        """COPY data for `columns` in `fmt`, in chunks; never the whole table at once."""
        ...
