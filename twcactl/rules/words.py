"""Counted nouns in messages: "1 day", "2 days" (issue 28: never "1 days")."""

from __future__ import annotations

__all__ = ["count"]


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 or -1: ``count(1, "day")`` -> ``"1 day"``,
    ``count(30, "day")`` -> ``"30 days"``; ``plural`` for irregular nouns (``entry`` -> ``entries``)."""
    return f"{n} {noun if abs(n) == 1 else (plural or noun + 's')}"
