"""Validity: how long a certificate runs, when it ends, and what it costs (cli-contract.md "Validity"; domain.md §3-§4).

Pure date arithmetic over timezone-aware UTC datetimes; no cryptography.

The caps of a browser-trusted TLS certificate by its issuance date (ballot SC-081) are one table in
:mod:`twcactl.rules.public_trust` (``MAX_VALIDITY``): in public-trust mode a validity asked for here is
paid time, served by certificates no longer than that cap (issue 16).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from twcactl.errors import UsageError
from twcactl.rules.times import add_years

DAYS_PER_CERTIFICATE_YEAR = 365
"""A ``--days D`` validity costs ceil(D / 365) certificate-years (cli-contract.md "Validity")."""

MAX_YEARS = 100
"""The largest ``--years``: a validity is added to "now" and 8,000 years would pass year 9999 (issue 13)."""
MAX_DAYS = 36_500
"""The largest ``--days`` (100 years, the same bound as the day settings of ``rules.settings``)."""


@dataclass(frozen=True)
class Validity:
    """A requested validity: ``years`` calendar years or ``days`` days (exactly one set)."""

    years: int | None = None
    days: int | None = None

    @classmethod
    def from_options(cls, years: int | None, days: int | None, *, default_years: int = 1) -> Validity:
        """From ``--years`` / ``--days``; neither means ``default_years``.

        Raises:
            UsageError: both given, a value below 1, or above :data:`MAX_YEARS` / :data:`MAX_DAYS` (exit 2).
        """
        if years is not None and days is not None:
            raise UsageError("give --years or --days, not both.")
        if years is not None and years < 1 or days is not None and days < 1:
            raise UsageError("the validity must be at least 1 year or 1 day.")
        if years is not None and years > MAX_YEARS or days is not None and days > MAX_DAYS:
            raise UsageError(f"the validity must be at most {MAX_YEARS} years or {MAX_DAYS} days.")
        if years is None and days is None:
            years = default_years
        return cls(years=years, days=days)

    def to_text(self) -> str:
        """Compact form stored with a record: ``"2y"`` or ``"30d"``."""
        return f"{self.years}y" if self.years is not None else f"{self.days}d"

    @classmethod
    def from_text(cls, text: str) -> Validity | None:
        """Parse :meth:`to_text` output; None for an empty or unknown value."""
        if len(text) >= 2 and text[:-1].isdigit() and text[-1] in "yd":
            n = int(text[:-1])
            return cls(years=n) if text[-1] == "y" else cls(days=n)
        return None

    @property
    def cost(self) -> int:
        """Certificate-years charged (int); see :func:`cost_in_certificate_years`."""
        return cost_in_certificate_years(self)

    def end(self, start: dt.datetime) -> dt.datetime:
        """The notAfter for a validity starting at ``start``; see :func:`validity_end`."""
        return validity_end(start, self)


def cost_in_certificate_years(validity: Validity) -> int:
    """Certificate-years charged for ``validity``: N for ``--years N``, ceil(D/365) for ``--days D``.

    Source: cli-contract.md "Validity" (cost), domain.md §3 (an N-year certificate deducts N).
    So 365 days cost 1, 366 days cost 2, 730 days cost 2.
    """
    if validity.years is not None:
        return validity.years
    return math.ceil((validity.days or 0) / DAYS_PER_CERTIFICATE_YEAR)


def validity_end(start: dt.datetime, validity: Validity) -> dt.datetime:
    """The notAfter of a certificate whose validity starts at ``start`` (aware UTC datetime).

    ``--years N`` adds N calendar years (29 February becomes 28 February,
    :func:`twcactl.rules.times.add_years`); ``--days D`` adds D × 24 hours.
    """
    if validity.years is not None:
        return add_years(start, validity.years)
    return start + dt.timedelta(days=validity.days or 0)


def renewal_end(old_not_after: dt.datetime, validity: Validity) -> dt.datetime:
    """The notAfter of a renewed certificate: its validity continues from the old notAfter, not from today.

    Source: domain.md §4 ("its validity continues from the old certificate's expiry date").
    """
    return validity_end(old_not_after, validity)


def recorded_validity(text: str, not_before: dt.datetime, not_after: dt.datetime) -> Validity:
    """The validity a certificate was issued with: the stored ``"2y"`` / ``"30d"`` text, else its whole days.

    The default validity of a renewal (cli-contract.md "Validity": "Renew default: the old
    certificate's validity").  Records older than the ``validity`` column fall back to
    ``(not_after - not_before)`` in whole days, at least 1.
    """
    return Validity.from_text(text) or Validity(days=max(1, (not_after - not_before).days))
