"""Issue 2's "done when": real CSRs from OpenSSL, keytool and certtool become a
bundle that ``openssl verify`` accepts and a PFX that OpenSSL and keytool open;
bad input is refused with the contract's exit codes and changes nothing."""

from __future__ import annotations

import re
import sqlite3
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import ACCOUNT, CaHome, make_ca, openssl_csr, require, sh

PFX_PASSWORD = "pfx-secret-42"


def issue(home: CaHome, csr: Path, *extra: str) -> dict:
    result = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, *extra)
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert doc["failed"] == []
    return doc["certificates"][0]


def export_and_verify(home: CaHome, serial: str, out_dir: Path) -> x509.Certificate:
    result = home.run("cert", "export", serial, "--out-dir", out_dir)
    assert result.code == 0, result.stderr
    proc = sh(require("openssl"), "verify", "-CAfile", out_dir / "root.cer", "-untrusted", out_dir / "uca.cer",
              out_dir / "server.cer")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.decode().strip().endswith(": OK")
    with zipfile.ZipFile(out_dir / "cert.zip") as archive:
        assert sorted(archive.namelist()) == ["root.cer", "server.cer", "uca.cer"]
        assert x509.load_pem_x509_certificate(archive.read("server.cer")).serial_number == int(serial, 16)
    return x509.load_pem_x509_certificate((out_dir / "server.cer").read_bytes())


@pytest.mark.parametrize("maker", ["openssl_request", "keytool_request", "certtool_request"])
def test_real_tool_csr_becomes_verified_bundle(ca_home: CaHome, maker: str, request: pytest.FixtureRequest,
                                                tmp_path: Path) -> None:
    csr_path: Path = request.getfixturevalue(maker)
    record = issue(ca_home, csr_path)
    assert record["cn"] == "www.twca.com.tw"
    assert record["account"] == ACCOUNT
    assert record["status"] == "valid"
    assert record["serial"] == format(int(record["serial"], 16), "x")
    cert = export_and_verify(ca_home, record["serial"], tmp_path / "bundle")

    assert cert.version is x509.Version.v3
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"
    assert cert.serial_number > 0 and cert.serial_number.bit_length() >= 64 - 8  # random, at least 64 bits drawn
    subject = {a.oid: a.value for a in cert.subject}
    assert subject == {
        NameOID.COUNTRY_NAME: "TW", NameOID.STATE_OR_PROVINCE_NAME: "Taiwan", NameOID.LOCALITY_NAME: "Taipei",
        NameOID.ORGANIZATION_NAME: "TWCA", NameOID.ORGANIZATIONAL_UNIT_NAME: "SYSTEM",
        NameOID.COMMON_NAME: "www.twca.com.tw",
    }
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.twca.com.tw"]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment and not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    uca = x509.load_pem_x509_certificate((tmp_path / "bundle" / "uca.cer").read_bytes())
    assert aki.key_identifier == uca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)


def test_default_ca_and_pkilint(tmp_path: Path, openssl_request: Path) -> None:
    """The default CA (RSA 4096 root) issues a certificate that passes pkilint's RFC 5280 lint."""
    home = make_ca(tmp_path / "ca", "--crl-url", "http://crl.example.test/uca.crl",
                   "--ocsp-url", "http://ocsp.example.test", fast=False)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "1").code == 0
    record = issue(home, openssl_request)
    root = x509.load_pem_x509_certificate((home.path / "ca" / "root.cer").read_bytes())
    uca = x509.load_pem_x509_certificate((home.path / "ca" / "uca.cer").read_bytes())
    assert root.public_key().key_size == 4096  # type: ignore[union-attr]
    assert uca.public_key().key_size >= 2048  # type: ignore[union-attr]
    root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    uca_bc = uca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (root_bc.ca, root_bc.path_length, uca_bc.ca, uca_bc.path_length) == (True, 1, True, 0)
    for ca_cert in (root, uca):
        ku = ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign
    leaf_path = Path(record["path"])
    leaf = x509.load_pem_x509_certificate(leaf_path.read_bytes())
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name == [x509.UniformResourceIdentifier("http://crl.example.test/uca.crl")]
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [a.access_location.value for a in aia] == ["http://ocsp.example.test"]
    lint = require("lint_pkix_cert")
    for path in (leaf_path, home.path / "ca" / "uca.cer"):
        proc = sh(lint, "lint", "-s", "WARNING", path)
        findings = proc.stdout.decode()
        assert not re.search(r"\b(FATAL|ERROR)\b", findings), findings


def test_pfx_opens_in_openssl_and_keytool(ca_home: CaHome, tool_dir: Path, tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, name="pfx")
    record = issue(ca_home, csr)
    export_and_verify(ca_home, record["serial"], tmp_path / "bundle")
    pfx = tmp_path / "www.pfx"
    result = ca_home.run("--json", "pfx", "export", "--cert", tmp_path / "bundle" / "server.cer",
                         "--key", tmp_path / "pfx.key", "--out", pfx, "--password", "env:PFX_PW",
                         env={"PFX_PW": PFX_PASSWORD})
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert doc["certificates"] == 3 and doc["chain_source"] == "ca-home"
    assert pfx.stat().st_mode & 0o077 == 0

    proc = sh(require("openssl"), "pkcs12", "-in", pfx, "-info", "-passin", f"pass:{PFX_PASSWORD}", "-nodes")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    certs = x509.load_pem_x509_certificates(
        "".join(re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", text, re.S)).encode())
    assert {c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in certs} == {
        "www.twca.com.tw", "twcactl Local Issuing CA", "twcactl Local Root CA"}
    assert text.count("-----BEGIN PRIVATE KEY-----") == 1
    info = proc.stderr.decode()
    assert "AES-256-CBC" in info and "sha256" in info.lower()

    proc = sh(require("keytool"), "-list", "-v", "-storetype", "PKCS12", "-keystore", pfx, "-storepass", PFX_PASSWORD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listing = proc.stdout.decode()
    assert "Entry type: PrivateKeyEntry" in listing
    assert "Certificate chain length: 3" in listing


def _snapshot(home: CaHome) -> tuple[list, list, list, int, list[str]]:
    conn = sqlite3.connect(home.path / "twcactl.db")
    try:
        return (
            conn.execute("SELECT serial FROM certificates ORDER BY serial").fetchall(),
            conn.execute("SELECT * FROM ledger ORDER BY id").fetchall(),
            conn.execute("SELECT seq, hash FROM activity_log ORDER BY seq").fetchall(),
            conn.execute("SELECT balance FROM accounts WHERE id = ?", (ACCOUNT,)).fetchone()[0],
            sorted(p.name for p in (home.path / "certs").iterdir()),
        )
    finally:
        conn.close()


def _one_line_error(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), stderr
    assert len([line for line in lines if line.startswith("error: ")]) == 1
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), stderr
    assert "Traceback" not in stderr


def test_refusals_change_nothing(ca_home: CaHome, tmp_path: Path) -> None:
    before = _snapshot(ca_home)
    example = openssl_csr(tmp_path, "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/OU=SYSTEM/CN=www.example.com", name="example")
    result = ca_home.run("cert", "issue", example, "--account", ACCOUNT)
    assert result.code == 1
    _one_line_error(result.stderr)
    assert "cn.domain" in result.stderr

    result = ca_home.run("--json", "cert", "issue", example, "--account", ACCOUNT)
    assert result.code == 1
    doc = result.json()
    assert doc["error"]["code"] == 1 and doc["error"]["kind"] == "policy"
    finding = next(f for f in doc["findings"] if f["rule"] == "cn.domain")
    assert finding["ok"] is False and "www.example.com" in finding["message"]
    assert all(f["ok"] for f in doc["findings"] if f["rule"] != "cn.domain")

    malformed = tmp_path / "bad.csr"
    malformed.write_text("-----BEGIN CERTIFICATE REQUEST-----\nMIIBnotreally==\n-----END CERTIFICATE REQUEST-----\n")
    result = ca_home.run("cert", "issue", malformed, "--account", ACCOUNT)
    assert result.code == 3
    _one_line_error(result.stderr)

    result = ca_home.run("cert", "issue", tmp_path / "missing.csr", "--account", ACCOUNT)
    assert result.code == 3
    _one_line_error(result.stderr)

    good = openssl_csr(tmp_path, name="good")
    result = ca_home.run("cert", "issue", good, "--account", ACCOUNT, "--ca-passphrase", "env:WRONG",
                         env={"WRONG": "not the passphrase at all"})
    assert result.code == 4
    _one_line_error(result.stderr)
    assert "not the passphrase" not in result.stderr

    result = ca_home.run("cert", "issue", good, "--account", ACCOUNT, env={"TWCACTL_CA_PASSPHRASE_SOURCE": None})
    assert result.code == 4, "no passphrase and no terminal"
    _one_line_error(result.stderr)
    assert "--ca-passphrase" in result.stderr

    assert _snapshot(ca_home) == before


def test_quota_is_deducted_and_enforced(ca_home: CaHome, tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, name="q")
    issue(ca_home, csr, "--years", "3")
    account = ca_home.run("--json", "account", "show", ACCOUNT).json()
    assert account["balance"] == 7
    assert [e["delta"] for e in account["ledger"]] == [-3, 10]
    assert account["ledger"][0]["operator"] == "alice"
    before = _snapshot(ca_home)
    result = ca_home.run("cert", "issue", csr, "--account", ACCOUNT, "--years", "8")
    assert result.code == 5
    _one_line_error(result.stderr)
    assert _snapshot(ca_home) == before
    result = ca_home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, "--days", "400")
    assert result.code == 0
    assert ca_home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 5
