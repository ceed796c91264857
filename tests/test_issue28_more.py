"""Issue 28: ``cert show FILE`` (PEM or DER, with its record when the home issued it), ``chain verify --key``
(exit 1 when the key is not the leaf's)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ACCOUNT, CaHome, invoke, make_ca, openssl_csr


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("more28")
    home = make_ca(base / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    csr = openssl_csr(base, name="www")
    serial = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, "--contact", "ops@twca.com.tw"
                      ).json()["certificates"][0]["serial"]
    assert home.run("cert", "export", serial, "--out-dir", base / "www").code == 0
    return {"home": home, "base": base, "serial": serial, "key": base / "www.key", "bundle": base / "www"}


def _self_signed(path: Path) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "elsewhere.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=3))
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return cert


def test_cert_show_takes_a_file_pem_or_der(issued: dict[str, Any], tmp_path: Path) -> None:
    home: CaHome = issued["home"]
    pem = issued["bundle"] / "server.cer"
    der = tmp_path / "server.der"
    der.write_bytes(x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(serialization.Encoding.DER))
    by_serial = home.run("--json", "cert", "show", issued["serial"]).json()
    for path in (pem, der):
        shown = home.run("--json", "cert", "show", path)
        assert shown.code == 0, shown.stderr
        doc = shown.json()
        assert doc["in_home"] is True and doc["file"] == str(path)
        assert doc["certificate"] == by_serial["certificate"] and doc["contact"] == "ops@twca.com.tw"
    foreign = _self_signed(tmp_path / "other.cer")
    other = home.run("--json", "cert", "show", tmp_path / "other.cer").json()
    assert other["in_home"] is False and other["certificate"]["serial"] == format(foreign.serial_number, "x")
    assert other["certificate"]["subject"] == "CN=elsewhere.example" and other["certificate"]["status"] == "valid"
    # without any CA home the file alone is shown
    alone = invoke("--home", tmp_path / "no-home", "--json", "cert", "show", pem)
    assert alone.code == 0 and alone.json()["in_home"] is False
    assert home.run("--json", "cert", "show", tmp_path / "missing.cer").code == 3
    assert home.run("--json", "cert", "show", issued["key"]).code == 3  # a key is not a certificate


def test_chain_verify_key_must_be_the_leafs(issued: dict[str, Any], tmp_path: Path) -> None:
    home: CaHome = issued["home"]
    b = issued["bundle"]
    ok = home.run("--json", "chain", "verify", b / "server.cer", "--untrusted", b / "uca.cer", "--key",
                  issued["key"])
    assert ok.code == 0, ok.stdout + ok.stderr
    assert ok.json()["key"] == {"file": str(issued["key"]), "matches": True}
    other_key = tmp_path / "other.key"
    other_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    refused = home.run("--json", "chain", "verify", b / "server.cer", "--untrusted", b / "uca.cer", "--key",
                       other_key)
    assert refused.code == 1 and "does not belong" in refused.json()["error"]["message"]
    plain = home.run("--json", "chain", "verify", b / "server.cer", "--untrusted", b / "uca.cer")
    assert plain.code == 0 and plain.json()["key"] is None
