"""Public-trust rules: what the CA/Browser Forum Baseline Requirements (BR) cap by date (domain.md §10; issue 16).

One table per rule, each with its source, and pure decisions over aware UTC
datetimes (no cryptography):

- :data:`MAX_VALIDITY`: the longest TLS server certificate by its issuance
  date (BR §6.3.2 as amended by ballot SC-081): 398 days before 2026-03-15,
  200 days from 2026-03-15, 100 days from 2027-03-15, 47 days from 2029-03-15.
- :data:`SHORT_LIVED`: a "short-lived subscriber certificate" (BR §1.6.1,
  ballot SC-063) may leave out CRL Distribution Points and OCSP: at most 10
  days before 2026-03-15, at most 7 days from then.
- :data:`CRL_MAX_DAYS`: a CRL's nextUpdate is at most 10 days after its
  thisUpdate (BR §4.9.7).

A validity period counts both ends (RFC 5280 §4.1.2.5; BR §6.3.2 "the
difference ... plus one second"), so a certificate of D days ends one second
before ``notBefore + D days``.

Certificate-years as subscriptions: a purchase of N years (``--years N``, or
``--days D``) is *paid time* that ends at ``paid_until``; it is served by
certificates no longer than the cap of their issuance date, the first one
starting at once, each next one re-issued without a charge while paid time is
left (:func:`twcactl.rules.quota.subscription_charge` decides the charge).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_UTC = dt.UTC
_SECOND = dt.timedelta(seconds=1)

#: (first issuance date it applies to, the most days a TLS server certificate may run), oldest first.
#: Source: CA/Browser Forum ballot SC-081 (BR §6.3.2), domain.md §10.
MAX_VALIDITY: tuple[tuple[dt.datetime, int], ...] = (
    (dt.datetime(1970, 1, 1, tzinfo=_UTC), 398),
    (dt.datetime(2026, 3, 15, tzinfo=_UTC), 200),
    (dt.datetime(2027, 3, 15, tzinfo=_UTC), 100),
    (dt.datetime(2029, 3, 15, tzinfo=_UTC), 47),
)

#: (first issuance date, the most days of a short-lived subscriber certificate).  Source: BR §1.6.1
#: "Short-lived Subscriber Certificate" (ballot SC-063): 10 days, 7 days for certificates issued from 2026-03-15.
SHORT_LIVED: tuple[tuple[dt.datetime, int], ...] = (
    (dt.datetime(1970, 1, 1, tzinfo=_UTC), 10),
    (dt.datetime(2026, 3, 15, tzinfo=_UTC), 7),
)

#: The most days between a CRL's thisUpdate and nextUpdate (BR §4.9.7); ``crl_days`` is capped at it.
CRL_MAX_DAYS = 10

#: The CA/Browser Forum reserved certificate policy identifiers (BR §7.1.6.1) by validation level.
POLICY_OIDS: dict[str, str] = {
    "dv": "2.23.140.1.2.1",
    "ov": "2.23.140.1.2.2",
    "ev": "2.23.140.1.1",
}


def _lookup(table: tuple[tuple[dt.datetime, int], ...], at: dt.datetime) -> int:
    value = table[0][1]
    for start, days in table:
        if at >= start:
            value = days
    return value


def max_validity_days(issued_at: dt.datetime) -> int:
    """The most days a TLS server certificate issued at ``issued_at`` may run (:data:`MAX_VALIDITY`, SC-081)."""
    return _lookup(MAX_VALIDITY, issued_at)


def latest_not_after(not_before: dt.datetime) -> dt.datetime:
    """The latest notAfter of a TLS server certificate starting at ``not_before``: the cap of that date in days,
    less the second a validity period counts at its end (BR §6.3.2)."""
    return not_before + dt.timedelta(days=max_validity_days(not_before)) - _SECOND


def short_lived_days(at: dt.datetime) -> int:
    """The most days of a short-lived subscriber certificate issued at ``at`` (:data:`SHORT_LIVED`, BR §1.6.1)."""
    return _lookup(SHORT_LIVED, at)


def is_short_lived(not_before: dt.datetime, not_after: dt.datetime) -> bool:
    """True when the certificate is a short-lived subscriber certificate (:data:`SHORT_LIVED`, BR §1.6.1), which
    may leave out CRL Distribution Points."""
    return not_after - not_before + _SECOND <= dt.timedelta(days=_lookup(SHORT_LIVED, not_before))


def crl_days(configured: int, public_trust: bool) -> int:
    """The days from a CRL's thisUpdate to its nextUpdate: ``crl_days`` of ``ca config``, at most
    :data:`CRL_MAX_DAYS` for a public-trust CA (BR §4.9.7)."""
    return min(configured, CRL_MAX_DAYS) if public_trust else configured


@dataclass(frozen=True)
class Term:
    """The validity of one certificate of a subscription.

    Attributes:
        not_after: the certificate's notAfter.
        paid_until: the end of the paid time it serves (aware UTC).
        capped: True when ``not_after`` is earlier than the paid time (or the asked-for end) because of the cap.
        cap_days: the cap of the issuance date (SC-081), in days.
    """

    not_after: dt.datetime
    paid_until: dt.datetime
    capped: bool
    cap_days: int

    def note(self) -> str | None:
        """One sentence for a capped certificate, else None."""
        if not self.capped:
            return None
        return (f"capped at {self.cap_days} days (CA/Browser Forum ballot SC-081 for certificates issued on "
                f"this date): this certificate ends {self.not_after:%Y-%m-%d}; the paid time runs to "
                f"{self.paid_until:%Y-%m-%d} and is served by free re-issues (twcactl cert renew)")


def term(not_before: dt.datetime, paid_until: dt.datetime) -> Term:
    """The certificate starting at ``not_before`` that serves paid time up to ``paid_until``: it ends at
    ``paid_until`` or at the cap of its date (:func:`latest_not_after`), whichever is earlier.

    Used for the first certificate of a purchase and for each re-issue: carrying time forward stops at the
    cap; the rest stays in the subscription (issue 16).
    """
    limit = latest_not_after(not_before)
    if paid_until <= limit:
        return Term(paid_until, paid_until, False, max_validity_days(not_before))
    return Term(limit, paid_until, True, max_validity_days(not_before))


def exceeds_cap(not_before: dt.datetime, wanted_end: dt.datetime) -> bool:
    """True when a certificate from ``not_before`` to ``wanted_end`` runs longer than SC-081 allows (the
    ``--strict`` refusal)."""
    return wanted_end > latest_not_after(not_before)


def reissue_from(not_after: dt.datetime, paid_until: dt.datetime | None, renewal_window_days: int,
                 not_before: dt.datetime) -> dt.datetime | None:
    """When the next certificate of a subscription may be re-issued: the renewal window's start (domain.md §4),
    not before ``not_before``; None when no paid time is left after ``not_after`` (the next renewal is charged)."""
    if paid_until is None or paid_until <= not_after:
        return None
    return max(not_before, not_after - dt.timedelta(days=renewal_window_days))


#: (first date it applies to, the most days a domain validation may be reused for a TLS server certificate),
#: oldest first.  Source: BR §4.2.1 as amended by ballot SC-081 ("Validation Data Reuse Periods"): 398 days
#: before 2026-03-15, 200 days from then, 100 days from 2027-03-15, 10 days from 2029-03-15.
DCV_REUSE: tuple[tuple[dt.datetime, int], ...] = (
    (dt.datetime(1970, 1, 1, tzinfo=_UTC), 398),
    (dt.datetime(2026, 3, 15, tzinfo=_UTC), 200),
    (dt.datetime(2027, 3, 15, tzinfo=_UTC), 100),
    (dt.datetime(2029, 3, 15, tzinfo=_UTC), 10),
)

#: (first date it applies to, the fewest remote network perspectives that must be used), oldest first.
#: Source: BR §3.2.2.9 (ballot SC-067, "Multi-Perspective Issuance Corroboration"): from 2025-03-15 MPIC is
#: done but a failed corroboration need not stop issuance (0 below means advisory, 2 perspectives asked);
#: from 2025-09-15 at least 2 remote perspectives; 3 from 2026-03-15; 4 from 2026-06-15; 5 from 2026-12-15.
MPIC_PERSPECTIVES: tuple[tuple[dt.datetime, int], ...] = (
    (dt.datetime(1970, 1, 1, tzinfo=_UTC), 0),
    (dt.datetime(2025, 3, 15, tzinfo=_UTC), 0),
    (dt.datetime(2025, 9, 15, tzinfo=_UTC), 2),
    (dt.datetime(2026, 3, 15, tzinfo=_UTC), 3),
    (dt.datetime(2026, 6, 15, tzinfo=_UTC), 4),
    (dt.datetime(2026, 12, 15, tzinfo=_UTC), 5),
)

#: (the fewest remote perspectives used, the most of them allowed not to corroborate), BR §3.2.2.9 "Quorum
#: Requirements" table: 2-5 perspectives used allow 1 non-corroboration, 6 or more allow 2.
MPIC_QUORUM: tuple[tuple[int, int], ...] = ((2, 1), (6, 2))

#: How long a CAA answer may be relied on (BR §3.2.2.8: "within 8 hours prior to issuance"), in seconds.
CAA_REUSE_SECONDS = 8 * 3600


def dcv_reuse_days(issued_at: dt.datetime) -> int:
    """The most days a domain validation may be reused on ``issued_at`` (:data:`DCV_REUSE`, BR §4.2.1, SC-081)."""
    return _lookup(DCV_REUSE, issued_at)


def validation_lapses(validated_at: dt.datetime, issued_at: dt.datetime) -> dt.datetime:
    """When a validation made at ``validated_at`` stops serving issuance on ``issued_at`` (the reuse period of
    the issuance date counts, BR §4.2.1)."""
    return validated_at + dt.timedelta(days=dcv_reuse_days(issued_at))


@dataclass(frozen=True)
class MpicRule:
    """The multi-perspective rule of one date (BR §3.2.2.9).

    Attributes:
        required: the fewest remote perspectives that must be used; 0 before MPIC is mandatory (advisory).
        allowed_failures: how many of ``used`` perspectives may fail to corroborate.
        used: the perspectives configured and asked.
    """

    required: int
    allowed_failures: int
    used: int

    @property
    def enforced(self) -> bool:
        """True when a failed corroboration refuses issuance (from 2025-09-15)."""
        return self.required > 0

    def corroborated(self, agreeing: int) -> bool:
        """True when ``agreeing`` corroborations out of :attr:`used` meet the rule (count and quorum)."""
        if not self.enforced:
            return True
        return self.used >= self.required and self.used - agreeing <= self.allowed_failures


def mpic_rule(issued_at: dt.datetime, used: int) -> MpicRule:
    """The count and quorum in force on ``issued_at`` for ``used`` remote perspectives (:data:`MPIC_PERSPECTIVES`,
    :data:`MPIC_QUORUM`; BR §3.2.2.9)."""
    allowed = 0
    for least, failures in MPIC_QUORUM:
        if used >= least:
            allowed = failures
    return MpicRule(required=_lookup(MPIC_PERSPECTIVES, issued_at), allowed_failures=allowed, used=used)
