"""A CDC pipeline's position in the Delta table it writes: an app transaction per commit.

Every commit a CDC run makes to a Delta table (the snapshot, each batch's merge, an idle
table's move) carries `txn {appId: "pgflow-cdc:<pipeline>:<identity>", version: <end LSN>}`,
where identity is `cdc:<source table>:<slot>`. The Delta protocol keeps the latest version per
app id in the table's snapshot (and checkpoints): reading the position is one lookup, never a
history scan. Rows and position are one atomic commit, so after a crash between the commit and
the slot's confirm the next run skips exactly what the table holds. Two runs racing on one
table both write the same app id: delta-rs refuses the later commit.

The commit's metadata also names the pipeline and the position (JSON), for people reading the
table's history.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from arro3.core import RecordBatchReader
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from pgflow.sinks.delta.state import PIPELINE_KEY, POSITION_KEY
from pgflow.sources.base import Position
from pgflow.sources.cdc import lsn_position

APP_ID_PREFIX = "pgflow-cdc:"


def delta_cdc_app_id(pipeline: str, identity: str) -> str:
    return f"{APP_ID_PREFIX}{pipeline}:{identity}"


def cdc_transaction(pipeline: str, identity: str, lsn: int) -> Transaction:
    """The app transaction that stores `lsn` as the pipeline's position in a commit."""
    return Transaction(delta_cdc_app_id(pipeline, identity), lsn)


def cdc_commit_properties(pipeline: str, identity: str, lsn: int) -> CommitProperties:
    position = lsn_position(identity, lsn)
    metadata = {PIPELINE_KEY: pipeline, POSITION_KEY: json.dumps(asdict(position))}
    return CommitProperties(
        custom_metadata=metadata, app_transactions=[cdc_transaction(pipeline, identity, lsn)]
    )


def stored_lsn(table: DeltaTable | None, pipeline: str, identity: str) -> int | None:
    """The end LSN the pipeline last committed to `table` for `identity` (None: none)."""
    if table is None:
        return None
    return table.transaction_version(delta_cdc_app_id(pipeline, identity))


def stored_cdc_position(table: DeltaTable | None, pipeline: str, identity: str) -> Position | None:
    lsn = stored_lsn(table, pipeline, identity)
    return None if lsn is None else lsn_position(identity, lsn)


def commit_position(table: DeltaTable, pipeline: str, identity: str, lsn: int) -> None:
    """An empty commit carrying the position alone (nothing changed, but the LSN moved)."""
    schema = table.schema().to_arrow()
    empty = RecordBatchReader.from_batches(schema, [])
    write_deltalake(
        table,
        empty,
        mode="append",
        commit_properties=cdc_commit_properties(pipeline, identity, lsn),
    )
