"""Human durations in specs: `90s`, `5m`, `5 minutes`, `2h`, `1 day`."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "s": "seconds",
    "sec": "seconds",
    "second": "seconds",
    "seconds": "seconds",
    "m": "minutes",
    "min": "minutes",
    "minute": "minutes",
    "minutes": "minutes",
    "h": "hours",
    "hour": "hours",
    "hours": "hours",
    "d": "days",
    "day": "days",
    "days": "days",
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


def parse_duration(text: object) -> timedelta:
    """Parse a duration; raises ValueError with the accepted forms when it cannot."""
    match = _PATTERN.match(str(text).lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(
            f"'{text}' is not a duration; write a number and a unit, "
            "e.g. 30s, 5m, 5 minutes, 2h, 1d"
        )
    try:
        return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:
        raise ValueError(f"'{text}' is too long a duration; write at most 999999999 days") from None
