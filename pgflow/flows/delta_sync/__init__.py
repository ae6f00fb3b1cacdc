"""Sync a Delta Lake table into a Postgres table: upsert on a key, skip unchanged rows.

    from pgflow.flows.delta_sync.run import sync_delta

    result = sync_delta(uri_or_connect, "s3://lake/orders", TableName("gold", "orders"),
                        ("id",), pipeline="orders_gold", deletes="key_pass")

One run syncs ONE Delta version, the latest when it starts (pinned: later commits wait for
the next run). Its steps, and the module of each:

1. Lock (session.py). A session advisory lock on the target (the key `ddl.lock_target`
   uses), held by the run's connection until it ends, so runs of one target (and loads of
   it) never interleave. The Delta version is read after the lock: a run never applies an
   older version than one applied before it.
2. Staleness, by version only (prepare.py, position.py, target.py). The position stored for
   the target in `_pgflow.pipeline_state` holds the Delta version synced and whether that
   sync finished. The same version, finished, and the target still there: skipped, nothing
   written. No clocks are compared (commit timestamps and `max(sync_ldts)` are not
   comparable across machines). The target is created, or checked and given the Delta
   table's new columns (schema.py).
3. Plan (plan.py). What the pass reads, in a fixed order (data files sorted by path):
   - first sync, a missing target, columns added, `full_pass=True`, or an interrupted sync of
     another version: every file of the version;
   - a finished sync of an older version `b`: only the files of the version that `b` did not
     have. Delta data files are immutable and a row that changes moves to a new file
     (copy-on-write), so the files both versions share hold rows the target already has;
     compaction re-adds rows in new files, which the upsert then finds unchanged;
   - an interrupted sync of the same version: the same plan, from the stored file and row.
4. Stream (apply.py, batches.py, upsert.py). Each file is read in batches of
   DELTA_CLIENT_BATCH_SIZE rows (polars), re-cut into batches of POSTGRES_CLIENT_BATCH_SIZE
   rows; each of those is ONE sink transaction: COPY (text format) into a temporary staging
   table -> upsert into the target -> store the position (version, next file, next row,
   finished=false) -> COMMIT.
5. Finish (apply.py, deletes.py). One last transaction applies the deletes, stores
   finished=true and ANALYZEs the target when the run changed a large share of it.

Around the steps: settings.py (the settings and what is transient), retries.py (the retry
loop), result.py (what a run reports), errors.py, run.py (the entry point, `sync_delta`).

Resume and exactly-once: a batch's rows and the position after them (version, plan, next
file, next row, finished=false) commit in ONE transaction in the sink, the position in
`_pgflow.pipeline_state` next to the rows it covers. So the stored position never claims rows
the target lacks, and never lags behind rows it has: a crash before COMMIT loses both, one
after keeps both. The next attempt (a retry in this run, or the next run) re-reads the
position and continues from its file and row when it is the same version and plan. This is
exact because a version's data files and the rows in each are immutable and read in a fixed
order (files sorted by path, rows in file order), so "file i, row r" names the same rows on
every attempt. And should a row be applied twice anyway (the commit went through but its
acknowledgement was lost, or the plan restarted after the version changed), the upsert is
idempotent: the row finds an equal hdiff and is left alone. A restarted pass therefore
converges to the same target. Each position also records the run that wrote it, so a retry
tells its own progress from another run's. Batch commits use synchronous_commit=off: a
server crash can lose only the latest whole batches together with their position, which the
next attempt redoes; the final commit (finished=true) is durable.

Not supported: Delta tables with column mapping or with deletion vectors on any file
(refused with a clear error, see pgflow.sources.delta); keys repeated within one sink batch
(DuplicateKeyError; a key repeated across batches ends with the last row read); NULL keys.
"""
