"""The floor for batch issuance: cryptography alone building and signing leaves in one loop.

No policy, no records, no files: the issuing CA's RSA-2048 key already
loaded, and roughly the extensions of twcactl's ``ssl`` profile.
:func:`raw_batch_rate` (issue 18) parses and verifies each of the batch's
own CSRs before building and signing; :func:`raw_issue_rate` (issue 7)
only builds and signs from one parsed CSR.  twcactl's batch rate is
compared against :func:`raw_batch_rate` measured in the same run.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID


class _Signer:
    """The issuing CA loaded before any clock starts, and the ``ssl`` profile's fixed extensions."""

    def __init__(self, ca_cert_pem: Path, ca_key_pem: Path, passphrase: bytes | None) -> None:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.read_bytes())
        self.ca_key = serialization.load_pem_private_key(ca_key_pem.read_bytes(), passphrase,
                                                         unsafe_skip_rsa_key_validation=True)
        self.issuer = ca_cert.subject
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        self.key_usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                       crl_sign=False, encipher_only=False, decipher_only=False)
        self.eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
        self.now = dt.datetime.now(dt.UTC)

    def sign(self, subject: x509.Name, public_key: Any, san: x509.SubjectAlternativeName) -> x509.Certificate:
        """One leaf for ``subject`` and ``public_key`` with the profile's extensions, signed RSA/SHA-256."""
        return (x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(self.issuer)
                .public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(self.now)
                .not_valid_after(self.now + dt.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(self.key_usage, critical=True)
                .add_extension(self.eku, critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                .add_extension(self.aki, critical=False)
                .add_extension(san, critical=False)
                .sign(self.ca_key, hashes.SHA256()))  # type: ignore[arg-type]


def raw_issue_rate(ca_cert_pem: Path, ca_key_pem: Path, csr_pem: bytes, count: int,
                   passphrase: bytes | None = None) -> tuple[float, float]:
    """Build and sign ``count`` leaves from one CSR; returns ``(certificates per second, seconds)``.

    Key loading and CSR parsing happen before the clock starts: the figure is
    the cost of ``CertificateBuilder`` plus the RSA signature per certificate.
    """
    signer = _Signer(ca_cert_pem, ca_key_pem, passphrase)
    csr = x509.load_pem_x509_csr(csr_pem)
    public_key = csr.public_key()
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    start = time.perf_counter()
    for _ in range(count):
        signer.sign(csr.subject, public_key, san)
    seconds = time.perf_counter() - start
    return count / seconds, seconds


def raw_batch_rate(ca_cert_pem: Path, ca_key_pem: Path, csrs: Sequence[bytes],
                   passphrase: bytes | None = None) -> tuple[float, float]:
    """Parse, verify, build and sign one leaf per CSR of ``csrs`` (PEM bytes, already read into memory).

    The peer of ``cert issue DIR`` (issue 18): the same CSRs and CA key, each CSR parsed
    (``load_pem_x509_csr``), its self-signature checked (``is_signature_valid``), its SAN extension
    copied, and the leaf built with the ``ssl`` profile's extensions and signed (RSA, SHA-256).  No
    policy, no records, no log, no files.  Returns ``(certificates per second, seconds)``; the CA key
    is loaded before the clock starts.

    Raises:
        ValueError: a CSR does not parse or its signature does not verify.
    """
    signer = _Signer(ca_cert_pem, ca_key_pem, passphrase)
    start = time.perf_counter()
    for pem in csrs:
        csr = x509.load_pem_x509_csr(pem)
        if not csr.is_signature_valid:
            raise ValueError("a CSR's signature does not verify")
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        signer.sign(csr.subject, csr.public_key(), san).public_bytes(serialization.Encoding.DER)
    seconds = time.perf_counter() - start
    return len(csrs) / seconds, seconds
