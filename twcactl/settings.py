"""CA settings kept in config.toml, with their types and limits (issue 4, domain.md §4-§5)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from twcactl.errors import UsageError
from twcactl.store import DEFAULT_SETTINGS

#: key -> (minimum for integer settings, or None for URL settings)
_SPEC: dict[str, int | None] = {
    "renewal_window_days": 0,
    "refund_window_days": 0,
    "crl_days": 1,
    "crl_url": None,
    "ocsp_url": None,
    "ca_issuers_url": None,
}
assert set(_SPEC) == set(DEFAULT_SETTINGS)


def parse_setting(key: str, value: str | None) -> Any:
    """Validate ``key`` and convert ``value`` (text from the command line) to its type.

    Integer settings are days (whole numbers at or above their minimum);
    URL settings are ``http``/``https`` URLs or ``""`` to clear.

    Returns:
        The typed value, or None when ``value`` is None (a key check only).

    Raises:
        UsageError: unknown key or bad value (exit 2).
    """
    if key not in _SPEC:
        raise UsageError(f"unknown setting {key!r}; settings are: {', '.join(_SPEC)}.")
    if value is None:
        return None
    minimum = _SPEC[key]
    if minimum is not None:
        try:
            number = int(value)
        except ValueError as exc:
            raise UsageError(f"{key} takes a whole number of days.") from exc
        if number < minimum:
            raise UsageError(f"{key} must be at least {minimum}.")
        return number
    if value == "":
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or not value.isascii() or any(c.isspace() for c in value):
        raise UsageError(f"{key} must be an http:// or https:// URL (or \"\" to clear).")
    return value
