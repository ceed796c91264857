"""The CA's time windows: when a certificate may be renewed, and when its revocation is refunded.

Pure decisions over timezone-aware UTC datetimes and status words (domain.md §3-§4);
the window lengths are the home's settings ``renewal_window_days`` and
``refund_window_days`` (``ca config``; defaults in :class:`twcactl.rules.settings.Settings`).
"""

from __future__ import annotations

import datetime as dt

from twcactl.errors import StateError
from twcactl.rules.words import count

#: Status words of a certificate that may be renewed (domain.md §4: only a valid certificate).
RENEWABLE_STATUSES: tuple[str, ...] = ("valid", "expiring")


def renewal_window_start(not_after: dt.datetime, window_days: int) -> dt.datetime:
    """The first instant a certificate ending at ``not_after`` may be renewed without ``--early``.

    ``window_days`` days (of 24 hours) before ``not_after`` (domain.md §4).
    """
    return not_after - dt.timedelta(days=window_days)


def in_renewal_window(not_after: dt.datetime, now: dt.datetime, window_days: int) -> bool:
    """True from :func:`renewal_window_start` on (inclusive), e.g. the ``expiring`` status word
    (cli-contract.md "JSON shapes": valid and inside the renewal window)."""
    return now >= renewal_window_start(not_after, window_days)


def require_renewable_status(serial: str, status: str) -> None:
    """Refuse to renew a certificate whose status word is not ``valid`` or ``expiring`` (domain.md §4).

    Raises:
        StateError: revoked, suspended or expired (exit 5); an expired one may only be
            applied for anew, and the hint says so.
    """
    if status not in RENEWABLE_STATUSES:
        raise StateError(f"certificate {serial} is {status}; only a valid certificate can be renewed.",
                         hint="apply for a new certificate with: twcactl cert issue" if status == "expired" else None)


def require_not_renewed(serial: str, renewed_by: str | None, successor_status: str | None = None) -> None:
    """Refuse a second renewal of ``serial``: renewal is once per certificate (issue 12; domain.md §3-§4).

    A renewal carries the old certificate's remaining time into its successor, so
    renewing the old one again would charge again for a chain that already
    continues (a nightly renewal loop would drain the account).

    Args:
        serial: the certificate asked to be renewed.
        renewed_by: its successor's serial, or None.
        successor_status: the successor's status word, for the hint (renew it, or issue anew when it is gone).

    Raises:
        StateError: (exit 5) naming the successor; ``details["renewed_by"]`` carries its serial.
    """
    if renewed_by is None:
        return
    if successor_status in (None, *RENEWABLE_STATUSES):
        hint = f"renew that one instead: twcactl cert renew {renewed_by} --csr FILE"
    elif successor_status == "renewed":
        hint = f"{renewed_by} was renewed too; renew the newest of the chain (see twcactl cert show {renewed_by})"
    else:
        hint = f"{renewed_by} is {successor_status}; apply for a new certificate with: twcactl cert issue"
    raise StateError(f"certificate {serial} was already renewed by {renewed_by}; a certificate is renewed once.",
                     hint=hint, details={"renewed_by": renewed_by})


def require_renewal_window(serial: str, not_after: dt.datetime, now: dt.datetime, window_days: int, *,
                           early: bool) -> None:
    """Refuse a renewal before the window opens unless ``early`` (domain.md §4).

    Raises:
        StateError: naming the date the window opens (exit 5), with ``--early`` as the hint.
    """
    if early or in_renewal_window(not_after, now, window_days):
        return
    raise StateError(
        f"certificate {serial} can be renewed from {renewal_window_start(not_after, window_days):%Y-%m-%d} "
        f"({count(window_days, 'day')} before its notAfter {not_after:%Y-%m-%d}).",
        hint="renew now anyway with --early",
    )


def refund_window_end(issued_at: dt.datetime, refund_days: int) -> dt.datetime:
    """The last instant a revocation of a certificate issued at ``issued_at`` is refunded (domain.md §3)."""
    return issued_at + dt.timedelta(days=refund_days)


def in_refund_window(issued_at: dt.datetime, now: dt.datetime, refund_days: int) -> bool:
    """True up to and including :func:`refund_window_end`: the certificate is still "newly issued"
    (domain.md §3: revoking a newly issued certificate refunds it)."""
    return now <= refund_window_end(issued_at, refund_days)


#: Profiles of TLS server certificates, whose owners are reminded two months ahead (domain.md §4).
SERVER_PROFILES: tuple[str, ...] = ("ssl", "wildcard", "ev", "ov", "dv")
#: Reminder windows in days before notAfter: "SSL owners are notified two months ahead", every other
#: certificate one month ahead (domain.md §4; manuals 001 §4.2, 002 §3.3.3, 003 §5).
SERVER_REMINDER_DAYS = 60
OTHER_REMINDER_DAYS = 30


def reminder_window_days(profile: str) -> int:
    """How many days before its notAfter the technical contact of a ``profile`` certificate is reminded:
    60 for server (SSL) profiles, 30 for the others (domain.md §4)."""
    return SERVER_REMINDER_DAYS if profile in SERVER_PROFILES else OTHER_REMINDER_DAYS


def reminder_due(profile: str, not_after: dt.datetime, now: dt.datetime) -> bool:
    """True when a certificate ending at ``not_after`` has entered its reminder window and is not expired."""
    return now < not_after <= now + dt.timedelta(days=reminder_window_days(profile))
