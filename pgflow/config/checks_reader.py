"""The `checks:` section of a pipeline spec: thresholds and options of its asset checks.

```yaml
checks:
  row_count_tolerance: 0.01
  retained_wal_warn: 1GB
  value_parity: {sample: 0.1, timeout: 10m}   # or false to leave the check out
  scan_schedule: "0 3 * * *"   # default; {cron, timezone}, or false: the scan checks by hand only
  scan_after_load: false       # true: the scan checks also run after every whole load
```
"""

from __future__ import annotations

from pgflow.config.durations import parse_duration
from pgflow.config.model import DEFAULT_SCAN_SCHEDULE, ChecksSpec, ScheduleSpec, ValueParitySpec
from pgflow.config.read_schedule import read_schedule
from pgflow.config.reader import Section
from pgflow.config.sizes import parse_size


def read_checks(section: Section | None, unique_key: tuple[str, ...] = ()) -> ChecksSpec:
    """The pipeline's `checks:`; `unique_key` is the sink's, which a value_parity sample needs."""
    if section is None:
        return ChecksSpec()
    defaults = ChecksSpec()
    tolerance = section.raw("row_count_tolerance")
    if tolerance is None:
        tolerance = defaults.row_count_tolerance
    elif (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, int | float)
        or not 0 <= tolerance < 1
    ):
        section.problem(
            "row_count_tolerance",
            f"must be a fraction from 0 up to 1 (0.01 allows 1% difference), got {tolerance!r}",
        )
        tolerance = defaults.row_count_tolerance
    retained = section.raw("retained_wal_warn")
    warn_bytes = defaults.retained_wal_warn_bytes
    if retained is not None:
        try:
            warn_bytes = parse_size(retained)
        except ValueError as exc:
            section.problem("retained_wal_warn", str(exc))
    parity = _read_value_parity(section, unique_key)
    scan_schedule = _read_scan_schedule(section)
    scan_after_load = _read_scan_after_load(section)
    section.finish()
    return ChecksSpec(float(tolerance), warn_bytes, parity, scan_schedule, scan_after_load)


def _read_scan_after_load(checks: Section) -> bool:
    raw = checks.raw("scan_after_load")
    if raw is None:
        return ChecksSpec().scan_after_load
    if not isinstance(raw, bool):
        checks.problem(
            "scan_after_load",
            f"must be true (the scan checks also run after every whole load) or false (only "
            f"on scan_schedule and by hand), got {raw!r}",
        )
        return False
    return raw


def _read_scan_schedule(checks: Section) -> ScheduleSpec | None:
    raw = checks.raw("scan_schedule")
    if raw is None:
        return DEFAULT_SCAN_SCHEDULE
    if raw is False:
        return None
    if raw is True or raw == "":
        checks.problem(
            "scan_schedule",
            f"must be a cron string, a mapping with `cron` and `timezone`, or false (the scan "
            f"checks then run only by hand), got {raw!r}",
        )
        return None
    return read_schedule(checks, "scan_schedule")


def _read_value_parity(checks: Section, unique_key: tuple[str, ...]) -> ValueParitySpec:
    raw = checks.raw("value_parity")
    if raw is None or raw is True:
        return ValueParitySpec()
    if raw is False:
        return ValueParitySpec(enabled=False)
    section = checks.section("value_parity")
    if section is None:  # not a mapping: reported by section()
        return ValueParitySpec()
    defaults = ValueParitySpec()
    sample = section.raw("sample")
    if sample is None:
        sample = defaults.sample
    elif isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 < sample <= 1:
        section.problem(
            "sample",
            f"must be a fraction above 0 up to 1 (0.1 hashes the rows of 10% of the key "
            f"buckets), got {sample!r}",
        )
        sample = defaults.sample
    elif sample < 1 and not unique_key:
        section.problem(
            "sample",
            "needs sink.strategy.unique_key: buckets are drawn from the key (without one every "
            "row is hashed anyway); set a unique_key or remove sample",
        )
    timeout = defaults.timeout
    if section.raw("timeout") is not None:
        try:
            timeout = parse_duration(section.raw("timeout"))
        except ValueError as exc:
            section.problem("timeout", str(exc))
    section.finish()
    return ValueParitySpec(True, float(sample), timeout)
