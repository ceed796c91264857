"""CA settings kept in config.toml, with their types and limits (issue 4, domain.md §4-§5)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from twcactl.errors import UsageError
from twcactl.store import DEFAULT_SETTINGS

Kind = Literal["days", "url", "path"]

#: key -> (kind, minimum for day counts)
_SPEC: dict[str, tuple[Kind, int]] = {
    "renewal_window_days": ("days", 0),
    "refund_window_days": ("days", 0),
    "crl_days": ("days", 1),
    "crl_url": ("url", 0),
    "ocsp_url": ("url", 0),
    "ca_issuers_url": ("url", 0),
    "pkcs11_module": ("path", 0),
}
assert set(_SPEC) == set(DEFAULT_SETTINGS)


def parse_setting(key: str, value: str | None) -> Any:
    """Validate ``key`` and convert ``value`` (text from the command line) to its type.

    Day settings are whole numbers at or above their minimum; URL settings
    are ``http``/``https`` URLs; ``pkcs11_module`` is an absolute path to a
    PKCS#11 module; ``""`` clears a URL or path.

    Returns:
        The typed value, or None when ``value`` is None (a key check only).

    Raises:
        UsageError: unknown key or bad value (exit 2).
    """
    if key not in _SPEC:
        raise UsageError(f"unknown setting {key!r}; settings are: {', '.join(_SPEC)}.")
    if value is None:
        return None
    kind, minimum = _SPEC[key]
    if kind == "days":
        try:
            number = int(value)
        except ValueError as exc:
            raise UsageError(f"{key} takes a whole number of days.") from exc
        if number < minimum:
            raise UsageError(f"{key} must be at least {minimum}.")
        return number
    if value == "":
        return ""
    if kind == "path":
        if not value.startswith("/") or not value.isprintable():
            raise UsageError(f"{key} must be an absolute path (or \"\" to clear).")
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or not value.isascii() or any(c.isspace() for c in value):
        raise UsageError(f"{key} must be an http:// or https:// URL (or \"\" to clear).")
    return value
