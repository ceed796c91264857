"""The certificate-year quota: what a charge needs and what a revocation gives back (domain.md §3).

An account holds a balance of certificate-years (張年數).  Issuing or renewing
for N years deducts N; revoking a *newly issued* certificate refunds it.  Every
place that charges (issue, renew, card enrolment and renewal, the store's
ledger) asks :func:`require_balance`; the revocation asks :func:`refund_due`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from twcactl.errors import QuotaError
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


def refund_due(*, cost: int, state: str, issued_at: dt.datetime, now: dt.datetime, refund_window_days: int,
               renewed: bool) -> int:
    """Certificate-years that revoking a certificate gives back: its ``cost``, or 0 (domain.md §3).

    Only a *newly issued* certificate is refunded: one that is not already revoked
    (a later change of reason refunds nothing twice), was charged (``cost > 0``), is
    revoked within the refund window of its issue (:func:`twcactl.rules.windows.in_refund_window`,
    ``refund_window_days`` from ``ca config``), and has not been renewed: a renewal
    carries the old certificate's remaining time forward into the new one (domain.md §4),
    so refunding the old one would pay back time that is still in use.

    Args:
        cost: the certificate-years charged when it was issued.
        state: its stored state (``valid``, ``suspended``, ``revoked``).
        issued_at / now: aware UTC datetimes.
        renewed: whether a renewal was issued from it.
    """
    if state == "revoked" or cost <= 0 or renewed:
        return 0
    return cost if in_refund_window(issued_at, now, refund_window_days) else 0
