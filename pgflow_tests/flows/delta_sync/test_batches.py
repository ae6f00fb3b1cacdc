"""Keys a batch cannot apply (repeated, NULL, absent) fail with a message that says so."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from deltalake import write_deltalake

from pgflow.config.model import TableName
from pgflow.flows.delta_sync.errors import DeltaSyncError, DuplicateKeyError
from pgflow.flows.delta_sync.run import sync_delta
from pgflow_tests.flows.delta_sync.support import sync


def test_repeated_or_null_keys_fail_clearly(tmp_path: Path, sink_uri: str) -> None:
    path = str(tmp_path / "dups")
    write_deltalake(path, pl.DataFrame({"id": [1, 2, 2], "v": ["a", "b", "c"]}))
    with pytest.raises(DuplicateKeyError, match=r"repeats the key \(id\)"):
        sync(sink_uri, path)
    nulls = str(tmp_path / "nulls")
    write_deltalake(nulls, pl.DataFrame({"id": [1, None], "v": ["a", "b"]}))
    with pytest.raises(DeltaSyncError, match="NULL in the key"):
        sync_delta(sink_uri, nulls, TableName("gold", "n"), ("id",), pipeline="n")
    with pytest.raises(DeltaSyncError, match="not in Delta table"):
        sync_delta(sink_uri, nulls, TableName("gold", "n"), ("nope",), pipeline="n")
