"""`sink.options.maintenance` of a Delta sink: compaction, vacuum and checkpoints.

```yaml
sink:
  type: delta
  options:
    maintenance:
      optimize_every: 20        # after a load, once 20 commits have passed; 0 (default): never
      target_file_size: 128MB   # default: the table's delta.targetFileSize (100 MB)
      vacuum_retention: 7 days  # default; shorter needs allow_short_retention: true
      checkpoint: true          # default
      schedule: "0 3 * * *"     # the maintenance job for this table (cron or {cron, timezone})
```
"""

from __future__ import annotations

from datetime import timedelta

from pgflow.config.durations import parse_duration
from pgflow.config.model import DEFAULT_VACUUM_RETENTION, DeltaMaintenance
from pgflow.config.read_schedule import read_schedule
from pgflow.config.reader import Section
from pgflow.config.sizes import parse_size


def read_maintenance(options: Section | None, kind: str | None) -> DeltaMaintenance | None:
    """The maintenance settings under `options` (None: none given, or refused and reported)."""
    section = None if options is None else options.section("maintenance")
    if section is None or options is None:
        return None
    if kind == "postgres":
        options.problem(
            "maintenance",
            "applies to Delta sinks only (Postgres maintains its own tables with autovacuum); "
            "remove it",
        )
        return None
    allow_short = section.flag("allow_short_retention")
    settings = DeltaMaintenance(
        optimize_every=_read_every(section),
        target_file_size=_read_size(section),
        vacuum_retention=_read_retention(section, allow_short),
        allow_short_retention=allow_short,
        checkpoint=section.flag("checkpoint", default=True),
        schedule=read_schedule(section),
    )
    section.finish()
    return settings


def _read_every(section: Section) -> int:
    value = section.raw("optimize_every")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        section.problem(
            "optimize_every",
            f"must be a number of commits (0: never), got {value!r}; e.g. 20 compacts the "
            "table after every 20th commit",
        )
        return 0
    return value


def _read_size(section: Section) -> int | None:
    value = section.raw("target_file_size")
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as error:
        section.problem("target_file_size", f"{error} (the size compaction aims for)")
        return None


def _read_retention(section: Section, allow_short: bool) -> timedelta:
    value = section.raw("vacuum_retention")
    if value is None:
        return DEFAULT_VACUUM_RETENTION
    try:
        retention = parse_duration(value)
    except ValueError as error:
        section.problem("vacuum_retention", str(error))
        return DEFAULT_VACUUM_RETENTION
    hours = retention / timedelta(hours=1)
    if hours != int(hours):  # delta-rs takes the retention in whole hours
        section.problem(
            "vacuum_retention",
            f"'{value}' is not a whole number of hours (delta-rs counts vacuum retention in "
            "hours); e.g. 168h or 7 days",
        )
        return DEFAULT_VACUUM_RETENTION
    if retention < DEFAULT_VACUUM_RETENTION and not allow_short:
        section.problem(
            "vacuum_retention",
            f"'{value}' is below Delta's own retention check (7 days): a reader or writer still "
            "using an older version could lose its files; use at least 7 days, or set "
            "allow_short_retention: true if nothing reads older versions",
        )
        return DEFAULT_VACUUM_RETENTION
    return retention
