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

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID


def raw_issue_rate(ca_cert_pem: Path, ca_key_pem: Path, csr_pem: bytes, count: int,
                   passphrase: bytes | None = None) -> tuple[float, float]:
    """Build and sign ``count`` leaves from one CSR; returns ``(certificates per second, seconds)``.

    Key loading and CSR parsing happen before the clock starts: the figure is
    the cost of ``CertificateBuilder`` plus the RSA signature per certificate.
    """
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_pem.read_bytes(), passphrase,
                                                unsafe_skip_rsa_key_validation=True)
    csr = x509.load_pem_x509_csr(csr_pem)
    public_key = csr.public_key()
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    key_usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                              data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    now = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    for _ in range(count):
        (x509.CertificateBuilder()
         .subject_name(csr.subject)
         .issuer_name(ca_cert.subject)
         .public_key(public_key)  # type: ignore[arg-type]
         .serial_number(x509.random_serial_number())
         .not_valid_before(now)
         .not_valid_after(now + dt.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(key_usage, critical=True)
         .add_extension(eku, critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
         .add_extension(aki, critical=False)
         .add_extension(san, critical=False)
         .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
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
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_pem.read_bytes(), passphrase,
                                                unsafe_skip_rsa_key_validation=True)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    key_usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                              data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    issuer = ca_cert.subject
    now = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    for pem in csrs:
        csr = x509.load_pem_x509_csr(pem)
        if not csr.is_signature_valid:
            raise ValueError("a CSR's signature does not verify")
        public_key = csr.public_key()
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        (x509.CertificateBuilder()
         .subject_name(csr.subject)
         .issuer_name(issuer)
         .public_key(public_key)  # type: ignore[arg-type]
         .serial_number(x509.random_serial_number())
         .not_valid_before(now)
         .not_valid_after(now + dt.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(key_usage, critical=True)
         .add_extension(eku, critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
         .add_extension(aki, critical=False)
         .add_extension(san, critical=False)
         .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
         .public_bytes(serialization.Encoding.DER))
    seconds = time.perf_counter() - start
    return len(csrs) / seconds, seconds
