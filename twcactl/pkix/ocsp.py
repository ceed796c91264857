"""OCSP responses (RFC 6960) from the CA's records, signed by the issuing CA itself.

A static HTTP front end can serve the DER this writes at the AIA OCSP URL.
A held certificate answers ``revoked`` with reason ``certificateHold``
(RFC 6960 §2.2); a serial this CA never issued answers ``unknown``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from twcactl.errors import InputError
from twcactl.pkix.keys import PrivateKey
from twcactl.pkix.parse_errors import X509_LOAD_ERRORS


@dataclass(frozen=True)
class OcspStatus:
    """What the records say of one serial: ``good``, ``revoked`` or ``unknown``."""

    status: str
    revoked_at: dt.datetime | None = None
    reason: str | None = None


def load_request(data: bytes, *, name: str = "request") -> ocsp.OCSPRequest:
    """Parse a DER OCSP request.

    Raises:
        InputError: not an OCSP request (exit 3).
    """
    try:
        request = ocsp.load_der_ocsp_request(data)
        request.serial_number  # noqa: B018 - force the parse
    except X509_LOAD_ERRORS as exc:
        raise InputError(f"{name} is not a DER OCSP request (one certificate per request).") from exc
    try:
        request.hash_algorithm  # noqa: B018 - a CertID hash cryptography does not know (issue 29: was a 500)
    except UnsupportedAlgorithm as exc:
        raise InputError(f"{name} names its certificate with a hash algorithm this responder does not know.") from exc
    if request.serial_number < 0:  # RFC 5280 §4.1.2.2: positive; no response can name it (was a 500)
        raise InputError(f"{name} asks about a negative serial number.")
    return request


#: (issuer, hash name) -> (issuerNameHash, issuerKeyHash): a responder answers for a handful of CAs, and parsing
#: the SPKI for the key hash cost more than signing the response (bounded: cleared when it grows past 64).
_HASHES: dict[tuple[x509.Certificate, str], tuple[bytes, bytes]] = {}


def _issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    found = _HASHES.get((issuer, algorithm.name))
    if found is None:
        if len(_HASHES) >= 64:
            _HASHES.clear()
        found = _HASHES[(issuer, algorithm.name)] = _compute_issuer_hashes(issuer, algorithm)
    return found


def _compute_issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    name_hash = hashes.Hash(algorithm)
    name_hash.update(issuer.subject.public_bytes())
    key_hash = hashes.Hash(algorithm)
    spki = issuer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # RFC 6960 §4.1.1: the hash of the subjectPublicKey BIT STRING value, not of the whole SPKI
    from asn1crypto import keys as asn1_keys

    key_hash.update(asn1_keys.PublicKeyInfo.load(spki)["public_key"].contents[1:])
    return name_hash.finalize(), key_hash.finalize()


def build_response(
    request: ocsp.OCSPRequest,
    *,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    lookup: Callable[[int], OcspStatus],
    now: dt.datetime,
    validity: dt.timedelta,
    responder: tuple[x509.Certificate, PrivateKey] | None = None,
) -> ocsp.OCSPResponse:
    """Answer ``request`` for ``issuer_cert``'s certificates.

    A request for another issuer gets an ``unauthorized`` response
    (RFC 6960 §2.3); the request's nonce is echoed.  ``responder``, a
    delegated OCSP signing certificate issued by ``issuer_cert`` with its key
    (RFC 6960 §4.2.2.2), signs instead of the CA key and travels in the
    response's ``certs``.
    """
    algorithm = request.hash_algorithm
    name_hash, key_hash = _issuer_hashes(issuer_cert, algorithm)
    if request.issuer_name_hash != name_hash or request.issuer_key_hash != key_hash:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    found = lookup(request.serial_number)
    cert_status = {
        "good": ocsp.OCSPCertStatus.GOOD,
        "revoked": ocsp.OCSPCertStatus.REVOKED,
        "unknown": ocsp.OCSPCertStatus.UNKNOWN,
    }[found.status]
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=name_hash,
        issuer_key_hash=key_hash,
        serial_number=request.serial_number,
        algorithm=algorithm,
        cert_status=cert_status,
        this_update=now,
        next_update=now + validity,
        revocation_time=found.revoked_at if found.status == "revoked" else None,
        revocation_reason=x509.ReasonFlags(found.reason) if found.status == "revoked" and found.reason else None,
    )
    signer_cert, signer_key = responder if responder is not None else (issuer_cert, issuer_key)
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert)
    if responder is not None:
        builder = builder.certificates([signer_cert])
    try:
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce)
        builder = builder.add_extension(nonce.value, critical=False)
    except x509.ExtensionNotFound:
        pass
    return builder.sign(signer_key, hashes.SHA256())


def issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """``(issuerNameHash, issuerKeyHash)`` of ``issuer`` with ``algorithm``: the CertID fields a request for
    one of its certificates carries (RFC 6960 §4.1.1; computed once per issuer and algorithm)."""
    return _issuer_hashes(issuer, algorithm)


def issuer_matches(request: ocsp.OCSPRequest, issuer: x509.Certificate) -> bool:
    """True when ``request`` asks about a certificate of ``issuer`` (CertID hashes, RFC 6960 §4.1.1)."""
    name_hash, key_hash = _issuer_hashes(issuer, request.hash_algorithm)
    return request.issuer_name_hash == name_hash and request.issuer_key_hash == key_hash
