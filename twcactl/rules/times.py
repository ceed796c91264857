"""Times: always timezone-aware UTC, rendered as RFC 3339 with ``Z``."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """The current time, UTC, truncated to whole seconds (X.509 has no fractions)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def rfc3339(value: dt.datetime) -> str:
    """Render an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` (cli-contract.md, JSON shapes)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime:
    """Parse an RFC 3339 / ISO 8601 time; naive values are taken as UTC.

    Raises:
        ValueError: when ``text`` is not a time.
    """
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def add_years(value: dt.datetime, years: int) -> dt.datetime:
    """``value`` plus ``years`` calendar years; 29 February becomes 28 February."""
    try:
        return value.replace(year=value.year + years)
    except ValueError:
        return value.replace(year=value.year + years, day=28)
