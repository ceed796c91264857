"""Finding a certificate by the serial a user typed: whole, or a unique prefix of it (issue 17).

Serials are 159-bit random numbers printed as up to 40 hex digits
(cli-contract.md); typing them is error-prone, so, as ``git`` does with
commit names, a unique prefix of at least :data:`MIN_PREFIX` hex digits is
accepted wherever a serial is.  An ambiguous prefix is a usage error (exit 2)
listing the serials it matches; nothing is guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twcactl.errors import NotFoundError, UsageError
from twcactl.rules.serials import format_serial, parse_serial

if TYPE_CHECKING:
    from twcactl.store import Store
    from twcactl.store.records import CertRecord

__all__ = ["MAX_LISTED", "MIN_PREFIX", "resolve_serial"]

#: The fewest hex digits a serial prefix may have (git asks for 4 of 40 for a commit; we ask for 8: 32 bits).
MIN_PREFIX = 8
#: How many matches an ambiguous prefix lists.
MAX_LISTED = 10


def resolve_serial(store: Store, text: str) -> CertRecord:
    """The record of the certificate ``text`` names: its serial in any accepted form, or a unique prefix.

    Args:
        store: the open CA home.
        text: as typed: any case, with or without ``0x``, colons or leading zeros (cli-contract.md); a
            prefix of the printed serial (lowercase hex, no leading zeros) with at least :data:`MIN_PREFIX`
            hex digits.

    Raises:
        UsageError: not hexadecimal, or a prefix that several serials start with (exit 2; the serials in
            ``details["matches"]``, at most :data:`MAX_LISTED`).
        NotFoundError: no certificate has this serial, nor starts with it (exit 5).
    """
    serial = format_serial(parse_serial(text))
    try:
        return store.certificates.get(serial)
    except NotFoundError:
        if len(serial) < MIN_PREFIX:
            raise NotFoundError(f"no certificate with serial {serial} in this CA home.",
                                hint=f"a serial prefix needs at least {MIN_PREFIX} hex digits") from None
        matches = store.certificates.with_prefix(serial, limit=MAX_LISTED + 1)
        if not matches:
            raise
    if len(matches) > 1:
        listed = matches[:MAX_LISTED]
        more = " and more" if len(matches) > MAX_LISTED else ""
        raise UsageError(f"serial prefix {serial} is ambiguous: it matches {', '.join(listed)}{more}.",
                         hint="give more hex digits of the serial", details={"matches": listed})
    return store.certificates.get(matches[0])
