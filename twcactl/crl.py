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
from twcactl.keys import PrivateKey

#: RFC 5280 §5.3.1 reason names accepted by ``cert revoke`` (certificateHold only through ``cert hold``).
REVOKE_REASONS: tuple[str, ...] = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)
HOLD_REASON = "certificateHold"


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


_REASONS: dict[str, x509.CRLReason] = {}


def _reason_extension(reason: str) -> x509.CRLReason:
    """One shared CRLReason object per reason: a CRL of 100,000 entries builds them once, not 100,000 times."""
    ext = _REASONS.get(reason)
    if ext is None:
        ext = _REASONS[reason] = x509.CRLReason(x509.ReasonFlags(reason))
    return ext


@dataclass(frozen=True)
class RevokedEntry:
    """One CRL entry: serial (int), revocation time, reason name, optional invalidity date."""

    serial: int
    revoked_at: dt.datetime
    reason: str
    invalidity_date: dt.datetime | None = None

    def build(self) -> x509.RevokedCertificate:
        """The cryptography entry object."""
        builder = x509.RevokedCertificateBuilder().serial_number(self.serial).revocation_date(self.revoked_at)
        if self.reason != "unspecified":
            builder = builder.add_extension(_reason_extension(self.reason), critical=False)
        if self.invalidity_date is not None:
            builder = builder.add_extension(x509.InvalidityDate(self.invalidity_date.replace(tzinfo=None)), critical=False)
        return builder.build()


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
