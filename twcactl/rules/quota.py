"""The certificate-year quota: what a charge needs and what a revocation gives back (domain.md §3).

An account holds a balance of certificate-years (張年數).  Issuing or renewing
for N years deducts N; revoking a *newly issued* certificate refunds it.  Every
place that charges (issue, renew, card enrolment and renewal, the store's
ledger) asks :func:`require_balance`; the revocation asks :func:`refund_decision`
(:func:`refund_due` is its number alone).

One accounting rule for time (issue 12): a certificate's paid time is either
used, carried forward to its successor (a renewal continues from the old
notAfter, domain.md §4), or refunded, never two of them.  So a certificate
that has been renewed refunds nothing when it is revoked, and revoking the
successor inside its own refund window refunds only its own cost (what the
renewal added).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twcactl.errors import QuotaError
from twcactl.rules.validity import Validity, renewal_end
from twcactl.rules.windows import in_refund_window


def require_balance(account_id: str, balance: int, need: int) -> None:
    """Refuse a charge of ``need`` certificate-years against ``balance`` (domain.md §3).

    Args:
        account_id: the account charged (``70759028-01``).
        balance: its balance now, in certificate-years.
        need: the certificate-years the whole charge takes (a batch: the sum).

    Raises:
        QuotaError: ``need > balance`` (exit 5), carrying ``account``, ``balance`` and ``need``
            (``details["quota"]`` in the JSON error document).
    """
    if need > balance:
        raise QuotaError(
            f"account {account_id} has {balance} certificate-years; this needs {need}.",
            hint=f"add more with: twcactl account credit {account_id} N",
            account=account_id, balance=balance, need=need,
        )


def require_balances(needs: Mapping[str, int], balance_of: Callable[[str], int]) -> None:
    """:func:`require_balance` for every account of a batch that spans accounts (renewals).

    Args:
        needs: certificate-years needed, by account ID.
        balance_of: reads an account's balance (the store's).

    Raises:
        QuotaError: the first account (in ``needs`` order) that cannot pay (exit 5).
    """
    for account_id, need in needs.items():
        require_balance(account_id, balance_of(account_id), need)


#: Why a revocation refunds what it does (``Refund.why``; ``cert revoke --json``'s ``refund.why``):
#: ``refund_window`` revoked within the refund window (its cost back); ``renewed`` its time was carried forward
#: to a successor, nothing back; ``outside_window`` past the refund window; ``already_revoked`` a reason change;
#: ``not_charged`` it cost nothing (or belongs to no account).
REFUND_REASONS: tuple[str, ...] = ("refund_window", "renewed", "outside_window", "already_revoked", "not_charged")


@dataclass(frozen=True)
class Refund:
    """What revoking one certificate gives back (domain.md §3; issue 12).

    Attributes:
        years: certificate-years refunded (0 or the certificate's cost).
        why: one of :data:`REFUND_REASONS`.
        renewed_by: the successor's serial when ``why`` is ``renewed``.
    """

    years: int
    why: str
    renewed_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``refund`` object of ``cert revoke --json``: ``{"years", "why", "renewed_by"}``."""
        return {"years": self.years, "why": self.why, "renewed_by": self.renewed_by}

    def sentence(self) -> str:
        """One line for people, e.g. ``refund 0 certificate-years: its time was carried forward to 5f1c``."""
        because = {
            "refund_window": "revoked within the refund window",
            "renewed": f"its time was carried forward to its successor {self.renewed_by}",
            "outside_window": "revoked after the refund window",
            "already_revoked": "it was already revoked",
            "not_charged": "it was not charged",
        }[self.why]
        return f"refund {self.years} certificate-years: {because}"


def refund_decision(*, cost: int, state: str, issued_at: dt.datetime, now: dt.datetime, refund_window_days: int,
                    renewed_by: str | None) -> Refund:
    """What revoking a certificate gives back: its ``cost`` or nothing, and why (domain.md §3; issue 12).

    Only a *newly issued* certificate is refunded: one that is not already revoked
    (a later change of reason refunds nothing twice), was charged (``cost > 0``), is
    revoked within the refund window of its issue (:func:`twcactl.rules.windows.in_refund_window`,
    ``refund_window_days`` from ``ca config``), and has not been renewed: a renewal
    carries the old certificate's remaining time forward into the new one (domain.md §4),
    so refunding the old one would pay back time that is still in use.  A successor is
    judged on its own: inside its own window it refunds its own cost, i.e. what the renewal
    added, never the carried time.  ``why`` is ``renewed`` only when the renewal is what
    stopped a refund that would otherwise be due (the ledger records that step).

    Args:
        cost: the certificate-years charged when it was issued.
        state: its stored state (``valid``, ``suspended``, ``revoked``).
        issued_at / now: aware UTC datetimes.
        refund_window_days: the home's ``refund_window_days`` (days of 24 hours).
        renewed_by: the serial of a renewal issued from it, or None.
    """
    if state == "revoked":
        return Refund(0, "already_revoked")
    if cost <= 0:
        return Refund(0, "not_charged")
    if not in_refund_window(issued_at, now, refund_window_days):
        return Refund(0, "outside_window")
    if renewed_by is not None:
        return Refund(0, "renewed", renewed_by)
    return Refund(cost, "refund_window")


def refund_due(*, cost: int, state: str, issued_at: dt.datetime, now: dt.datetime, refund_window_days: int,
               renewed: bool) -> int:
    """Certificate-years that revoking a certificate gives back: :func:`refund_decision`'s ``years``.

    Args:
        renewed: whether a renewal was issued from it; the rest as :func:`refund_decision`.
    """
    return refund_decision(cost=cost, state=state, issued_at=issued_at, now=now,
                           refund_window_days=refund_window_days,
                           renewed_by="(renewed)" if renewed else None).years


@dataclass(frozen=True)
class SubscriptionCharge:
    """What renewing a subscription certificate costs (issue 16; domain.md §10).

    Attributes:
        years: certificate-years charged (0 for a re-issue inside the paid time).
        paid_until: the end of the paid time after the renewal (aware UTC).
        why: ``paid_time`` (re-issued at no charge inside the paid time) or ``charged``.
        validity: the purchase the renewal records (the old one for a free re-issue, so that the renewal after
            the paid time ends defaults to the same purchase).
    """

    years: int
    paid_until: dt.datetime
    why: str
    validity: Validity


def subscription_charge(*, old_not_after: dt.datetime, old_paid_until: dt.datetime | None,
                        requested: Validity | None, default: Validity) -> SubscriptionCharge:
    """The charge of a renewal of a certificate whose time is sold as a subscription (issue 16).

    Inside the paid time (``old_paid_until`` after the old notAfter) and without an explicit ``requested``
    validity, the next certificate is re-issued at no charge and the paid time is unchanged.  Otherwise
    the renewal charges as today (domain.md §3-§4): ``requested`` or ``default`` (the old purchase), and
    the paid time is extended from where it ends (the old notAfter at the latest) by that validity: the
    old time is carried forward, never lost, never paid twice.

    Args:
        old_not_after / old_paid_until: the old certificate's notAfter and paid-until (None: not a subscription).
        requested: ``--years`` / ``--days`` of the renewal, or None.
        default: the old certificate's purchase (:func:`twcactl.rules.validity.recorded_validity`).
    """
    if requested is None and old_paid_until is not None and old_paid_until > old_not_after:
        return SubscriptionCharge(0, old_paid_until, "paid_time", default)
    chosen = requested or default
    start = max(old_paid_until or old_not_after, old_not_after)
    return SubscriptionCharge(chosen.cost, renewal_end(start, chosen), "charged", chosen)
