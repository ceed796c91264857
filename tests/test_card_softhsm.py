"""Card workflows on real SoftHSM2 tokens, checked with OpenSC's pkcs11-tool and OpenSSL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.card_support import (
    PIN,
    SO_PIN,
    SoftHsm,
    parse_pkcs11_tool_objects,
)
from tests.conftest import ACCOUNT, CaHome, invoke, make_ca, sh
from twcactl.rules.times import add_years

HOLDER = ("--cn", "A123456789-01-YIRU", "--org", "TWCA", "--country", "TW")


@pytest.fixture
def token(hsm: SoftHsm) -> str:
    """A fresh token (user PIN ``PIN``, SO PIN ``SO_PIN``) for this test."""
    return hsm.new_token()


@pytest.fixture
def ca(tmp_path: Path, hsm: SoftHsm) -> CaHome:
    home = make_ca(tmp_path / "ca")
    result = home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10")
    assert result.code == 0, result.stderr
    return home


def run_card(hsm: SoftHsm, home: CaHome | None, *args: str) -> object:
    if home is None:
        return invoke(*args, env=hsm.env())
    return home.run(*args, env=hsm.env())


def tool_objects(hsm: SoftHsm, label: str, pin: str = PIN) -> list[dict[str, str]]:
    proc = hsm.pkcs11_tool(label, "--login", "--pin", pin, "-O")
    assert proc.returncode == 0, proc.stderr
    return parse_pkcs11_tool_objects(proc.stdout)


def read_token_cert(hsm: SoftHsm, label: str, id_hex: str, out: Path) -> x509.Certificate:
    """The certificate object with ``id_hex``, read by pkcs11-tool (not by twcactl)."""
    proc = hsm.pkcs11_tool(label, "--read-object", "--type", "cert", "--id", id_hex, "--output-file", str(out))
    assert proc.returncode == 0, proc.stderr
    return x509.load_der_x509_certificate(out.read_bytes())


def openssl_verify(home: CaHome, cert: x509.Certificate, tmp: Path) -> None:
    leaf = tmp / f"leaf-{cert.serial_number:x}.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    proc = sh("openssl", "verify", "-CAfile", home.path / "ca" / "root.cer", "-untrusted",
              home.path / "ca" / "uca.cer", leaf)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def enroll(hsm: SoftHsm, home: CaHome, token: str, *extra: str) -> dict:
    result = run_card(hsm, home, "card", "enroll", "--token", token, "--pin", f"pass:{PIN}", "--account", ACCOUNT,
                      *HOLDER, "--json", *extra)
    assert result.code == 0, result.stdout + result.stderr
    return result.json()


# --------------------------------------------------------------------------


def test_enroll_leaves_a_never_extractable_key_and_its_certificate(hsm: SoftHsm, ca: CaHome, token: str,
                                                                   tmp_path: Path) -> None:
    doc = enroll(hsm, ca, token, "--san", "yiru@twca.com.tw")
    (key,) = doc["keys"]
    objects = tool_objects(hsm, token)
    private = [o for o in objects if o["kind"] == "Private Key Object"]
    certs = [o for o in objects if o["kind"] == "Certificate Object"]
    assert len(private) == 1 and len(certs) == 1
    access = private[0]["Access"]
    assert "sensitive" in access and "never extractable" in access
    assert private[0]["ID"] == certs[0]["ID"] == key["id"]
    assert private[0]["label"] == certs[0]["label"] == "user-sign"

    cert = read_token_cert(hsm, token, key["id"], tmp_path / "card.der")
    openssl_verify(ca, cert, tmp_path)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 2048
    assert format(cert.serial_number, "x") == key["certificate"]["serial"]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.RFC822Name) == ["yiru@twca.com.tw"]
    # the CA recorded it under the account and charged one certificate-year
    assert ca.run("account", "show", ACCOUNT, "--json").json()["balance"] == 9


def test_enroll_pair_makes_two_keys_and_two_certificates(hsm: SoftHsm, ca: CaHome, token: str, tmp_path: Path) -> None:
    doc = enroll(hsm, ca, token, "--pair")
    assert [k["profile"] for k in doc["keys"]] == ["user-sign", "user-enc"]
    objects = tool_objects(hsm, token)
    private = {o["ID"]: o for o in objects if o["kind"] == "Private Key Object"}
    certs = {o["ID"]: o for o in objects if o["kind"] == "Certificate Object"}
    assert set(private) == set(certs) == {k["id"] for k in doc["keys"]}
    for k in doc["keys"]:
        cert = read_token_cert(hsm, token, k["id"], tmp_path / f"{k['id']}.der")
        openssl_verify(ca, cert, tmp_path)
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if k["profile"] == "user-enc":
            assert ku.key_encipherment and not ku.digital_signature
        else:
            assert ku.digital_signature and not ku.key_encipherment
    assert ca.run("account", "show", ACCOUNT, "--json").json()["balance"] == 8


def test_enroll_pair_refused_by_policy_leaves_the_card_untouched(hsm: SoftHsm, ca: CaHome, token: str) -> None:
    result = run_card(hsm, ca, "card", "enroll", "--token", token, "--pin", f"pass:{PIN}", "--account", ACCOUNT,
                      "--cn", "A123456789-01-YIRU", "--org", "Other Corp", "--country", "TW", "--pair", "--json")
    assert result.code == 1, result.stdout
    assert result.json()["error"]["kind"] == "policy"
    assert tool_objects(hsm, token) == []
    assert ca.run("account", "show", ACCOUNT, "--json").json()["balance"] == 10


def test_enroll_ec_key_where_the_token_has_ec(hsm: SoftHsm, ca: CaHome, token: str, tmp_path: Path) -> None:
    doc = enroll(hsm, ca, token, "--key-type", "ec-p256")
    cert = read_token_cert(hsm, token, doc["keys"][0]["id"], tmp_path / "ec.der")
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    openssl_verify(ca, cert, tmp_path)


def test_csr_out_then_import_cert(hsm: SoftHsm, ca: CaHome, token: str, tmp_path: Path) -> None:
    csr_file = tmp_path / "holder.csr"
    result = run_card(hsm, None, "card", "enroll", "--token", token, "--pin", f"pass:{PIN}", *HOLDER,
                      "--csr-out", str(csr_file), "--json")
    assert result.code == 0, result.stdout + result.stderr
    key_id = result.json()["keys"][0]["id"]
    csr = x509.load_pem_x509_csr(csr_file.read_bytes())
    assert csr.is_signature_valid
    assert [o["kind"] for o in tool_objects(hsm, token)].count("Certificate Object") == 0

    issued = ca.run("cert", "issue", str(csr_file), "--account", ACCOUNT, "--profile", "user-sign", "--json")
    assert issued.code == 0, issued.stdout + issued.stderr
    cert_path = issued.json()["certificates"][0]["path"]
    imported = run_card(hsm, None, "card", "import-cert", cert_path, "--token", token, "--pin", f"pass:{PIN}", "--json")
    assert imported.code == 0, imported.stdout + imported.stderr
    certs = [o for o in tool_objects(hsm, token) if o["kind"] == "Certificate Object"]
    assert [c["ID"] for c in certs] == [key_id]

    # a certificate for a key that is not on this card is refused
    other = ca.run("cert", "issue", str(_software_csr(tmp_path)), "--account", ACCOUNT, "--profile", "user-sign",
                   "--json")
    assert other.code == 0, other.stdout
    refused = run_card(hsm, None, "card", "import-cert", other.json()["certificates"][0]["path"], "--token", token,
                       "--pin", f"pass:{PIN}")
    assert refused.code == 5


def _software_csr(tmp_path: Path) -> Path:
    out = tmp_path / "soft.csr"
    result = invoke("csr", "new", *HOLDER, "--profile", "user-sign", "--key-out", tmp_path / "soft.key",
                    "--no-passphrase", "--out", out)
    assert result.code == 0, result.stderr
    return out


def test_renew_on_card_carries_the_validity_over(hsm: SoftHsm, ca: CaHome, token: str, tmp_path: Path) -> None:
    old_key = enroll(hsm, ca, token)["keys"][0]
    old_cert = read_token_cert(hsm, token, old_key["id"], tmp_path / "old.der")

    not_yet = run_card(hsm, ca, "card", "renew", "--token", token, "--pin", f"pass:{PIN}", "--json")
    assert not_yet.code == 5, not_yet.stdout  # outside the renewal window, and nothing changed
    assert len([o for o in tool_objects(hsm, token) if o["kind"] == "Private Key Object"]) == 1

    result = run_card(hsm, ca, "card", "renew", "--token", token, "--pin", f"pass:{PIN}", "--early", "--json")
    assert result.code == 0, result.stdout + result.stderr
    (renewal,) = result.json()["renewals"]
    assert renewal["renewed"] == format(old_cert.serial_number, "x")
    new_cert = read_token_cert(hsm, token, renewal["new_id"], tmp_path / "new.der")
    openssl_verify(ca, new_cert, tmp_path)
    assert new_cert.not_valid_after_utc == add_years(old_cert.not_valid_after_utc, 1)
    assert new_cert.subject == old_cert.subject
    assert new_cert.public_key().public_numbers() != old_cert.public_key().public_numbers()
    objects = tool_objects(hsm, token)
    assert {o["ID"] for o in objects} == {renewal["new_id"]}  # the old key and certificate are gone
    record = ca.run("cert", "show", format(new_cert.serial_number, "x"), "--json").json()
    assert record["renewed_from"] == format(old_cert.serial_number, "x")


def test_renew_request_out_is_a_cms_that_openssl_verifies(hsm: SoftHsm, ca: CaHome, token: str,
                                                         tmp_path: Path) -> None:
    old_key = enroll(hsm, ca, token)["keys"][0]
    old_cert = read_token_cert(hsm, token, old_key["id"], tmp_path / "old.der")
    request = tmp_path / "renewal.p7b"
    result = run_card(hsm, None, "card", "renew", "--token", token, "--pin", f"pass:{PIN}", "--request-out",
                      str(request), "--json")
    assert result.code == 0, result.stdout + result.stderr
    new_id = result.json()["renewals"][0]["new_id"]

    old_pem = tmp_path / "old.pem"
    old_pem.write_bytes(old_cert.public_bytes(serialization.Encoding.PEM))
    inner = tmp_path / "inner.der"
    # openssl cms has no -untrusted: the CA file holds the root and the intermediate
    cafile = tmp_path / "cas.pem"
    cafile.write_bytes((ca.path / "ca" / "root.cer").read_bytes() + (ca.path / "ca" / "uca.cer").read_bytes())
    proc = sh("openssl", "cms", "-verify", "-inform", "PEM", "-in", request, "-binary", "-CAfile", cafile,
              "-purpose", "any", "-out", inner)
    assert proc.returncode == 0, proc.stderr
    csr = x509.load_der_x509_csr(inner.read_bytes())
    assert csr.subject == old_cert.subject and csr.is_signature_valid
    # the old key and certificate are still there, the new key waits for its certificate
    ids = {o["ID"] for o in tool_objects(hsm, token) if o["kind"] == "Private Key Object"}
    assert ids == {old_key["id"], new_id}

    accepted = ca.run("cert", "renew", format(old_cert.serial_number, "x"), "--request", str(request), "--early",
                      "--json")
    assert accepted.code == 0, accepted.stdout + accepted.stderr
    imported = run_card(hsm, None, "card", "import-cert", accepted.json()["certificate"]["path"], "--token", token,
                        "--pin", f"pass:{PIN}")
    assert imported.code == 0, imported.stderr
    certs = {o["ID"] for o in tool_objects(hsm, token) if o["kind"] == "Certificate Object"}
    assert new_id in certs


def test_renew_pair_renews_both(hsm: SoftHsm, ca: CaHome, token: str) -> None:
    doc = enroll(hsm, ca, token, "--pair")
    result = run_card(hsm, ca, "card", "renew", "--token", token, "--pin", f"pass:{PIN}", "--early", "--json")
    assert result.code == 0, result.stdout + result.stderr
    renewals = result.json()["renewals"]
    assert sorted(r["label"] for r in renewals) == ["user-enc", "user-sign"]
    objects = tool_objects(hsm, token)
    private = {o["ID"] for o in objects if o["kind"] == "Private Key Object"}
    certs = {o["ID"] for o in objects if o["kind"] == "Certificate Object"}
    assert private == certs == {r["new_id"] for r in renewals}
    assert not private & {k["id"] for k in doc["keys"]}


def test_a_failed_renewal_deletes_the_new_key_and_keeps_the_old(hsm: SoftHsm, ca: CaHome, token: str) -> None:
    """Drive twcactl.card.renew with a CA that refuses, on the real token."""
    from twcactl import card
    from twcactl.backends.p11 import Pkcs11Module
    from twcactl.errors import StateError

    old = enroll(hsm, ca, token)["keys"][0]
    seen: list[bytes] = []

    def refusing_ca(made: object) -> list[x509.Certificate]:
        seen.extend(item.request_der for item in made)  # type: ignore[attr-defined]
        raise StateError("the CA said no")

    tok = Pkcs11Module(hsm.module).open_token(token)
    with tok.session(PIN, rw=True) as session:
        targets = card.renewal_targets(session.objects())
        with pytest.raises(StateError):
            card.renew(session, targets, key_type=None, submit=refusing_ca)
        assert len(seen) == 1
        objects = session.objects()
        assert {o.id for o in objects if o.kind == "private-key"} == {old["id"]}
        # the old key still signs
        key = session.private_key(old["id"])
        csr = card.build_token_csr(key, x509.Name([]), [])
        assert csr.is_signature_valid


def test_change_pin_then_only_the_new_pin_works(hsm: SoftHsm, token: str) -> None:
    new = "97531864"
    too_short = run_card(hsm, None, "card", "change-pin", "--token", token, "--pin", f"pass:{PIN}",
                         "--new-pin", "pass:12345")
    assert too_short.code == 1
    default = run_card(hsm, None, "card", "change-pin", "--token", token, "--pin", f"pass:{PIN}",
                       "--new-pin", "pass:12345678")
    assert default.code == 1
    same = run_card(hsm, None, "card", "change-pin", "--token", token, "--pin", f"pass:{PIN}", "--new-pin", f"pass:{PIN}")
    assert same.code == 1
    result = run_card(hsm, None, "card", "change-pin", "--token", token, "--pin", f"pass:{PIN}", "--new-pin",
                      f"pass:{new}", "--json")
    assert result.code == 0, result.stdout + result.stderr
    assert PIN not in result.stdout + result.stderr and new not in result.stdout + result.stderr
    assert hsm.pkcs11_tool(token, "--login", "--pin", new, "-O").returncode == 0
    assert hsm.pkcs11_tool(token, "--login", "--pin", PIN, "-O").returncode != 0


def test_wrong_pin_is_exit_4_and_unblock_sets_a_new_one(hsm: SoftHsm, token: str) -> None:
    wrong = run_card(hsm, None, "card", "verify-pin", "--token", token, "--pin", "pass:00000000", "--json")
    assert wrong.code == 4
    error = wrong.json()["error"]
    assert error["kind"] == "auth" and "since the last good one" in error["message"] and "00000000" not in wrong.stdout
    right = run_card(hsm, None, "card", "verify-pin", "--token", token, "--pin", f"pass:{PIN}", "--json")
    assert right.code == 0 and right.json()["ok"] is True

    new = "86420975"
    bad_so = run_card(hsm, None, "card", "unblock", "--token", token, "--so-pin", "pass:11111111", "--new-pin",
                      f"pass:{new}")
    assert bad_so.code == 4 and "SO PIN" in bad_so.stderr
    result = run_card(hsm, None, "card", "unblock", "--token", token, "--so-pin", f"pass:{SO_PIN}", "--new-pin",
                      f"pass:{new}")
    assert result.code == 0, result.stderr
    assert hsm.pkcs11_tool(token, "--login", "--pin", new, "-O").returncode == 0
    assert hsm.pkcs11_tool(token, "--login", "--pin", PIN, "-O").returncode != 0


def test_status_lists_keys_and_certificates(hsm: SoftHsm, ca: CaHome, token: str) -> None:
    enroll(hsm, ca, token)
    public = run_card(hsm, None, "card", "status", "--token", token, "--json")
    assert public.code == 0, public.stderr
    doc = public.json()
    assert doc["token"]["label"] == token and doc["token"]["model"] == "SoftHSM v2"
    assert doc["token"]["pin"]["locked"] is False
    kinds = sorted(o["kind"] for o in doc["objects"])
    assert kinds == ["certificate", "public-key"]  # private keys need the PIN
    cert = next(o for o in doc["objects"] if o["kind"] == "certificate")
    assert cert["subject"] == "CN=A123456789-01-YIRU,O=TWCA,C=TW" and cert["key_type"] == "rsa"
    dt.datetime.strptime(cert["not_after"], "%Y-%m-%dT%H:%M:%SZ")
    logged_in = run_card(hsm, None, "card", "status", "--token", token, "--pin", f"pass:{PIN}", "--json").json()
    private = [o for o in logged_in["objects"] if o["kind"] == "private-key"]
    assert len(private) == 1 and private[0]["sensitive"] and private[0]["never_extractable"]


def test_register_copies_certificates_and_links_records(hsm: SoftHsm, ca: CaHome, token: str, tmp_path: Path) -> None:
    doc = enroll(hsm, ca, token, "--pair")
    out = tmp_path / "moved"
    result = run_card(hsm, ca, "card", "register", "--token", token, "--out-dir", str(out), "--json")
    assert result.code == 0, result.stdout + result.stderr
    entries = result.json()["certificates"]
    serials = {k["certificate"]["serial"] for k in doc["keys"]}
    assert {e["serial"] for e in entries} == serials and all(e["issued_here"] for e in entries)
    files = {e["serial"]: Path(e["file"]) for e in entries}  # issue 17: <label>-<serial>.cer
    for serial in serials:
        cert = x509.load_pem_x509_certificate(files[serial].read_bytes())
        assert format(cert.serial_number, "x") == serial
        history = ca.run("cert", "show", serial, "--json").json()["history"]
        assert "card.register" in [h["action"] for h in history]
    again = run_card(hsm, ca, "card", "register", "--token", token, "--out-dir", str(out))
    assert again.code == 5  # existing files need --force


def test_no_module_or_no_token_is_exit_6(hsm: SoftHsm, tmp_path: Path) -> None:
    missing = invoke("card", "status", "--module", str(tmp_path / "nope.so"), "--json")
    assert missing.code == 6 and missing.json()["error"]["kind"] == "device"
    not_a_module = tmp_path / "fake.so"
    not_a_module.write_bytes(b"not a library")
    assert invoke("card", "status", "--module", str(not_a_module)).code == 6
    unknown = run_card(hsm, None, "card", "status", "--token", "no-such-token")
    assert unknown.code == 6 and "no token labelled" in unknown.stderr


def test_token_keys_refuse_to_leave_the_token(hsm: SoftHsm, token: str) -> None:
    from twcactl.backends.p11 import Pkcs11Module

    tok = Pkcs11Module(hsm.module).open_token(token)
    with tok.session(PIN, rw=True) as session:
        for key_type in ("rsa2048", "ec-p256"):
            key = session.generate_key_pair(key_type, label="t")
            with pytest.raises(TypeError):
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
            with pytest.raises(TypeError):
                key.private_numbers()


def test_module_from_the_ca_home_config(hsm: SoftHsm, ca: CaHome, token: str) -> None:
    import tomllib

    import tomli_w

    config = ca.path / "config.toml"
    settings = tomllib.loads(config.read_text("utf-8")) if config.exists() else {}
    settings["pkcs11_module"] = hsm.module
    config.write_text(tomli_w.dumps(settings), "utf-8")
    result = ca.run("card", "status", "--token", token, "--json",
                    env={"SOFTHSM2_CONF": str(hsm.conf), "TWCACTL_PKCS11_MODULE": None})
    assert result.code == 0, result.stdout + result.stderr
    assert result.json()["token"]["module"] == hsm.module
