"""The ACME profiles this CA offers (draft-ietf-acme-profiles): what an order's ``profile`` picks.

- ``tlsserver``: today's ACME leaf: one certificate-year, CRL Distribution Point and OCSP URL.
- ``shortlived``: a short-lived subscriber certificate (BR §1.6.1, ballot SC-063): one day less than
  :data:`SHORT_LIVED_MAX_DAYS` or the BR's short-lived bound of the day
  (:data:`twcactl.rules.public_trust.SHORT_LIVED`), whichever is smaller, since a validity counts both ends
  (RFC 5280 §4.1.2.5) and D whole days run one second over D days; without CRL Distribution Point or OCSP URL, as
  BR §7.1.2.11.2 allows for it (the certificate expires before a revocation would matter).  It costs
  one certificate-year like every certificate of up to 365 days (domain.md §3).

Which profile an order names is refused with ``invalidProfile`` when not in :data:`ACME_PROFILES`
(draft-ietf-acme-profiles §4); an order without one gets :data:`DEFAULT_PROFILE`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from twcactl.rules.public_trust import short_lived_days
from twcactl.rules.validity import Validity

#: The longest validity of a ``shortlived`` certificate, days (the issue's bound; BR §1.6.1 allows 7 from
#: 2026-03-15, 10 before, and the smaller of the two applies).
SHORT_LIVED_MAX_DAYS = 7


@dataclass(frozen=True)
class AcmeProfile:
    """One ACME profile: its name and description (the directory's ``meta.profiles``), its validity, and
    whether its certificates leave out the CRL Distribution Point and OCSP URL (short-lived)."""

    name: str
    description: str
    short_lived: bool = False

    def validity(self, at: dt.datetime) -> Validity:
        """The validity of a certificate of this profile issued at ``at`` (UTC)."""
        if self.short_lived:
            return Validity(days=min(SHORT_LIVED_MAX_DAYS, short_lived_days(at)) - 1)
        return Validity(years=1)


ACME_PROFILES: dict[str, AcmeProfile] = {
    "tlsserver": AcmeProfile("tlsserver", "TLS server certificate: one year, with CRL Distribution Point and "
                                          "OCSP URL (the default)."),
    "shortlived": AcmeProfile("shortlived", f"Short-lived TLS server certificate: at most {SHORT_LIVED_MAX_DAYS} "
                                            "days, without CRL Distribution Point or OCSP URL (BR 7.1.2.11).",
                              short_lived=True),
}
DEFAULT_PROFILE = "tlsserver"
