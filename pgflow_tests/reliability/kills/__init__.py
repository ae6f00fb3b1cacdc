"""Kill harness: SIGKILL a real load at many points and check the target is before or after.

What runs: the IO manager, as a Dagster step runs it, minus Dagster's executor. A child process
loads the spec from YAML (`load_project`), builds the IO manager the code location uses
(`PostgresSinkIOManager(mode=...)`, or `DeltaSinkIOManager`, with `PostgresConnections` and `DeltaStorage`)
and calls `handle_output(<an OutputContext built by build_output_context>, PipelineRead(spec))`,
which dispatches to `load_table`, `replicate`, `sync_delta` or `load_delta` as in a
materialization. Not run: Dagster's step machinery around it (retries, events, checks).

Processes: children are forked from a multiprocessing *forkserver* that preloads kills.child
(dagster, psycopg, pgflow, polars, deltalake imported once, no thread pool started), so a run
costs a fork, not an interpreter start, and no child inherits the threads of the pytest worker.

Kill points: in the child only, test instrumentation wraps psycopg's `Cursor.execute`,
`ServerCursor.execute`, `Copy.write`, `Transaction.__exit__` and `Connection.commit`, and for
Delta `write_deltalake`, `TableMerger.execute` and the Arrow batches of the read. Each wrapper
counts "ticks" (before every call; after every commit and Delta commit) and calls
`os.kill(os.getpid(), SIGKILL)` at tick k. A recorded reference run lists the ticks of a whole
load; a sweep kills at every tick except COPY rows (statements on source and sink, commits,
Delta writes, Arrow batches), at spread points of the COPY stream, thinned evenly to a limit
that keeps every tick around a commit, plus at random times within the load's duration.
Production code carries no hooks; a Delta sink's child reads in smaller Arrow batches
(`load_delta`'s `batch_rows` default) so that the stream has several.

State: before each kill the target is restored to BEFORE: the sink database is cloned from a
template (`CREATE DATABASE ... TEMPLATE`), a CDC slot is copied from a template slot that never
moves (`pg_copy_logical_replication_slot`), a Delta table folder is copied. After the kill,
once the killed client's backends (and walsenders) are gone from pg_stat_activity, the
target's rows (count + md5 of the sorted row texts), its relations (tables, partitions,
views, indexes) and its stored position (`_pgflow.pipeline_state`; for Delta the version, the
pipeline's run counter and the position in its commit) must equal BEFORE or AFTER, AFTER
being what an uninterrupted reference run made. Positions that depend on when a run reads
(xmin checkpoint, CDC LSN) must be past BEFORE's and past the source change instead of equal.
Resumable strategies (Delta -> Postgres sync: a commit per batch; CDC over several batches: a
commit per source transaction group) may also stop at a state their reference run committed
(rows and position both; CDC: the target is then the source as of the stored LSN). Then one
more run without a kill must reach AFTER (convergence) and leave no staging table behind
(CDC: also the committed staging tables a killed run left).

Modules: scenarios (the strategies and their specs), source_data (the source and its change),
child (the forked run and its kill points), observe (reading a target), copies (BEFORE's
clones and slot copies on the cluster), judge (before / after / resume point), plan (where to
kill, the figures), sweep (a scenario's set-up, kills and convergence: `kill_sweep`).
A CDC group (several tables on one slot, test_kills_group.py): group_world (its tables,
change and targets as values), group_child (a run of `replicate_group`, killed at the n-th
tick of a label) and group_sweep (kills, per-table judging against each stored position,
convergence: `group_sweep`).
"""
