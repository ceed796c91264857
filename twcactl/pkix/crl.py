"""Certificate revocation lists (RFC 5280 §5) built with cryptography.

Entries carry the revocation date, the reasonCode (left out for
``unspecified``, as RFC 5280 §5.3.1 recommends) and the invalidityDate when
known.  A held certificate is listed with ``certificateHold`` and drops off
the next CRL when released (§5.3.1, removeFromCRL is only for delta CRLs).
All entries go to the builder's constructor at once: adding them one by one
is quadratic (architecture.md, performance notes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from twcactl.errors import UsageError
from twcactl.pkix.keys import PrivateKey
from twcactl.rules.times import parse_rfc3339
from twcactl.rules.vocab import REVOKE_REASONS


def parse_reason(name: str) -> str:
    """The canonical RFC 5280 name for ``name`` (case-insensitive).

    Raises:
        UsageError: not a revocation reason ``cert revoke`` accepts (exit 2).
    """
    for reason in REVOKE_REASONS:
        if reason.lower() == name.strip().lower():
            return reason
    raise UsageError(f"unknown revocation reason {name!r}; choose one of {', '.join(REVOKE_REASONS)}.",
                     hint="certificateHold is set with: twcactl cert hold SERIAL")


_REASON_EXTENSIONS: dict[str, list[x509.Extension[x509.ExtensionType]]] = {}


def _entry_extensions(reason: str, invalidity_date: dt.datetime | None) -> list[x509.Extension[x509.ExtensionType]]:
    """reasonCode (none for ``unspecified``) and invalidityDate of an entry (RFC 5280 §5.3.1, §5.3.2).

    Without an invalidity date the list is shared per reason: a CRL of
    100,000 entries builds it once, not 100,000 times.
    """
    base = _REASON_EXTENSIONS.get(reason)
    if base is None:
        base = [] if reason == "unspecified" else [
            x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(x509.ReasonFlags(reason)))]
        _REASON_EXTENSIONS[reason] = base
    if invalidity_date is None:
        return base
    return [*base, x509.Extension(x509.InvalidityDate.oid, False,
                                  x509.InvalidityDate(invalidity_date.replace(tzinfo=None)))]


def revoked_certificate(serial: int, revoked_at: dt.datetime, reason: str,
                        invalidity_date: dt.datetime | None = None) -> x509.RevokedCertificate:
    """One CRL entry, through the builder's constructor (half the cost of its chained setters)."""
    return x509.RevokedCertificateBuilder(serial, revoked_at, _entry_extensions(reason, invalidity_date)).build()


def revoked_from_records(rows: Iterable[tuple[str, str, str, str | None]]) -> list[x509.RevokedCertificate]:
    """CRL entries from the store's ``(serial hex, revoked_at, reason, invalidity_date)`` rows.

    Revocation times repeat (a batch shares its second), so each text is parsed once.
    """
    times: dict[str, dt.datetime] = {}
    out: list[x509.RevokedCertificate] = []
    for serial, revoked_at, reason, invalidity in rows:
        when = times.get(revoked_at)
        if when is None:
            when = times[revoked_at] = parse_rfc3339(revoked_at)
        out.append(revoked_certificate(int(serial, 16), when, reason,
                                       parse_rfc3339(invalidity) if invalidity else None))
    return out


@dataclass(frozen=True)
class RevokedEntry:
    """One CRL entry: serial (int), revocation time, reason name, optional invalidity date."""

    serial: int
    revoked_at: dt.datetime
    reason: str
    invalidity_date: dt.datetime | None = None

    def build(self) -> x509.RevokedCertificate:
        """The cryptography entry object."""
        return revoked_certificate(self.serial, self.revoked_at, self.reason, self.invalidity_date)


def build_crl(
    *,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    entries: Iterable[RevokedEntry | x509.RevokedCertificate],
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> x509.CertificateRevocationList:
    """A complete CRL v2 signed with SHA-256, with cRLNumber and AKI (RFC 5280 §5.2.1, §5.2.3).

    Args:
        issuer_cert: the CA whose certificates are listed.
        issuer_key: its private key (software or token).
        entries: every revoked or held certificate of this CA: our entries, or
            entries taken over from the previous CRL as they are.
        number: the cRLNumber, strictly greater than any earlier one.
        this_update / next_update: the validity of the list.
    """
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())  # type: ignore[arg-type]
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer_cert.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=[
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
            x509.Extension(x509.AuthorityKeyIdentifier.oid, False, aki),
        ],
        revoked_certificates=[e.build() if isinstance(e, RevokedEntry) else e for e in entries],
    )
    return builder.sign(issuer_key, hashes.SHA256())
