"""docs/architecture.md's "Rule -> where it lives" table names real code: every ``twcactl.…`` name in it imports."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
NAME = re.compile(r"`(twcactl(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and walk the remaining attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _table_names() -> list[str]:
    text = DOC.read_text("utf-8")
    table = text.split("## Rule -> where it lives", 1)[1]
    return NAME.findall(table)


def test_every_rule_home_in_the_table_exists() -> None:
    names = _table_names()
    assert len(names) >= 40
    missing = []
    for name in names:
        try:
            _resolve(name)
        except (ModuleNotFoundError, AttributeError):
            missing.append(name)
    assert missing == []


def test_the_check_can_fail() -> None:
    try:
        _resolve("twcactl.rules.quota.no_such_rule")
    except AttributeError:
        return
    raise AssertionError("a missing name resolved")
