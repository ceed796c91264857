"""Reading the PEM and DER that real tools produce.

CSRs arrive with ``-----BEGIN CERTIFICATE REQUEST-----`` or the
Microsoft/Java ``-----BEGIN NEW CERTIFICATE REQUEST-----`` header, with text
before and after the block (GnuTLS ``certtool`` prints a dump first),
CRLF line ends and stray whitespace, or as DER (domain.md §1).  We find the
block ourselves and hand the DER to cryptography, which does all ASN.1.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography import x509

from twcactl.errors import InputError
from twcactl.pkix.parse_errors import X509_LOAD_ERRORS

_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END ([A-Z0-9 ]+)-----",
    re.DOTALL,
)
_B64_ONLY = re.compile(rb"^[A-Za-z0-9+/=\s]+$")

CSR_LABELS = frozenset({"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"})
CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"})


def pem_blocks(data: bytes, labels: frozenset[str], *, name: str = "input") -> list[bytes]:
    """The DER of every PEM block in ``data`` whose label is in ``labels``.

    Headers (``Proc-Type:`` lines) inside a block are skipped; whitespace and
    CR are ignored.

    Raises:
        InputError: a block with a matching label is not valid base64 (exit 3).
    """
    out: list[bytes] = []
    for match in _BLOCK.finditer(data):
        label = match.group(1).decode("ascii")
        if label not in labels or match.group(3).decode("ascii") != label:
            continue
        body = b"".join(line for line in match.group(2).splitlines() if b":" not in line)
        try:
            out.append(base64.b64decode(b"".join(body.split()), validate=True))
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"{name}: the {label} block is not valid base64.") from exc
    return out


def _single_der(data: bytes, labels: frozenset[str], *, name: str, what: str) -> bytes:
    """The one DER object in ``data``: a PEM block, raw DER, or bare base64."""
    if b"-----BEGIN" in data:
        blocks = pem_blocks(data, labels, name=name)
        if not blocks:
            raise InputError(f"{name} holds no {what} (no PEM block with the expected header).")
        if len(blocks) > 1:
            raise InputError(f"{name} holds {len(blocks)} {what}s; give one per file.")
        return blocks[0]
    if data[:1] == b"\x30":
        return data
    stripped = data.strip()
    if stripped and _B64_ONLY.match(stripped):
        # A pasted body without its header lines, as web forms often receive it
        try:
            return base64.b64decode(b"".join(stripped.split()), validate=True)
        except (binascii.Error, ValueError):
            pass
    raise InputError(f"{name} is not a {what} in PEM or DER form.")


def load_csr(data: bytes, *, name: str = "CSR") -> x509.CertificateSigningRequest:
    """Parse a CSR from PEM (either header), DER or bare base64.

    Raises:
        InputError: no CSR, several CSRs, or malformed ASN.1 (exit 3).
    """
    if data.startswith(b"-----BEGIN CERTIFICATE REQUEST-----") and data.count(b"-----BEGIN") == 1:
        # the plain OpenSSL form: cryptography's own PEM reader, no scan of ours
        try:
            csr = x509.load_pem_x509_csr(data)
            csr.subject  # noqa: B018 - force the lazy parse
            return csr
        except X509_LOAD_ERRORS:  # fall through to our reader, which names the problem
            pass
    der = _single_der(data, CSR_LABELS, name=name, what="CSR")
    try:
        csr = x509.load_der_x509_csr(der)
        csr.subject  # noqa: B018 - force the lazy parse so malformed names fail here
    except X509_LOAD_ERRORS as exc:
        raise InputError(f"{name} is not a well-formed CSR.") from exc
    return csr


def load_certificates(data: bytes, *, name: str = "certificate file") -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the one DER certificate.

    Raises:
        InputError: no certificate, or a malformed one (exit 3).
    """
    if b"-----BEGIN" in data:
        ders = pem_blocks(data, CERT_LABELS, name=name)
        if not ders:
            raise InputError(f"{name} holds no certificate.")
    else:
        ders = [_single_der(data, CERT_LABELS, name=name, what="certificate")]
    certs: list[x509.Certificate] = []
    for der in ders:
        try:
            cert = x509.load_der_x509_certificate(der)
            cert.subject  # noqa: B018 - force the lazy parse
        except X509_LOAD_ERRORS as exc:
            raise InputError(f"{name} holds a malformed certificate.") from exc
        certs.append(cert)
    return certs


def load_certificate(data: bytes, *, name: str = "certificate file") -> x509.Certificate:
    """Exactly one certificate (PEM or DER).

    Raises:
        InputError: none, several, or malformed (exit 3).
    """
    certs = load_certificates(data, name=name)
    if len(certs) != 1:
        raise InputError(f"{name} holds {len(certs)} certificates; expected one.")
    return certs[0]


CRL_LABELS = frozenset({"X509 CRL"})


def load_crls(data: bytes, *, name: str = "CRL file") -> list[x509.CertificateRevocationList]:
    """Every CRL in a PEM bundle, or the one DER CRL.

    Raises:
        InputError: no CRL, or a malformed one (exit 3).
    """
    ders = pem_blocks(data, CRL_LABELS, name=name) if b"-----BEGIN" in data else [data]
    if not ders:
        raise InputError(f"{name} holds no CRL.")
    crls: list[x509.CertificateRevocationList] = []
    for der in ders:
        try:
            crl = x509.load_der_x509_crl(der)
            crl.issuer  # noqa: B018 - force the parse
            for _entry in crl:  # entries are parsed lazily too; a bad one must fail here, not mid-check
                pass
        except X509_LOAD_ERRORS as exc:
            raise InputError(f"{name} is not a well-formed CRL.") from exc
        crls.append(crl)
    return crls
