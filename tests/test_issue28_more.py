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


def test_a_software_signing_and_encryption_pair(issued: dict[str, Any], tmp_path: Path) -> None:
    """csr new --pair, cert issue --pair, cert export (sign.cer / enc.cer) and two PFX files whose friendly names
    tell the halves apart."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    home: CaHome = issued["home"]
    made = invoke("--json", "csr", "new", "--pair", "--cn", "A123456789-01-YIRU", "--org", "TWCA", "--country",
                  "TW", "--san", "yiru@twca.com.tw", "--key-type", "ec-p256", "--key-out", tmp_path / "yiru.key",
                  "--out", tmp_path / "yiru.csr", "--no-passphrase")
    assert made.code == 0, made.stdout + made.stderr
    assert [d["profile"] for d in made.json()["pair"]] == ["user-sign", "user-enc"]
    sign_csr, enc_csr = tmp_path / "yiru-sign.csr", tmp_path / "yiru-enc.csr"
    assert sign_csr.is_file() and enc_csr.is_file() and (tmp_path / "yiru-sign.key").is_file()
    assert home.run("cert", "issue", "--pair", sign_csr, "--account", ACCOUNT).code == 2  # two CSRs, in order
    result = home.run("--json", "cert", "issue", "--pair", sign_csr, enc_csr, "--account", ACCOUNT)
    assert result.code == 0, result.stdout + result.stderr
    certs = result.json()["certificates"]
    assert [c["profile"] for c in certs] == ["user-sign", "user-enc"]
    names = {}
    for c, tag in zip(certs, ("sign", "enc")):
        out = tmp_path / f"bundle-{tag}"
        exported = home.run("--json", "cert", "export", c["serial"], "--out-dir", out)
        assert exported.code == 0, exported.stderr
        assert sorted(p.name for p in out.iterdir()) == sorted(["root.cer", "uca.cer", f"{tag}.cer", "cert.zip"])
        leaf = x509.load_pem_x509_certificate((out / f"{tag}.cer").read_bytes())
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.content_commitment if tag == "sign" else ku.key_agreement
        pfx = tmp_path / f"{tag}.pfx"
        done = home.run("pfx", "export", "--cert", out / f"{tag}.cer", "--key", tmp_path / f"yiru-{tag}.key",
                        "--out", pfx, "--password", "pass:Pfx-pass-28")
        assert done.code == 0, done.stderr
        loaded = pkcs12.load_pkcs12(pfx.read_bytes(), b"Pfx-pass-28")
        assert loaded.cert is not None and loaded.cert.friendly_name is not None
        names[tag] = loaded.cert.friendly_name.decode()
    assert names == {"sign": "A123456789-01-YIRU (signing)", "enc": "A123456789-01-YIRU (encryption)"}
