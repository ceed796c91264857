"""CMS renewal requests (twcactl.pkix.cms_request): built with cryptography, checked by OpenSSL,
and accepted by ``cert renew --request`` only when signed with the old certificate's key."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import ACCOUNT, CaHome, invoke, sh
from twcactl.csr import build_csr
from twcactl.errors import InputError, PolicyError
from twcactl.pkix.cms_request import (
    build_renewal_request,
    request_pem,
    verify_renewal_request,
)
from twcactl.pkix.keys import load_private_key

SUBJECT = [("C", "TW"), ("ST", "Taiwan"), ("L", "Taipei"), ("O", "TWCA"), ("CN", "www.twca.com.tw")]


def _issued(ca_home: CaHome, tmp_path: Path) -> tuple[x509.Certificate, object]:
    """A certificate from the CA for a software key, and that key."""
    csr_file, key_file = tmp_path / "www.csr", tmp_path / "www.key"
    made = invoke("csr", "new", "--cn", "www.twca.com.tw", "--org", "TWCA", "--country", "TW", "--state", "Taiwan",
                  "--locality", "Taipei", "--key-out", key_file, "--no-passphrase", "--out", csr_file)
    assert made.code == 0, made.stderr
    issued = ca_home.run("cert", "issue", csr_file, "--account", ACCOUNT, "--json")
    assert issued.code == 0, issued.stdout + issued.stderr
    cert = x509.load_pem_x509_certificate(Path(issued.json()["certificates"][0]["path"]).read_bytes())
    return cert, load_private_key(key_file.read_bytes(), None)


def test_request_round_trip_and_openssl_verifies_it(ca_home: CaHome, tmp_path: Path) -> None:
    old_cert, old_key = _issued(ca_home, tmp_path)
    new_csr = build_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), SUBJECT)
    der = build_renewal_request(new_csr, old_cert, old_key)  # type: ignore[arg-type]

    parsed = verify_renewal_request(der)
    assert parsed.signer == old_cert and parsed.csr == new_csr
    assert verify_renewal_request(request_pem(der), name="pem").signer == old_cert

    request = tmp_path / "renew.p7b"
    request.write_bytes(der)
    cafile = tmp_path / "cas.pem"
    cafile.write_bytes((ca_home.path / "ca" / "root.cer").read_bytes() + (ca_home.path / "ca" / "uca.cer").read_bytes())
    inner = tmp_path / "inner.der"
    proc = sh("openssl", "cms", "-verify", "-inform", "DER", "-in", request, "-binary", "-CAfile", cafile,
              "-purpose", "any", "-out", inner)
    assert proc.returncode == 0, proc.stderr
    assert x509.load_der_x509_csr(inner.read_bytes()) == new_csr

    accepted = ca_home.run("cert", "renew", format(old_cert.serial_number, "x"), "--request", request, "--early",
                           "--json")
    assert accepted.code == 0, accepted.stdout + accepted.stderr
    assert accepted.json()["renewed"] == format(old_cert.serial_number, "x")


def test_request_signed_by_another_key_is_refused(ca_home: CaHome, tmp_path: Path) -> None:
    old_cert, _old_key = _issued(ca_home, tmp_path)
    new_csr = build_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), SUBJECT)
    # another key with a self-made certificate carrying the old subject and serial
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake = (x509.CertificateBuilder().subject_name(old_cert.subject).issuer_name(old_cert.issuer)
            .public_key(impostor.public_key()).serial_number(old_cert.serial_number)
            .not_valid_before(old_cert.not_valid_before_utc).not_valid_after(old_cert.not_valid_after_utc)
            .sign(impostor, old_cert.signature_hash_algorithm))  # type: ignore[arg-type]
    request = tmp_path / "impostor.p7b"
    request.write_bytes(request_pem(build_renewal_request(new_csr, fake, impostor)))
    refused = ca_home.run("cert", "renew", format(old_cert.serial_number, "x"), "--request", request, "--early",
                          "--json")
    assert refused.code == 1, refused.stdout
    assert refused.json()["error"]["kind"] == "policy"


def test_tampered_signature_and_content_are_policy_errors(ca_home: CaHome, tmp_path: Path) -> None:
    old_cert, old_key = _issued(ca_home, tmp_path)
    new_csr = build_csr(ec.generate_private_key(ec.SECP256R1()), SUBJECT)
    der = bytearray(build_renewal_request(new_csr, old_cert, old_key))  # type: ignore[arg-type]
    csr_der = new_csr.public_bytes(serialization.Encoding.DER)
    at = der.find(csr_der) + len(csr_der) - 5  # inside the CSR's own signature: still parses
    altered = bytearray(der)
    altered[at] ^= 0x01
    with pytest.raises(PolicyError, match="altered"):
        verify_renewal_request(bytes(altered))
    bad_sig = bytearray(der)
    bad_sig[-3] ^= 0x01  # the SignerInfo's signature is the last field
    with pytest.raises(PolicyError, match="does not verify"):
        verify_renewal_request(bytes(bad_sig))


def test_malformed_requests_are_input_errors(tmp_path: Path, ca_home: CaHome) -> None:
    with pytest.raises(InputError):
        verify_renewal_request(b"\x30\x03\x02\x01\x01")
    with pytest.raises(InputError):
        verify_renewal_request(b"hello")
    with pytest.raises(InputError):
        verify_renewal_request(b"-----BEGIN PKCS7-----\nAAAA\n-----END PKCS7-----\n")
    junk = tmp_path / "junk.p7b"
    junk.write_bytes(b"-----BEGIN PKCS7-----\nMAMCAQE=\n-----END PKCS7-----\n")
    result = ca_home.run("cert", "renew", "01", "--request", junk)
    assert result.code == 3


def test_the_old_key_must_belong_to_the_old_certificate(ca_home: CaHome, tmp_path: Path) -> None:
    old_cert, _key = _issued(ca_home, tmp_path)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError):
        build_renewal_request(build_csr(other, SUBJECT), old_cert, other)
