"""Typed records read from the store: accounts, ledger entries, certificates, CAs, CRL rows, log entries.

These are what the repositories return (:mod:`twcactl.store.interface`):
plain frozen values, the same whichever engine holds the data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from twcactl.models import AccountPolicy
from twcactl.rules.public_trust import reissue_from
from twcactl.rules.times import rfc3339
from twcactl.rules.windows import in_renewal_window


@dataclass(frozen=True)
class LedgerEntry:
    """One change of an account's certificate-year balance."""

    time: str
    delta: int
    balance: int
    action: str
    serial: str | None
    operator: str
    note: str | None

    def to_json(self) -> dict[str, Any]:
        """The contract's ledger entry shape."""
        return {
            "time": self.time,
            "delta": self.delta,
            "balance": self.balance,
            "action": self.action,
            "serial": self.serial,
            "operator": self.operator,
            "note": self.note,
        }


@dataclass(frozen=True)
class Account:
    """An RA account: one organisation, its agreed domains and its balance (domain.md §2-§3)."""

    id: str
    org: str
    org_aliases: tuple[str, ...]
    domains: tuple[str, ...]
    balance: int
    ledger: tuple[LedgerEntry, ...] = ()
    jurisdiction_country: str = "TW"
    jurisdiction_state: str | None = None
    jurisdiction_locality: str | None = None
    business_category: str = "Private Organization"

    @property
    def business_number(self) -> str:
        """The unified business number: the account ID's first 8 digits (domain.md §2)."""
        return self.id.split("-")[0]

    def policy(self) -> AccountPolicy:
        """The policy view of this account."""
        return AccountPolicy(id=self.id, org=self.org, org_aliases=self.org_aliases, domains=self.domains,
                             jurisdiction_country=self.jurisdiction_country,
                             jurisdiction_state=self.jurisdiction_state,
                             jurisdiction_locality=self.jurisdiction_locality,
                             business_category=self.business_category)

    def to_json(self) -> dict[str, Any]:
        """The contract's account shape (ledger newest first)."""
        return {
            "id": self.id,
            "org": self.org,
            "org_aliases": list(self.org_aliases),
            "domains": list(self.domains),
            "balance": self.balance,
            "ledger": [e.to_json() for e in self.ledger],
            "business_number": self.business_number,
            "jurisdiction": {"country": self.jurisdiction_country, "state": self.jurisdiction_state,
                             "locality": self.jurisdiction_locality},
            "business_category": self.business_category,
        }


@dataclass(frozen=True)
class CertRecord:
    """One issued certificate as the store knows it.

    ``state`` is the stored state (``valid``, ``suspended``, ``revoked``);
    :meth:`status` adds ``expired`` and ``expiring`` by time, and ``renewed``
    when ``renewed_by`` (the newest certificate renewed from this one) is set.
    """

    serial: str
    ca_name: str
    account: str | None
    profile: str
    cn: str | None
    subject: str
    sans: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    issued_at: str
    state: str
    revoked_at: str | None
    reason: str | None
    contact: str | None
    note: str | None
    renewed_from: str | None
    cost: int
    issuer: str
    path: str
    der: bytes = field(repr=False, default=b"")
    validity: str = ""
    invalidity_date: str | None = None
    renewed_by: str | None = None
    #: the end of the paid time of the subscription it serves (issue 16); None: not a subscription
    paid_until: dt.datetime | None = None

    def reissue_from(self, renewal_window_days: int) -> dt.datetime | None:
        """When the next certificate of its subscription may be re-issued at no charge
        (:func:`twcactl.rules.public_trust.reissue_from`); None when no paid time is left or it was renewed."""
        if self.renewed_by is not None or self.state == "revoked":
            return None
        return reissue_from(self.not_after, self.paid_until, renewal_window_days, self.not_before)

    def status(self, now: dt.datetime, renewal_window_days: int) -> str:
        """The status word: the first of revoked, suspended, expired, renewed, expiring, valid that applies
        (:data:`twcactl.rules.vocab.STATUS_WORDS`)."""
        if self.state == "revoked":
            return "revoked"
        if self.state == "suspended":
            return "suspended"
        if self.not_after <= now:
            return "expired"
        if self.renewed_by is not None:
            return "renewed"
        if in_renewal_window(self.not_after, now, renewal_window_days):
            return "expiring"
        return "valid"

    def to_json(self, now: dt.datetime, renewal_window_days: int) -> dict[str, Any]:
        """The contract's certificate shape."""
        return {
            "serial": self.serial,
            "subject": self.subject,
            "cn": self.cn,
            "sans": list(self.sans),
            "profile": self.profile,
            "account": self.account,
            "status": self.status(now, renewal_window_days),
            "not_before": rfc3339(self.not_before),
            "not_after": rfc3339(self.not_after),
            "issuer": self.issuer,
            "path": self.path,
            "renewed_by": self.renewed_by,
            "paid_until": rfc3339(self.paid_until) if self.paid_until else None,
            "reissue_from": _time_or_none(self.reissue_from(renewal_window_days)),
        }


def _time_or_none(value: dt.datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


@dataclass(frozen=True)
class LogEntry:
    """One activity-log entry (hash-chained; architecture.md, "The store")."""

    seq: int
    time: str
    operator: str
    action: str
    account: str | None
    serial: str | None
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The contract's log entry shape."""
        return {
            "seq": self.seq,
            "time": self.time,
            "operator": self.operator,
            "action": self.action,
            "account": self.account,
            "serial": self.serial,
            "details": self.details,
        }


@dataclass(frozen=True)
class RawLogEntry:
    """One activity-log row as stored, hashes included (for verifying the chain).

    ``details`` is the stored canonical JSON text: the hash covers that text,
    not the parsed value.
    """

    seq: int
    time: str
    operator: str
    action: str
    account: str | None
    serial: str | None
    details: str
    prev_hash: str
    hash: str
    #: the operator's signature over the statement of this entry and the ``entries - 1`` after it (JSON text;
    #: issue 27), None when unsigned
    signature: str | None = None


@dataclass(frozen=True)
class CaRecord:
    """One CA certificate of the home (root first: position 0)."""

    name: str
    position: int
    issuing: bool
    cert_file: Path
    key_file: Path
    der: bytes
    #: The RFC 7512 URI of a key on a PKCS#11 token (issue 14), stored in ``cas.key_file`` in place of a path;
    #: None for a key file.  With a URI, ``key_file`` is where a file would be, and none is ever read.
    key_uri: str | None = None
    #: The name of the CA that signed this one (issue 25); None for the root.
    issuer: str | None = None
    #: When an issuing CA was retired (RFC 3339): it issues no more, its CRL and OCSP go on (issue 25).
    retired_at: str | None = None
    #: When its issuer revoked it (RFC 3339) and the RFC 5280 reason: the issuer's CRL lists it (issue 25).
    revoked_at: str | None = None
    reason: str | None = None

    @property
    def state(self) -> str:
        """``root``, ``active`` (signs new certificates), ``ready`` (added, not yet active), ``retired``,
        ``revoked``; for a CA between the root and the issuing CAs (``uca_1`` of two levels) ``intermediate``."""
        if self.revoked_at:
            return "revoked"
        if self.issuer is None:
            return "root"
        if self.issuing:
            return "active"
        if self.retired_at:
            return "retired"
        return "ready" if self.position > 0 and not self._is_middle else "intermediate"

    @property
    def _is_middle(self) -> bool:
        from cryptography import x509

        constraints = self.certificate().extensions.get_extension_for_class(x509.BasicConstraints).value
        return bool(constraints.path_length)

    def certificate(self) -> Any:
        """The parsed ``x509.Certificate``."""
        from cryptography import x509

        return x509.load_der_x509_certificate(self.der)


@dataclass(frozen=True)
class StoredCertificate:
    """A certificate record's serial, stored SHA-256 (hex) and DER, for ``ca check``'s scan."""

    serial: str
    sha256: str
    der: bytes


@dataclass(frozen=True)
class BlockedKey:
    """A key the CA never certifies again: revoked for keyCompromise (CA/B Forum BR §6.1.1.3).

    ``spki_sha256`` is the SHA-256 (hex) of its DER SubjectPublicKeyInfo; ``serial`` the certificate
    whose revocation blocked it; ``blocked_at`` RFC 3339.
    """

    spki_sha256: str
    serial: str | None
    reason: str
    blocked_at: str
    operator: str

    def to_json(self) -> dict[str, Any]:
        """``{"spki_sha256", "serial", "reason", "blocked_at", "operator"}``."""
        return {"spki_sha256": self.spki_sha256, "serial": self.serial, "reason": self.reason,
                "blocked_at": self.blocked_at, "operator": self.operator}


@dataclass(frozen=True)
class LedgerTotal:
    """An account's balance beside what its ledger adds up to and its newest entry's balance (None: no entry)."""

    account_id: str
    balance: int
    total: int
    last: int | None


class RevokedRow(NamedTuple):
    """A revoked or held certificate as its CRL lists it (RFC 3339 times; ``reason`` an RFC 5280 name)."""

    serial: str
    revoked_at: str
    reason: str
    invalidity_date: str | None


class CrlAnchor(NamedTuple):
    """The activity log's head recorded with CRL ``number`` of ``ca_name``."""

    ca_name: str
    number: int
    log_seq: int
    log_hash: str
