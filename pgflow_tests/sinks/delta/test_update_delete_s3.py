"""mode update and mode delete into a Delta table on S3 (the local moto server): the same
rows, counts and one commit per run as on a local disk; a missing table refused."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec
from pgflow.flows.delta_load import MissingDeltaTable
from pgflow.sinks.delta import scan_delta_table
from pgflow.sinks.postgres.update import UnmatchedKeys
from pgflow_tests.pg import execute
from pgflow_tests.s3_server import S3Delta
from pgflow_tests.sinks.delta.conftest import run_delta
from pgflow_tests.sinks.delta.test_update_delete import (
    DELETE,
    KEY,
    MERGE,
    SOURCE,
    UPDATE,
    by_cursor,
)


def test_update_and_delete_on_s3(source_uri: str, s3_delta: S3Delta) -> None:
    execute(source_uri, SOURCE)
    uri, options = s3_delta.uri("lake/Produkte ü"), s3_delta.storage_options
    run_delta(source_uri, uri, MERGE, table="base", pipeline="base", storage_options=options)
    fail = StrategySpec(mode="update", unique_key=KEY, on_unmatched="fail")
    with pytest.raises(UnmatchedKeys, match=r"1 key\(s\) read \(99\)"):
        run_delta(source_uri, uri, fail, table="changes", pipeline="changes",
                  make_source=by_cursor(), storage_options=options)  # fmt: skip
    assert DeltaTable(uri, storage_options=options).version() == 0

    updated = run_delta(source_uri, uri, UPDATE, table="changes", pipeline="changes",
                        make_source=by_cursor(), storage_options=options)  # fmt: skip
    deleted = run_delta(source_uri, uri, DELETE, table="gone", pipeline="gone",
                        storage_options=options)  # fmt: skip

    assert (updated.rows, updated.strategy_metadata) == (3, {"unmatched_keys": 1})
    assert deleted.strategy_metadata == {"rows_deleted": 2, "unmatched_keys": 1}
    frame = scan_delta_table(uri, storage_options=options).sort("Réf Nr").collect()
    assert frame.get_column("Réf Nr").to_list() == [2, 4, 5]
    assert frame.get_column("Notiz").to_list() == ["n2", "n4", "n5"]
    assert str(frame.get_column("Preis €")[0]) == "12345678901234567890.123456789"
    keys = s3_delta.bucket_keys("lake/Produkte ü/_delta_log/")
    assert [k.rsplit("/", 1)[1] for k in keys] == [f"{v:020}.json" for v in (0, 1, 2)]

    with pytest.raises(MissingDeltaTable, match="Create or load it first"):
        run_delta(source_uri, s3_delta.uri("lake/nothing"), UPDATE, table="changes",
                  pipeline="changes", storage_options=options)  # fmt: skip
    assert not s3_delta.bucket_keys("lake/nothing")
