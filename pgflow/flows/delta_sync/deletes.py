"""Rows whose key left the Delta table, removed from the target in the run's last transaction.

- "none": rows whose key left the Delta table stay in the target;
- "key_pass": the last transaction stages every key of the version (key columns only) and
  deletes target rows whose key is not among them;
- "cdf": the table must have delta.enableChangeDataFeed=true; the last transaction deletes the
  keys the change data feed deletes, for good, between the last finished version and this one
  (a key deleted and re-inserted stays). When the feed cannot be read for that range, the run
  falls back to key_pass and says so in the result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import polars as pl
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.flows.delta_sync.context import SyncRequest
from pgflow.flows.delta_sync.plan import Plan
from pgflow.flows.delta_sync.settings import transient_delta
from pgflow.flows.delta_sync.upsert import copy_rows, names
from pgflow.sinks.postgres.delta_types import copy_text
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.statistics import analyze
from pgflow.sources import delta

log = logging.getLogger(__name__)

KEYS = TableName("pg_temp", "pgflow_delta_keys")


def cdf_deletes(request: SyncRequest, plan: Plan, created: bool) -> tuple[pl.DataFrame | None, str]:
    """The keys the change data feed deletes since the last finished sync, and how deletes
    are applied: "cdf", or a key_pass fallback saying why (then no keys)."""
    if created and plan.mode == "full":
        return None, "cdf (first sync: nothing to delete)"
    if plan.synced is None:
        # No finished sync: the target may hold rows the feed never saw (an interrupted
        # first sync of a re-created Delta table, a target that existed before).
        return None, "key_pass (no finished sync to read the change data feed from)"
    start = plan.synced + 1
    if start > plan.version:
        return None, "cdf"
    try:
        gone = delta.deleted_keys(
            request.path, request.key, start, plan.version, request.storage_options
        )
    except Exception as error:
        if transient_delta(error):
            raise
        log.warning("change data feed of %s unreadable, using key_pass: %s", request.path, error)
        return (
            None,
            f"key_pass (the change data feed of versions {start}..{plan.version} is unreadable: {error})",
        )
    return gone, "cdf"


def delete_keys(log_: SqlLog, target: TableName, key: Sequence[str], keys: pl.DataFrame) -> int:
    """Delete the target's rows of `keys`."""
    _create_keys_table(log_, target, key)
    copy_rows(log_, KEYS, key, copy_text(keys.select(key)))
    return _delete_matching(log_, target, key, present=True)


def delete_missing_keys(log_: SqlLog, request: SyncRequest, snapshot: delta.DeltaSnapshot) -> int:
    """Stage every key of the version (key columns only) and delete the target's others."""
    target, key = request.target, request.key
    _create_keys_table(log_, target, key)
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(KEYS.identifier(), names(key))
    log_.record(copy)
    with log_.conn.cursor() as cur, cur.copy(copy) as writer:
        for file in snapshot.files:
            for chunk in delta.read_batches(
                snapshot, file, request.settings.delta_batch_size, columns=key
            ):
                writer.write(copy_text(chunk))
    analyze(log_, KEYS)
    return _delete_matching(log_, target, key, present=False)


def _create_keys_table(log_: SqlLog, target: TableName, key: Sequence[str]) -> None:
    log_.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(KEYS.identifier()))
    log_.execute(
        sql.SQL(
            "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
        ).format(KEYS.identifier(), names(key), target.identifier())
    )


def _delete_matching(log_: SqlLog, target: TableName, key: Sequence[str], present: bool) -> int:
    match = sql.SQL(" AND ").join(sql.SQL("k.{c} = t.{c}").format(c=sql.Identifier(c)) for c in key)
    test = sql.SQL("EXISTS") if present else sql.SQL("NOT EXISTS")
    query = sql.SQL("DELETE FROM {} t WHERE {} (SELECT 1 FROM {} k WHERE {})").format(
        target.identifier(), test, KEYS.identifier(), match
    )
    return log_.execute(query).rowcount
