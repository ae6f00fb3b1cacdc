"""When a pipeline runs and how fresh it must be: `schedule:`, `partitions:`, `freshness:`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

from pgflow.config.durations import parse_duration
from pgflow.config.model import PARTITION_TYPES, FreshnessSpec, PartitionsSpec, ScheduleSpec
from pgflow.config.reader import Section

_FRESHNESS_FORMS = (
    "must be a duration (e.g. 2h) or a mapping with fail_after and optional warn_after"
)


def read_schedule(spec: Section, key: str = "schedule") -> ScheduleSpec | None:
    """`schedule:` (or `key`) as a cron string (UTC) or `{cron, timezone}`."""
    raw = spec.raw(key)
    if raw is None:
        return None
    if isinstance(raw, str):
        cron, timezone = raw, "UTC"
    elif isinstance(raw, Mapping):
        section = spec.section(key)
        assert section is not None
        cron = section.text("cron", required=True) or ""
        timezone = section.text("timezone", default="UTC") or "UTC"
        section.finish()
    else:
        spec.problem(key, "must be a cron string or a mapping with `cron` and `timezone`")
        return None
    if cron and not is_valid_cron_string(cron):
        spec.problem(key, f"'{cron}' is not a valid cron expression, e.g. '0 * * * *' (hourly)")
        return None
    if not valid_timezone(timezone):
        spec.problem(
            key,
            f"timezone '{timezone}' is unknown; use an IANA name such as UTC or Europe/Berlin",
        )
        return None
    return ScheduleSpec(cron, timezone) if cron else None


def read_partitions(section: Section | None) -> PartitionsSpec | None:
    """`partitions: {type: daily | monthly, start: YYYY-MM-DD, timezone, end_offset}`."""
    if section is None:
        return None
    kind = section.choice("type", PARTITION_TYPES, required=True)
    start = _read_date(section, "start")
    timezone = section.text("timezone", default="UTC") or "UTC"
    if not valid_timezone(timezone):
        section.problem(
            "timezone", f"'{timezone}' is unknown; use an IANA name such as UTC or Europe/Berlin"
        )
    end_offset = _read_end_offset(section)
    section.finish()
    if kind == "monthly" and start is not None and start.day != 1:
        section.problem(
            "start",
            f"'{start}' must be the first day of a month for monthly partitions, e.g. {start:%Y-%m}-01",
        )
        return None
    if kind is None or start is None:
        return None
    return PartitionsSpec(kind, start, timezone, end_offset)


def _read_end_offset(section: Section) -> int:
    offset = section.raw("end_offset")
    if offset is None:
        return 0
    if isinstance(offset, bool) or offset not in (0, 1):
        section.problem(
            "end_offset",
            f"must be 0 (complete periods only) or 1 (also the current one), got {offset!r}",
        )
        return 0
    return int(offset)


def _read_date(section: Section, key: str) -> date | None:
    raw = section.raw(key)
    if isinstance(raw, date):  # YAML reads an unquoted 2026-01-01 as a date
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    section.problem(key, f"must be a date written YYYY-MM-DD, e.g. 2026-01-01, got {raw!r}")
    return None


def is_valid_cron_string(cron: str) -> bool:
    """Dagster's own rule (five fields, no 30 February...), through its public API: an
    automation condition on the cron refuses what a schedule would refuse."""
    try:
        dg.AutomationCondition.cron_tick_passed(cron)
    except Exception:  # Dagster's CheckError, which no public module exports
        return False
    return True


def valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def read_freshness(spec: Section) -> FreshnessSpec | None:
    """`freshness:` as one duration (fail_after) or `{fail_after, warn_after}`."""
    raw = spec.raw("freshness")
    if raw is None:
        return None
    try:
        if isinstance(raw, str):
            return _freshness(spec, parse_duration(raw), None)
        if (
            isinstance(raw, Mapping)
            and set(raw) <= {"fail_after", "warn_after"}
            and "fail_after" in raw
        ):
            return _freshness_of_mapping(spec, raw)
    except ValueError as exc:
        spec.problem("freshness", str(exc))
        return None
    spec.problem("freshness", _FRESHNESS_FORMS)
    return None


def _freshness_of_mapping(spec: Section, raw: Mapping[str, object]) -> FreshnessSpec | None:
    warn = parse_duration(raw["warn_after"]) if raw.get("warn_after") else None
    fail = parse_duration(raw["fail_after"])
    if warn is not None and warn >= fail:
        spec.problem("freshness", "warn_after must be shorter than fail_after")
        return None
    return _freshness(spec, fail, warn)


def _freshness(spec: Section, fail: timedelta, warn: timedelta | None) -> FreshnessSpec | None:
    # Dagster's freshness policies count in whole minutes and refuse shorter windows.
    if min(fail, warn or fail) < timedelta(minutes=1):
        spec.problem("freshness", "windows must be at least 1 minute (Dagster's resolution)")
        return None
    return FreshnessSpec(fail_after=fail, warn_after=warn)
