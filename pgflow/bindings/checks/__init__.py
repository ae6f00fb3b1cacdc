"""Asset checks of each pipeline: one multi-asset check per pipeline, its checks subsettable.

- `unique_key`: no two target rows share a `sink.strategy.unique_key` value (ERROR).
- `row_count_parity`: target rows vs source rows; exact when the last load made the target
  one consistent snapshot of the source (ERROR), within `checks.row_count_tolerance` of the
  source's live count otherwise (WARN).
- `schema` (postgres sources): the source's columns vs the target's, judged by what the next
  load will do under `on_schema_change` (absorbed: WARN, refused: ERROR).
- `freshness`: age of the latest materialization vs `freshness` (warn_after: WARN,
  fail_after or never: ERROR).
- `slot_health` (CDC): the replication slot exists, is usable, and retains less WAL than
  `checks.retained_wal_warn`.
- `value_parity` (Postgres -> Postgres): every value of the target equals the source's.

Checks only read: source and target connections are READ ONLY, one short transaction per
probe with a statement timeout. Expected situations (no target before the first load, a
dropped source table, an unreachable database) become failed results that say so, never an
exception that would swallow the other checks' results.

Modules: `definitions` (which checks a pipeline gets, the multi-asset check), `names` (check
names and keys), `context` (what one run of the checks shares), `target` (the target table,
Postgres or Delta, and the results when there is none), `comparison` (what the source-vs-target
checks share), then one module per check.
"""
