"""Certificate serial numbers as the contract prints and accepts them."""

from __future__ import annotations

import re

from twcactl.errors import UsageError

_HEX = re.compile(r"^[0-9a-f]+$")


def format_serial(serial: int) -> str:
    """Lowercase hex, no separators, no leading zeros (``format(n, "x")``; cli-contract.md)."""
    return format(serial, "x")


def parse_serial(text: str) -> int:
    """Accept a serial in any case, with or without ``0x``, colons or leading zeros.

    Raises:
        UsageError: when ``text`` is not a hexadecimal serial.
    """
    cleaned = text.strip().lower().replace(":", "")
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned or not _HEX.match(cleaned) or len(cleaned) > 64:
        raise UsageError(f"{text!r} is not a certificate serial (hexadecimal expected).")
    return int(cleaned, 16)
