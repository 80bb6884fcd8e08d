"""parse_duration / format_duration: the duration syntax of the config file."""

from __future__ import annotations

import math

import pytest

from fleetd.config import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("15s", 15.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("90d", 90 * 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1m30s500ms", 90.5),
        ("1.5s", 1.5),
        (".25s", 0.25),
        (" 15s ", 15.0),
        ("15", 15.0),
        ("2.5", 2.5),
        (15, 15.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "must not be negative"),
        (-0.5, "must not be negative"),
        ("-5s", "must not be negative"),
        (0, "must be greater than zero"),
        ("0s", "must be greater than zero"),
        ("0ms", "must be greater than zero"),
        (True, "got the boolean true"),
        (False, "got the boolean false"),
        ("abc", "invalid duration 'abc'"),
        ("15x", "invalid duration '15x'"),
        ("15S", "invalid duration '15S'"),
        ("s", "invalid duration 's'"),
        ("1e3", "invalid duration '1e3'"),
        ("1h30", "invalid duration '1h30'"),
        ("1s1s", "unit 's' given twice"),
        ("", "got an empty string"),
        (None, "got null"),
        ([1], "got a list"),
        ({"s": 1}, "got a mapping"),
        (math.nan, "finite"),
        (math.inf, "finite"),
    ],
)
def test_parse_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert message in str(info.value)


def test_parse_duration_messages_show_the_accepted_forms() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("soon")
    assert "'500ms', '15s', '2m', '1h', '90d'" in str(info.value)


@pytest.mark.parametrize("value", [0, 0.0, "0s", "0"])
def test_parse_duration_allows_zero_when_asked(value: object) -> None:
    assert parse_duration(value, allow_zero=True) == 0.0


def test_parse_duration_refuses_negatives_even_when_zero_is_allowed() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration("-1s", allow_zero=True)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (15, "15s"),
        (1.5, "1.5s"),
        (90, "1m30s"),
        (300, "5m"),
        (5400, "1h30m"),
        (90 * 86400, "90d"),
        (86400 + 3600 + 61, "1d1h1m1s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, allow_zero=True) == pytest.approx(seconds)
