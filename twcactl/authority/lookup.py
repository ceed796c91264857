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

__all__ = ["MAX_LISTED", "MIN_PREFIX", "resolve_serial", "short_serials"]

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


def short_serials(store: Store, serials: list[str]) -> dict[str, str]:
    """Each serial shortened, as ``git log --oneline`` shortens hashes, to one width for all: the fewest hex
    digits (at least :data:`MIN_PREFIX`) that leave every one of ``serials`` a unique prefix among all the
    certificates of the home, so :func:`resolve_serial` takes each back (issue 28).

    Args:
        store: the open CA home.
        serials: printed serials (lowercase hex), e.g. the rows of a table.

    Returns:
        ``{serial: prefix}``; a serial no longer than the width stays whole.
    """
    unique = list(dict.fromkeys(serials))
    if len(unique) > _FEW:  # a long table: every serial in one query, the neighbours found by bisection
        import bisect

        every = store.certificates.sorted_serials()

        def neighbours(serial: str) -> tuple[str | None, str | None]:
            i = bisect.bisect_left(every, serial)
            j = i + 1 if i < len(every) and every[i] == serial else i
            return (every[i - 1] if i else None), (every[j] if j < len(every) else None)
    else:
        neighbours = store.certificates.neighbours
    width = MIN_PREFIX
    for serial in unique:
        for other in neighbours(serial):
            if other is not None:
                width = max(width, _common_prefix(serial, other) + 1)
    return {s: s[:width] for s in serials}


#: Up to this many serials, each one's neighbours are two indexed queries; past it, one query reads them all.
_FEW = 50


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
