"""Certificate signing requests: build, and read what a real tool produced.

``facts`` turns a parsed CSR into the :class:`RequestFacts` the policy
checks; ``describe`` gives everything an operator sees in ``csr show``
("parse CSR", domain.md §1); ``build_csr`` makes a PKCS#10 request with any
cryptography private key, a token key included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID

from twcactl import names
from twcactl.keys import PrivateKey, describe_public_key, key_label
from twcactl.models import RequestFacts, SignatureState

_WEAK_HASHES = frozenset({"md5", "sha1", "md2", "md4"})


def signature_hash_name(csr: x509.CertificateSigningRequest) -> str | None:
    """The signature's hash name (``sha256``, ``sha1``...), None when it has none or is unknown."""
    try:
        algorithm = csr.signature_hash_algorithm
    except Exception:  # UnsupportedAlgorithm for hashes cryptography does not know (MD2, MD4)
        oid_name = getattr(csr.signature_algorithm_oid, "_name", "")
        lowered = oid_name.lower()
        for weak in ("md2", "md4", "md5", "sha1"):
            if lowered.startswith(weak):
                return weak
        return None
    return algorithm.name if algorithm is not None else None


def signature_state(csr: x509.CertificateSigningRequest) -> SignatureState:
    """``valid``, ``invalid``, or ``not checked`` for a weak hash.

    cryptography refuses to verify SHA-1 (and older) request signatures that
    OpenSSL still verifies, so those are "not checked" rather than
    "invalid" (architecture.md, library facts).
    """
    if signature_hash_name(csr) in _WEAK_HASHES:
        return "not checked"
    try:
        return "valid" if csr.is_signature_valid else "invalid"
    except Exception:
        return "not checked"


def requested_sans(csr: x509.CertificateSigningRequest) -> list[tuple[str, str]]:
    """The subjectAltName entries requested in the CSR's extensionRequest (empty when none)."""
    try:
        ext = csr.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return []
    return names.general_names(ext.value)  # type: ignore[arg-type]


def facts(csr: x509.CertificateSigningRequest) -> RequestFacts:
    """What the policy rules need to know about ``csr``.

    Raises:
        ValueError: the extensionRequest cannot be decoded (callers turn it
            into an InputError).
    """
    kind, bits, curve = describe_public_key(csr.public_key())
    return RequestFacts(
        subject=names.attributes(csr.subject),
        sans=tuple(requested_sans(csr)),
        key_type=kind,
        key_size=bits,
        key_curve=curve,
        signature_hash=signature_hash_name(csr),
        signature_state=signature_state(csr),
    )


@dataclass(frozen=True)
class CsrDescription:
    """Everything ``csr show`` reports about a request.

    ``problems`` lists fields that could not be decoded, each with its reason.
    """

    subject: list[dict[str, str]]
    subject_text: str
    sans: list[str]
    key: str
    key_type: str
    key_size: int
    signature_algorithm: str
    signature_hash: str | None
    signature: SignatureState
    extensions: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``csr show --json`` document."""
        return {
            "subject": self.subject,
            "subject_text": self.subject_text,
            "sans": self.sans,
            "key": {"type": self.key_type, "size": self.key_size, "label": self.key},
            "signature_algorithm": self.signature_algorithm,
            "signature_hash": self.signature_hash,
            "signature": self.signature,
            "extensions": self.extensions,
            "problems": self.problems,
        }


def describe(csr: x509.CertificateSigningRequest) -> CsrDescription:
    """Decode every field of ``csr`` that an operator needs; never raises for bad content."""
    problems: list[dict[str, str]] = []
    try:
        subject = [{"name": a.name, "oid": a.oid, "value": a.value} for a in names.attributes(csr.subject)]
        subject_text = names.rfc4514(csr.subject)
    except Exception as exc:
        subject, subject_text = [], ""
        problems.append({"field": "subject", "reason": str(exc) or type(exc).__name__})
    sans: list[str] = []
    extensions: list[dict[str, Any]] = []
    try:
        for ext in csr.extensions:
            extensions.append({"oid": ext.oid.dotted_string, "name": getattr(ext.oid, "_name", ext.oid.dotted_string), "critical": ext.critical})
        sans = names.sans_json(requested_sans(csr))
    except Exception as exc:
        problems.append({"field": "extensions", "reason": str(exc) or type(exc).__name__})
    try:
        public_key = csr.public_key()
        kind, bits, _curve = describe_public_key(public_key)
        label = key_label(public_key)
    except Exception as exc:
        kind, bits, label = "unknown", 0, "unknown"
        problems.append({"field": "public key", "reason": str(exc) or type(exc).__name__})
    sig_oid = csr.signature_algorithm_oid
    return CsrDescription(
        subject=subject,
        subject_text=subject_text,
        sans=sans,
        key=label,
        key_type=kind,
        key_size=bits,
        signature_algorithm=getattr(sig_oid, "_name", sig_oid.dotted_string),
        signature_hash=signature_hash_name(csr),
        signature=signature_state(csr),
        extensions=extensions,
        problems=problems,
    )


def build_csr(
    key: PrivateKey,
    subject: Sequence[tuple[str, str]],
    *,
    dns_names: Sequence[str] = (),
    emails: Sequence[str] = (),
) -> x509.CertificateSigningRequest:
    """A PKCS#10 request signed with ``key`` (SHA-256).

    Args:
        key: any cryptography RSA or EC private key (a token key too).
        subject: ``(short_name, value)`` pairs in order, e.g. ``[("C", "TW"), ("CN", "www.x.tw")]``.
        dns_names: dNSName SANs, in order, duplicates dropped.
        emails: rfc822Name SANs.

    Raises:
        ValueError: cryptography refuses a value (e.g. a C that is not two characters).
    """
    builder = x509.CertificateSigningRequestBuilder().subject_name(names.build_name(subject))
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for dns in dns_names:
        if dns.lower() not in seen:
            seen.add(dns.lower())
            entries.append(x509.DNSName(dns))
    entries.extend(x509.RFC822Name(e) for e in emails)
    if entries:
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    return builder.sign(key, hashes.SHA256())
