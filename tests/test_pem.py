"""Reading CSRs and certificates in every shape real tools and users produce."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from twcactl.errors import InputError
from twcactl.pkix.pem import load_certificate, load_certificates, load_csr


@pytest.fixture(scope="module")
def csr() -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "www.twca.com.tw")])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def _pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def test_plain_pem_and_der(csr: x509.CertificateSigningRequest) -> None:
    assert load_csr(_pem(csr)) == csr
    assert load_csr(csr.public_bytes(serialization.Encoding.DER)) == csr


def test_new_header_crlf_and_surrounding_text(csr: x509.CertificateSigningRequest) -> None:
    body = _pem(csr).replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST").replace(b"\n", b"\r\n")
    pasted = b"Here is my CSR, thanks!\r\n\r\n   " + body + b"\r\n-- \r\nsent from my phone\r\n"
    assert load_csr(pasted) == csr


def test_bare_base64_body(csr: x509.CertificateSigningRequest) -> None:
    body = base64.encodebytes(csr.public_bytes(serialization.Encoding.DER))
    assert load_csr(b"\n  " + body + b"\n") == csr


@pytest.mark.parametrize("data", [
    b"hello world",
    b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
    b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
    b"\x30\x82\xff\xff\x00\x00",
    b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    b"\x00" * 64,
])
def test_malformed_inputs_are_input_errors(data: bytes) -> None:
    with pytest.raises(InputError) as info:
        load_csr(data, name="x.csr")
    assert info.value.exit_code == 3
    assert "x.csr" in info.value.message


def test_several_csrs_refused(csr: x509.CertificateSigningRequest) -> None:
    with pytest.raises(InputError, match="2 CSRs"):
        load_csr(_pem(csr) + _pem(csr))


def test_certificates_bundle_and_single() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert load_certificates(b"junk\n" + pem + pem) == [cert, cert]
    assert load_certificate(cert.public_bytes(serialization.Encoding.DER)) == cert
    with pytest.raises(InputError, match="expected one"):
        load_certificate(pem + pem)
