"""Issue 14, the HSM half: CA keys made and used on a PKCS#11 token (SoftHSM2), never as files.

Independent checkers: OpenSC's ``pkcs11-tool`` reads the token's objects and flags, OpenSSL verifies the
chain, the CRL and the OCSP response.  Every test has its own SoftHSM2 token directory (``SOFTHSM2_CONF``).
"""

from __future__ import annotations

import json
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.card_support import PIN, SoftHsm, parse_pkcs11_tool_objects, softhsm_directory
from tests.conftest import ACCOUNT, CaHome, invoke, make_ca, openssl_csr, require, sh
from twcactl.backends.p11_uri import Pkcs11Uri, parse_pkcs11_uri
from twcactl.errors import UsageError


@pytest.fixture
def hsm(tmp_path: Path) -> Iterator[SoftHsm]:
    """A SoftHSM2 token directory of this test alone."""
    require("softhsm2-util")
    with softhsm_directory(tmp_path / "softhsm") as h:
        yield h


def hsm_home(hsm: SoftHsm, path: Path, *extra: str, token: str | None = None) -> tuple[CaHome, str]:
    """``ca init --key-uri pkcs11:token=LABEL --pkcs11-module M --ca-passphrase env:...`` (RSA root, EC uca)."""
    label = token or hsm.new_token(prefix="CA")
    home = make_ca(path, "--key-uri", f"pkcs11:token={label}", "--pkcs11-module", hsm.module,
                   "--key-type", "ec-p256", *extra, passphrase=PIN)
    return home, label


def token_objects(hsm: SoftHsm, label: str) -> list[dict[str, str]]:
    proc = hsm.pkcs11_tool(label, "--login", "--pin", PIN, "-O")
    assert proc.returncode == 0, proc.stderr
    return parse_pkcs11_tool_objects(proc.stdout)


def private_keys(hsm: SoftHsm, label: str) -> list[dict[str, str]]:
    return [o for o in token_objects(hsm, label) if o["kind"].startswith("Private Key Object")]


def ca_cert(home: CaHome, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((home.path / "ca" / f"{name}.cer").read_bytes())


def certificate_count(home: CaHome) -> int:
    result = home.run("--json", "cert", "list")
    assert result.code == 0, result.stderr
    doc = result.json()
    return len(doc["certificates"] if isinstance(doc, dict) else doc)


# ----------------------------------------------------------------- ca init on a token


def test_ca_init_puts_the_keys_on_the_token_sensitive_and_never_extractable(hsm: SoftHsm, tmp_path: Path) -> None:
    home, label = hsm_home(hsm, tmp_path / "ca")
    assert list((home.path / "ca" / "private").iterdir()) == []  # a node holds no CA key file at all
    shown = home.run("--json", "ca", "show").json()
    assert shown["key_encrypted"] is True  # every signing command asks for the PIN
    uris = {c["name"]: parse_pkcs11_uri(c["key_uri"]) for c in shown["cas"]}
    assert set(uris) == {"root", "uca"}
    assert all(u.token == label and u.type == "private" and u.id_hex and u.module_path == hsm.module
               for u in uris.values())

    keys = private_keys(hsm, label)
    assert sorted(k["ID"] for k in keys) == sorted(u.id_hex for u in uris.values())  # type: ignore[type-var]
    for key in keys:
        access = {flag.strip() for flag in key["Access"].split(",")}
        assert {"sensitive", "always sensitive", "never extractable", "local"} <= access, key
        assert "extractable" not in access, key
        assert "sign" in key["Usage"]
    assert sorted(k["header"].split(";")[1].strip() for k in keys) == ["EC", "RSA"]  # --key-type ec-p256

    for name, uri in uris.items():  # the public key on the token, read by pkcs11-tool, is the certificate's
        out = tmp_path / f"{name}.pub"
        proc = hsm.pkcs11_tool(label, "--read-object", "--type", "pubkey", "--id", uri.id_hex or "",
                               "--output-file", str(out))
        assert proc.returncode == 0, proc.stderr
        token_public = serialization.load_der_public_key(out.read_bytes())
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        assert (token_public.public_bytes(serialization.Encoding.DER, spki)
                == ca_cert(home, name).public_key().public_bytes(serialization.Encoding.DER, spki))


def test_a_two_intermediate_chain_on_the_token_verifies_with_openssl(hsm: SoftHsm, tmp_path: Path) -> None:
    home, label = hsm_home(hsm, tmp_path / "ca", "--intermediates", "2")
    assert len(private_keys(hsm, label)) == 3
    proc = sh("openssl", "verify", "-CAfile", home.path / "ca" / "root.cer", "-untrusted",
              home.path / "ca" / "uca_1.cer", home.path / "ca" / "uca_2.cer")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ----------------------------------------------------------------- signing through the token


def test_issue_revoke_crl_and_ocsp_sign_on_the_token_and_verify_with_openssl(
        hsm: SoftHsm, tmp_path: Path, store_engine: str) -> None:
    require("openssl")
    home, label = hsm_home(hsm, tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    result = home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="www"), "--account", ACCOUNT)
    assert result.code == 0, result.stderr
    serial = result.json()["certificates"][0]["serial"]
    assert home.run("cert", "export", serial, "--out-dir", tmp_path / "out").code == 0
    leaf, root, uca = tmp_path / "out" / "server.cer", home.path / "ca" / "root.cer", home.path / "ca" / "uca.cer"
    proc = sh("openssl", "verify", "-CAfile", root, "-untrusted", uca, leaf)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    result = home.run("--json", "cert", "revoke", serial, "--reason", "keyCompromise")
    assert result.code == 0, result.stderr
    crl_file = tmp_path / "uca.crl"
    result = home.run("--json", "crl", "--out", crl_file)
    assert result.code == 0, result.stderr
    proc = sh("openssl", "crl", "-in", crl_file, "-CAfile", uca, "-noout", "-text")
    assert proc.returncode == 0 and b"verify OK" in proc.stdout + proc.stderr, proc.stderr
    crl = x509.load_pem_x509_crl(crl_file.read_bytes()) if crl_file.read_bytes().startswith(b"-----") \
        else x509.load_der_x509_crl(crl_file.read_bytes())
    assert [format(r.serial_number, "x") for r in crl] == [serial.lower().lstrip("0")]

    request, response = tmp_path / "req.der", tmp_path / "resp.der"
    proc = sh("openssl", "ocsp", "-issuer", uca, "-cert", leaf, "-reqout", request, "-no_nonce")
    assert proc.returncode == 0, proc.stderr
    result = home.run("--json", "ocsp", "respond", "--request", request, "--out", response)
    assert result.code == 0, result.stderr
    proc = sh("openssl", "ocsp", "-respin", response, "-CAfile", root, "-VAfile", uca, "-issuer", uca,
              "-cert", leaf, "-no_nonce")
    text = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0 and "Response verify OK" in text and "revoked" in text, text

    check = home.run("--json", "ca", "check", "--no-repair")
    assert check.code == 0 and check.json()["ok"] is True, check.stdout
    assert list((home.path / "ca" / "private").iterdir()) == []


def test_a_wrong_pin_exits_4_and_changes_nothing(hsm: SoftHsm, tmp_path: Path) -> None:
    home, _label = hsm_home(hsm, tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    before = home.run("--json", "account", "show", ACCOUNT).json()
    log_before = home.run("--json", "log", "verify").json()
    csr = openssl_csr(tmp_path, name="www")
    wrong: dict[str, str | None] = {"TW_TEST_CA_PASS": "11110000"}
    result = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, env=wrong)
    assert result.code == 4, result.stdout + result.stderr
    assert result.json()["error"]["kind"] == "auth"
    assert home.run("--json", "crl", env=wrong).code == 4
    assert home.run("--json", "account", "show", ACCOUNT).json() == before
    assert home.run("--json", "log", "verify").json() == log_before
    assert certificate_count(home) == 0
    assert list((home.path / "certs").glob("*")) == []
    # the right PIN still works afterwards (SoftHSM2 never locks; the PIN was not used up)
    assert home.run("--json", "cert", "issue", csr, "--account", ACCOUNT).code == 0


def test_ca_init_with_a_wrong_pin_exits_4_and_makes_nothing(hsm: SoftHsm, tmp_path: Path) -> None:
    label = hsm.new_token(prefix="CA")
    result = invoke("--home", tmp_path / "ca", "--json", "ca", "init", "--key-uri", f"pkcs11:token={label}",
                    "--pkcs11-module", hsm.module, "--ca-passphrase", "env:BAD", env={"BAD": "00000000"})
    assert result.code == 4, result.stdout + result.stderr
    assert not (tmp_path / "ca").exists()
    assert private_keys(hsm, label) == []


def test_a_missing_token_or_module_exits_6(hsm: SoftHsm, tmp_path: Path) -> None:
    home, _label = hsm_home(hsm, tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    empty = tmp_path / "empty"
    (empty / "tokens").mkdir(parents=True)
    (empty / "softhsm2.conf").write_text(f"directories.tokendir = {empty / 'tokens'}\nobjectstore.backend = file\n")
    gone: dict[str, str | None] = {"SOFTHSM2_CONF": str(empty / "softhsm2.conf")}
    result = home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="www"), "--account", ACCOUNT, env=gone)
    assert result.code == 6, result.stdout + result.stderr
    assert result.json()["error"]["kind"] == "device"
    assert home.run("--json", "crl", env=gone).code == 6
    assert certificate_count(home) == 0

    result = invoke("--home", tmp_path / "ca2", "--json", "ca", "init", "--key-uri", "pkcs11:token=nowhere",
                    "--pkcs11-module", hsm.module, "--ca-passphrase", "env:P", env={"P": PIN})
    assert result.code == 6 and not (tmp_path / "ca2").exists()
    result = invoke("--home", tmp_path / "ca3", "--json", "ca", "init", "--key-uri", "pkcs11:token=x",
                    "--pkcs11-module", tmp_path / "no-such-module.so", "--ca-passphrase", "env:P", env={"P": PIN})
    assert result.code == 6 and not (tmp_path / "ca3").exists()


def test_a_pin_value_in_the_uri_is_refused(hsm: SoftHsm, tmp_path: Path) -> None:
    label = hsm.new_token(prefix="CA")
    result = invoke("--home", tmp_path / "ca", "--json", "ca", "init", "--key-uri",
                    f"pkcs11:token={label}?pin-value={PIN}", "--pkcs11-module", hsm.module,
                    "--ca-passphrase", "env:P", env={"P": PIN})
    assert result.code == 2, result.stdout + result.stderr
    assert PIN not in result.stdout + result.stderr
    assert not (tmp_path / "ca").exists() and private_keys(hsm, label) == []


def test_the_pin_can_come_from_the_uri_pin_source(hsm: SoftHsm, tmp_path: Path) -> None:
    label = hsm.new_token(prefix="CA")
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    result = invoke("--home", tmp_path / "ca", "--json", "ca", "init", "--root-key-type", "ec-p256", "--key-type",
                    "ec-p256", "--key-uri", f"pkcs11:token={label}?pin-source=file:{pin_file}",
                    "--pkcs11-module", hsm.module)
    assert result.code == 0, result.stdout + result.stderr
    recorded = [c["key_uri"] for c in result.json()["cas"]]
    assert all("pin-source" not in uri and str(pin_file) not in uri for uri in recorded)
    assert len(private_keys(hsm, label)) == 2


def test_a_second_ca_with_the_same_labels_is_refused_and_the_first_keeps_its_keys(
        hsm: SoftHsm, tmp_path: Path) -> None:
    first, label = hsm_home(hsm, tmp_path / "one")
    before = private_keys(hsm, label)
    result = invoke("--home", tmp_path / "two", "--json", "ca", "init", "--key-uri", f"pkcs11:token={label}",
                    "--pkcs11-module", hsm.module, "--ca-passphrase", "env:P", env={"P": PIN})
    assert result.code == 5, result.stdout + result.stderr
    assert private_keys(hsm, label) == before and not (tmp_path / "two").exists()
    # another --name (other labels) on the same token is fine
    second = make_ca(tmp_path / "three", "--name", "Second", "--key-uri", f"pkcs11:token={label}",
                     "--pkcs11-module", hsm.module, "--root-key-type", "ec-p256", passphrase=PIN)
    assert len(private_keys(hsm, label)) == 4
    assert first.run("--json", "ca", "check", "--no-repair").json()["ok"] is True
    assert second.run("--json", "ca", "check", "--no-repair").json()["ok"] is True


def test_a_failed_init_destroys_the_keys_it_made(hsm: SoftHsm, tmp_path: Path) -> None:
    label = hsm.new_token(prefix="CA")
    # the records cannot be written (no database server there): the keys made on the token go again
    result = invoke("--home", tmp_path / "ca", "--json", "ca", "init", "--key-uri", f"pkcs11:token={label}",
                    "--pkcs11-module", hsm.module, "--ca-passphrase", "env:P", "--root-key-type", "ec-p256",
                    "--store", f"postgresql://nobody@/twcactl?host={tmp_path}&port=1", env={"P": PIN})
    assert result.code != 0, result.stdout
    assert not (tmp_path / "ca").exists()
    assert [o for o in token_objects(hsm, label)] == []


# ----------------------------------------------------------------- ca check and backup


def test_ca_check_finds_a_token_key_that_is_not_the_certificates(hsm: SoftHsm, tmp_path: Path) -> None:
    home, _label = hsm_home(hsm, tmp_path / "ca")
    shown = {c["name"]: c["key_uri"] for c in home.run("--json", "ca", "show").json()["cas"]}
    with sqlite3.connect(home.path / "twcactl.db") as db:  # the uca record now points at the root's key
        db.execute("UPDATE cas SET key_file = ? WHERE name = 'uca'", (shown["root"],))
    check = home.run("--json", "ca", "check", "--no-repair")
    assert check.code == 1
    assert any("uca" in f and "does not belong" in f for f in check.json()["findings"]), check.stdout
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    result = home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="www"), "--account", ACCOUNT)
    assert result.code == 5, result.stdout + result.stderr  # a swapped key never signs


def test_ca_check_reports_an_unreachable_token(hsm: SoftHsm, tmp_path: Path) -> None:
    home, _label = hsm_home(hsm, tmp_path / "ca")
    empty = tmp_path / "empty"
    (empty / "tokens").mkdir(parents=True)
    (empty / "softhsm2.conf").write_text(f"directories.tokendir = {empty / 'tokens'}\nobjectstore.backend = file\n")
    check = home.run("--json", "ca", "check", "--no-repair", env={"SOFTHSM2_CONF": str(empty / "softhsm2.conf")})
    assert check.code == 1
    assert sum("cannot be checked" in f for f in check.json()["findings"]) == 2


def test_a_backup_holds_no_ca_key_and_a_restored_home_signs_with_the_token(hsm: SoftHsm, tmp_path: Path) -> None:
    home, _label = hsm_home(hsm, tmp_path / "ca")
    archive = tmp_path / "backup.tar.gz"
    assert home.run("ca", "backup", archive).code == 0
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert not [n for n in names if n.startswith("ca/private/")] and "ca/uca.cer" in names
    restored = CaHome(tmp_path / "restored", PIN)
    result = restored.run("--json", "ca", "restore", archive)
    assert result.code == 0 and result.json()["ok"] is True, result.stdout
    assert restored.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw",
                        "--quota", "5").code == 0
    result = restored.run("--json", "cert", "issue", openssl_csr(tmp_path, name="www"), "--account", ACCOUNT)
    assert result.code == 0, result.stderr


# ----------------------------------------------------------------- RFC 7512 URIs


def test_pkcs11_uris_parse_as_rfc_7512_says() -> None:
    uri = parse_pkcs11_uri("pkcs11:token=My%20CA;object=root%3Bkey;id=%01%ff;type=private;x-vendor=1"
                           "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin")
    assert uri == Pkcs11Uri(token="My CA", object="root;key", id_hex="01ff", type="private",
                            module_path="/usr/lib/softhsm/libsofthsm2.so", pin_source="file:/etc/pin")
    assert parse_pkcs11_uri(uri.to_text()) == uri  # what the store records reads back the same
    assert "pin-source" not in uri.redacted()
    assert parse_pkcs11_uri("PKCS11:token=CA").token == "CA"
    assert parse_pkcs11_uri("pkcs11:serial=DECC0401648;model=SoftHSM%20v2").model == "SoftHSM v2"
    for bad in ("pkcs11:token=a?pin-value=1234", "pkcs11:token=a;token=b", "pkcs11:colour=red", "pkcs11:token",
                "pkcs11:id=%zz", "pkcs11:type=key", "file:/tmp/x", "pkcs11:token=a b", "pkcs11:token=%ff"):
        with pytest.raises(UsageError):
            parse_pkcs11_uri(bad)


def test_the_recorded_uri_holds_no_pin(hsm: SoftHsm, tmp_path: Path) -> None:
    home, _label = hsm_home(hsm, tmp_path / "ca")
    with sqlite3.connect(home.path / "twcactl.db") as db:
        stored = [row[0] for row in db.execute("SELECT key_file FROM cas")]
        text = json.dumps([list(r) for r in db.execute("SELECT * FROM activity_log")])
    assert all(s.startswith("pkcs11:") for s in stored)
    assert PIN not in json.dumps(stored) and PIN not in text


# ----------------------------------------------------------------- twcactl serve signs OCSP on the token


def test_serve_answers_ocsp_signed_on_the_token(hsm: SoftHsm, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.serve_support import start_server

    home, _label = hsm_home(hsm, tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    result = home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="www"), "--account", ACCOUNT)
    assert result.code == 0, result.stderr
    leaf = home.path / "certs" / f"{result.json()['certificates'][0]['serial']}.pem"
    proc, _port, http_port, _h01 = start_server(home, tmp_path / "serve.log")  # SOFTHSM2_CONF is inherited
    try:
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes((home.path / "ca" / "root.cer").read_bytes() + (home.path / "ca" / "uca.cer").read_bytes())

        def ask(_n: int) -> tuple[int, str]:
            out = sh("openssl", "ocsp", "-issuer", home.path / "ca" / "uca.cer", "-cert", leaf,
                     "-url", f"http://127.0.0.1:{http_port}/ocsp", "-CAfile", bundle)
            return out.returncode, (out.stdout + out.stderr).decode()

        with ThreadPoolExecutor(max_workers=4) as pool:  # concurrent requests share one token session
            answers = list(pool.map(ask, range(8)))
        for code, text in answers:
            assert code == 0 and "Response verify OK" in text and ": good" in text, text
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0, (tmp_path / "serve.log").read_text()[-2000:]


def test_card_enroll_with_the_ca_key_on_a_token_of_the_same_module(hsm: SoftHsm, tmp_path: Path) -> None:
    """The card and the CA key are reached through one library: opening the card's token must not end the
    CA key's session, nor signing with the CA key the card's."""
    home, _label = hsm_home(hsm, tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    card = hsm.new_token(prefix="card")
    result = home.run("--json", "card", "enroll", "--token", card, "--pin", f"pass:{PIN}", "--account", ACCOUNT,
                      "--cn", "A123456789-01-YIRU", "--org", "TWCA", "--country", "TW", env=hsm.env())
    assert result.code == 0, result.stdout + result.stderr
    certs = [o for o in token_objects(hsm, card) if o["kind"].startswith("Certificate Object")]
    assert len(certs) >= 1
    out = tmp_path / "card.der"
    proc = hsm.pkcs11_tool(card, "--read-object", "--type", "cert", "--id", certs[0]["ID"], "--output-file", str(out))
    assert proc.returncode == 0, proc.stderr
    leaf = tmp_path / "card.pem"
    leaf.write_bytes(x509.load_der_x509_certificate(out.read_bytes()).public_bytes(serialization.Encoding.PEM))
    verified = sh("openssl", "verify", "-CAfile", home.path / "ca" / "root.cer", "-untrusted",
                  home.path / "ca" / "uca.cer", "-purpose", "any", leaf)
    assert verified.returncode == 0, verified.stdout + verified.stderr
