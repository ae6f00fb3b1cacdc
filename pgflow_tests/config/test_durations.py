from datetime import timedelta

import pytest

from pgflow.config.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10 sec", timedelta(seconds=10)),
        ("1 second", timedelta(seconds=1)),
        ("30 seconds", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("5 min", timedelta(minutes=5)),
        ("1 minute", timedelta(minutes=1)),
        ("5 minutes", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1 hour", timedelta(hours=1)),
        ("12 hours", timedelta(hours=12)),
        ("1d", timedelta(days=1)),
        ("1 day", timedelta(days=1)),
        ("2 days", timedelta(days=2)),
        ("1.5h", timedelta(minutes=90)),
        ("0.5 d", timedelta(hours=12)),
        ("  2H  ", timedelta(hours=2)),
        ("5 Minutes", timedelta(minutes=5)),
        ("0s", timedelta(0)),
    ],
)
def test_parses_human_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "2",
        2,
        1.5,
        None,
        True,
        "h",
        "hours",
        "2 weeks",
        "2w",
        "-1h",
        "+1h",
        "2h30m",
        "1e3s",
        "1,5h",
        "two hours",
        "2 h ago",
        "1..5h",
        [1],
        {"h": 1},
    ],
)
def test_rejects_anything_else_with_the_accepted_forms(text: object) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration(text)
    message = str(exc.value)
    assert f"'{text}' is not a duration" in message
    assert "write a number and a unit, e.g. 30s, 5m, 5 minutes, 2h, 1d" in message


def test_a_too_long_duration_is_a_value_error_not_an_overflow() -> None:
    with pytest.raises(ValueError, match="'99999999999d' is too long a duration"):
        parse_duration("99999999999d")
    with pytest.raises(ValueError, match="at most 999999999 days"):
        parse_duration("1" + "0" * 400 + "h")


def test_largest_duration_still_parses() -> None:
    assert parse_duration("999999999d") == timedelta(days=999999999)
