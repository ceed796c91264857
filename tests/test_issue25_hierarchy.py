"""Issue 25: several issuing CAs under one root, and the root's CRL.

Rotation end to end (issue from A, add and activate B, issue from B, renew an A certificate into B, certbot's
renewal gets B's chain, revoke A: A's leaves fail OpenSSL's and Java's revocation checks, B's pass, ``ca check``
is clean); the root CRL ceremony (``crl --ca root`` with the root key) and pkilint's BR lint of the root CRL and
the CA certificates; ``ca check`` warns before the root's CRL goes stale; the refusals and who may do what;
the schema migration forward on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import ACCOUNT, CaHome, db_rows, db_run, invoke, make_ca, require, sh
from tests.hierarchy_support import compile_java, java_outcomes, openssl_outcome, urls_of
from tests.serve_support import Served, eab, free_port, start_server
from tests.test_issue15_serve_clients import _certbot, _certonly
from tests.test_issue16_public_trust import _assert_clean, _lint_all
from tests.test_issue25_relying_parties import issue, ok
from twcactl.rules import publication
from twcactl.rules.publication import CA_CRL_DAYS, CA_CRL_WARN_DAYS
from twcactl.store import Store
from twcactl.store.schema import SCHEMA_VERSION


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def _ca(home: CaHome, name: str) -> x509.Certificate:
    return _cert(home.path / "ca" / f"{name}.cer")


def _states(home: CaHome) -> dict[str, str]:
    return {i["name"]: i["state"] for i in ok(home, "ca", "issuer", "list")["issuers"]}


@pytest.fixture
def rotation(tmp_path: Path) -> Iterator[Served]:
    """A CA made with ``--base-url`` of its own server, an account for the CLI (twca.com.tw) and ACME (example.test)."""
    ports = [free_port() for _ in range(3)]
    home = make_ca(tmp_path / "ca", "--base-url", f"http://127.0.0.1:{ports[1]}")
    ok(home, "account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--domain", "example.test",
       "--quota", "20")
    log = tmp_path / "serve.log"
    proc, *_ports = start_server(home, log, port=ports[0], http_port=ports[1], http01_port=ports[2])
    served = Served(home=home, port=ports[0], http_port=ports[1], http01_port=ports[2], proc=proc, log=log)
    try:
        yield served
    finally:
        assert served.stop() == 0, log.read_text()[-2000:]


def _restart(served: Served) -> None:
    """Stop and start the server on the same ports (its OCSP signers are unlocked at start)."""
    assert served.stop() == 0
    served.proc = start_server(served.home, served.log, port=served.port, http_port=served.http_port,
                               http01_port=served.http01_port)[0]


def test_rotation_from_issuer_a_to_b(rotation: Served, tmp_path: Path) -> None:
    served, home = rotation, rotation.home
    root = home.path / "ca" / "root.cer"
    a_cert = _ca(home, "uca")
    kid, hmac = eab(served)
    cb = tmp_path / "certbot"
    out = _certonly(served, cb, "www.example.test", kid=kid, hmac=hmac)
    assert out.returncode == 0, out.stdout + out.stderr
    live = cb / "c" / "live" / "www.example.test"
    acme_a = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert acme_a[1] == a_cert and acme_a[0].issuer == a_cert.subject
    a1 = issue(home, tmp_path, "a1")

    ok(home, "ca", "issuer", "add", "ucb", "--key-type", "ec-p256")
    assert _states(home) == {"root": "root", "uca": "active", "ucb": "ready"}
    ok(home, "ca", "issuer", "activate", "ucb")
    assert _states(home) == {"root": "root", "uca": "ready", "ucb": "active"}
    ok(home, "ca", "issuer", "retire", "uca")
    b_cert = _ca(home, "ucb")
    assert b_cert.issuer == _ca(home, "root").subject and b_cert.subject != a_cert.subject
    _restart(served)
    b1 = issue(home, tmp_path, "b1")
    assert _cert(Path(b1["path"])).issuer == b_cert.subject

    # cert renew of an A certificate gives a B certificate; its bundle carries B
    renewed = ok(home, "cert", "renew", a1["serial"], "--csr", tmp_path / "a1.csr", "--early")
    new = renewed["certificates"][0] if "certificates" in renewed else renewed["certificate"]
    renewed_cert = _cert(Path(new["path"]))
    assert renewed_cert.issuer == b_cert.subject
    ok(home, "cert", "export", new["serial"], "--out-dir", tmp_path / "bundle")
    assert _cert(tmp_path / "bundle" / "uca.cer") == b_cert and _cert(tmp_path / "bundle" / "root.cer") == _ca(
        home, "root")

    # certbot's renewal (an ACME order) comes from B, with B's chain
    out = _certbot(served, cb, "renew", "--force-renewal", "--no-random-sleep-on-renew")
    assert out.returncode == 0, out.stdout + out.stderr
    acme_b = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert acme_b[1] == b_cert and acme_b[0].issuer == b_cert.subject

    archive = cb / "c" / "archive" / "www.example.test"  # every certificate certbot got, live/ links the last
    leaves_a = {"a1": Path(a1["path"]), "acme_a": archive / "cert1.pem"}
    leaves_b = {"b1": Path(b1["path"]), "renewed": Path(new["path"]), "acme_b": archive / "cert2.pem"}
    assert _cert(leaves_a["acme_a"]) == acme_a[0] and _cert(leaves_b["acme_b"]) == acme_b[0]
    work = tmp_path / "openssl"
    work.mkdir()
    for path in [*leaves_a.values(), *leaves_b.values()]:
        assert openssl_outcome(root, path, work).verdict == "VALID", path

    # revoke A: A's leaves fail at depth 1 (the root's CRL lists A), B's pass, with OpenSSL and Java alike
    revoked = ok(home, "ca", "issuer", "revoke", "uca", "--reason", "superseded")
    assert revoked["issuer"]["state"] == "revoked" and revoked["issuer_crl_entries"] == 1
    for path in leaves_a.values():
        outcome = openssl_outcome(root, path, work)
        assert (outcome.verdict, outcome.where) == ("23", 1), outcome.text
    for path in leaves_b.values():
        assert openssl_outcome(root, path, work).verdict == "VALID", path
    classes = compile_java(tmp_path / "java")
    java = java_outcomes(classes, root, [*leaves_a.values(), *leaves_b.values()])
    assert [(o.verdict, o.where, o.ocsp) for o in java] == [("REVOKED", 1, "VALID")] * 2 + [("VALID", 2, "VALID")] * 3, java

    check = home.run("--json", "ca", "check")
    assert check.code == 0 and check.json()["ok"], check.stdout
    listed = {i["name"]: i for i in ok(home, "ca", "issuer", "list")["issuers"]}
    assert listed["uca"]["state"] == "revoked" and listed["uca"]["reason"] == "superseded"
    assert listed["uca"]["certificates"]["total"] >= 2 and listed["ucb"]["certificates"]["total"] >= 3


def _public_home(path: Path) -> CaHome:
    home = make_ca(path, "--public-trust", "--base-url", "http://pki.example.tw")
    ok(home, "account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5")
    return home


def test_root_crl_ceremony_and_pkilint(tmp_path: Path) -> None:
    home = _public_home(tmp_path / "ca")
    first = x509.load_der_x509_crl((home.path / "crl" / "root.crl").read_bytes())  # signed by ca init
    ok(home, "ca", "issuer", "add", "tls2")
    ok(home, "ca", "issuer", "add", "tls3")
    # the root ceremony: its own passphrase SOURCE; a wrong one signs nothing
    wrong = home.run("crl", "--ca", "root", env={"TW_TEST_CA_PASS": "not the root passphrase"})
    assert wrong.code == 4
    assert x509.load_der_x509_crl((home.path / "crl" / "root.crl").read_bytes()) == first
    doc: dict[str, Any] = ok(home, "crl", "--ca", "root", "--ca-passphrase", "env:TW_TEST_CA_PASS")
    assert doc["number"] == 2 and doc["entries"] == 0 and doc["path"].endswith("root.crl")
    ok(home, "ca", "issuer", "revoke", "tls2", "--reason", "keyCompromise")
    ok(home, "ca", "issuer", "revoke", "tls3", "--reason", "cessationOfOperation")
    crl_file = home.path / "crl" / "root.crl"
    crl = x509.load_der_x509_crl(crl_file.read_bytes())
    root = _ca(home, "root")
    assert crl.issuer == root.subject and crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    reasons = {r.serial_number: r.extensions.get_extension_for_class(x509.CRLReason).value.reason.value for r in crl}
    assert reasons == {_ca(home, "tls2").serial_number: "keyCompromise",
                       _ca(home, "tls3").serial_number: "cessationOfOperation"}
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc <= dt.timedelta(days=CA_CRL_DAYS) <= dt.timedelta(days=366)

    ca = home.path / "ca"
    lint = "lint_cabf_serverauth_cert"
    results = _lint_all([["lint_crl", "lint", "-t", "ARL", "-p", "BR", crl_file],  # the root CRL covers CAs
                         ["lint_crl", "lint", "-t", "CRL", "-p", "BR", ca.parent / "crl" / "tls2.crl"],
                         [lint, "lint", "-t", "ROOT-CA", ca / "root.cer"],
                         [lint, "lint", "-t", "INTERNAL-UNCONSTRAINED-TLS-CA", ca / "uca.cer"],
                         [lint, "lint", "-t", "INTERNAL-UNCONSTRAINED-TLS-CA", ca / "tls2.cer"]])
    for name, (_code, text) in zip(["root crl", "tls2 crl", "root", "uca", "tls2"], results):
        _assert_clean(text, name)


def test_ca_check_warns_before_the_root_crl_goes_stale(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca")
    assert home.run("ca", "check").code == 0
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=CA_CRL_WARN_DAYS - 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    db_run(home.path, "UPDATE crls SET next_update = ? WHERE ca_name = 'root'", soon)
    stale = home.run("--json", "ca", "check")
    assert stale.code != 0
    assert any("root" in f and "crl --ca root" in f for f in stale.json()["findings"]), stale.stdout
    ok(home, "crl", "--ca", "root")  # the ceremony
    assert home.run("ca", "check").code == 0
    db_run(home.path, "DELETE FROM crls WHERE ca_name = 'root'")  # a home from before: no root CRL at all
    missing = home.run("--json", "ca", "check")
    assert missing.code != 0 and any("crl --ca root" in f for f in missing.json()["findings"]), missing.stdout
    ok(home, "crl", "--ca", "root")
    assert home.run("ca", "check").code == 0


def test_refusals_and_roles(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca")
    ok(home, "operator", "add", "bob", "--role", "auditor")
    ok(home, "ca", "issuer", "add", "ucb")
    bob = {"TWCACTL_OPERATOR": "bob"}
    # each of these would succeed for a manager: only the role refuses them
    for args in (("add", "ucc"), ("activate", "ucb"), ("retire", "ucb"), ("revoke", "ucb", "--reason", "superseded")):
        assert home.run("ca", "issuer", *args, env=bob).code == 5, args  # auditors only query
    assert home.run("ca", "issuer", "list", env=bob).code == 0
    assert _states(home) == {"root": "root", "uca": "active", "ucb": "ready"}
    assert home.run("ca", "issuer", "add", "Bad/Name").code == 2
    assert home.run("ca", "issuer", "add", "uca").code == 5  # taken
    assert home.run("ca", "issuer", "retire", "uca").code == 5  # the active one: activate another first
    assert home.run("ca", "issuer", "revoke", "uca", "--reason", "keyCompromise").code == 5
    assert home.run("ca", "issuer", "activate", "root").code == 5
    assert home.run("ca", "issuer", "revoke", "root", "--reason", "keyCompromise").code == 5
    assert home.run("ca", "issuer", "revoke", "ucb", "--reason", "certificateHold").code == 2
    ok(home, "ca", "issuer", "revoke", "ucb", "--reason", "keyCompromise")
    assert home.run("ca", "issuer", "activate", "ucb").code == 5  # revoked: never issues again
    assert home.run("ca", "issuer", "revoke", "ucb", "--reason", "keyCompromise").code == 5
    assert _states(home) == {"root": "root", "uca": "active", "ucb": "revoked"}
    assert [e["action"] for e in ok(home, "log", "--limit", "3")["entries"]][:2] == [
        "ca.issuer.revoke", "ca.issuer.add"]
    assert home.run("ca", "check").code == 0


def test_schema_migrates_forward_on_both_engines(store_engine: str, tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca", "--intermediates", "2")
    store = Store.open(home.path, strict=False)  # back to version 8, in one transaction on either engine
    try:
        with store.transaction():
            for sql in [*(f"ALTER TABLE cas DROP COLUMN {c}" for c in ("issuer", "retired_at", "revoked_at", "reason")),
                        "UPDATE meta SET value = '8' WHERE key = 'schema_version'"]:
                store.engine.db.run(sql, ())
    finally:
        store.close()
    listed: dict[str, Any] = {i["name"]: i for i in ok(home, "ca", "issuer", "list")["issuers"]}
    assert {n: (i["issuer"], i["state"]) for n, i in listed.items()} == {
        "root": (None, "root"), "uca_1": ("root", "intermediate"), "uca_2": ("uca_1", "active")}
    assert db_rows(home.path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    ok(home, "ca", "issuer", "add", "next")
    assert ok(home, "ca", "issuer", "list")["issuers"][-1]["issuer"] == "root"
    assert home.run("ca", "check").code == 0


@pytest.mark.parametrize("sub", ["add", "list", "activate", "retire", "revoke"])
def test_issuer_commands_have_help_with_an_example_and_json(sub: str) -> None:
    result = invoke("ca", "issuer", sub, "--help")
    assert result.code == 0 and "Example" in result.stdout and "--json" in result.stdout
    assert f"twcactl ca issuer {sub}" in result.stdout


def test_an_issuing_ca_with_its_key_on_a_token(tmp_path: Path) -> None:
    """``ca issuer add --key-uri``: the new issuing CA's key is made on the token (SoftHSM2), never as a file;
    it signs certificates and its CRL there, and the chain verifies with OpenSSL."""
    from tests.card_support import PIN, softhsm_directory
    from tests.test_issue14_hsm import hsm_home, private_keys

    require("softhsm2-util")
    with softhsm_directory(tmp_path / "softhsm") as hsm:
        home, label = hsm_home(hsm, tmp_path / "ca")
        before = len(private_keys(hsm, label))
        added = ok(home, "ca", "issuer", "add", "hsm2", "--key-type", "ec-p256", "--key-uri", f"pkcs11:token={label}",
                   "--pkcs11-module", hsm.module)
        assert added["issuer"]["key_store"] == "pkcs11" and not (home.path / "ca" / "private" / "hsm2.key").exists()
        assert len(private_keys(hsm, label)) == before + 1
        ok(home, "ca", "issuer", "activate", "hsm2")
        ok(home, "account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "2")
        leaf = issue(home, tmp_path, "tok")
        ok(home, "cert", "revoke", leaf["serial"], "--reason", "superseded")
        crl = x509.load_der_x509_crl((home.path / "crl" / "hsm2.crl").read_bytes())
        assert [r.serial_number for r in crl] == [int(leaf["serial"], 16)]
        out = sh("openssl", "verify", "-CAfile", home.path / "ca" / "root.cer", "-untrusted",
                 home.path / "ca" / "hsm2.cer", leaf["path"])
        assert out.returncode == 0, out.stdout + out.stderr
        assert home.run("ca", "check").code == 0 and PIN


def test_publication_rules() -> None:
    """Each certificate names its own issuer's URLs: derived from base_url in serve's layout; explicit settings
    win, adjusted to the issuer when their file name names a CA of the home; CA certificates beside crl_url."""
    names = frozenset({"root", "uca", "ucb"})
    base = publication.leaf_urls(base_url="http://pki.tw:8080/", crl_url="", ocsp_url="", ca_issuers_url="",
                                 issuer="ucb", ca_names=names)
    assert base == publication.Published("http://pki.tw:8080/crl/ucb.crl", "http://pki.tw:8080/ocsp",
                                         "http://pki.tw:8080/ca/ucb.cer")
    explicit = publication.leaf_urls(base_url="http://pki.tw", crl_url="http://x/repo/uca.crl",
                                     ocsp_url="http://ocsp.x", ca_issuers_url="http://x/repo/uca.cer",
                                     issuer="ucb", ca_names=names)
    assert explicit == publication.Published("http://x/repo/ucb.crl", "http://ocsp.x", "http://x/repo/ucb.cer")
    other = publication.leaf_urls(base_url="", crl_url="http://x/latest.crl", ocsp_url="", ca_issuers_url="",
                                  issuer="ucb", ca_names=names)
    assert other == publication.Published("http://x/latest.crl", None, None)
    assert publication.leaf_urls(base_url="", crl_url="", ocsp_url="", ca_issuers_url="", issuer="uca",
                                 ca_names=names) == publication.Published()
    assert publication.ca_certificate_urls(base_url="http://pki.tw", crl_url="http://x/repo/uca.crl",
                                           issuer="root") == publication.Published(
        "http://pki.tw/crl/root.crl", None, "http://pki.tw/ca/root.cer")
    assert publication.ca_certificate_urls(base_url="", crl_url="http://x/repo/uca.crl", issuer="root") == (
        publication.Published("http://x/repo/root.crl", None, "http://x/repo/root.cer"))
    assert publication.ca_certificate_urls(base_url="", crl_url="http://x:81/crl/uca.crl", issuer="root") == (
        publication.Published("http://x:81/crl/root.crl", None, "http://x:81/ca/root.cer"))
    assert publication.ca_certificate_urls(base_url="", crl_url="", issuer="root") == publication.Published()


def test_ca_config_base_url_and_a_second_issuer_with_explicit_urls(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca", "--crl-url", "http://x/repo/uca.crl")
    assert [u for u in urls_of(_ca(home, "uca"))] == [("crl", "http://x/repo/root.crl"), ("ca", "http://x/repo/root.cer")]
    ok(home, "account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5")
    ok(home, "ca", "issuer", "add", "ucb")
    ok(home, "ca", "issuer", "activate", "ucb")
    leaf = _cert(Path(issue(home, tmp_path, "x")["path"]))
    assert urls_of(leaf) == [("crl", "http://x/repo/ucb.crl")]  # ucb's own CRL, never uca's
    ok(home, "ca", "config", "crl_url", "")
    ok(home, "ca", "config", "base_url", "http://127.0.0.1:8181")
    leaf = _cert(Path(issue(home, tmp_path, "y")["path"]))
    assert sorted(urls_of(leaf)) == [("ca", "http://127.0.0.1:8181/ca/ucb.cer"),
                                     ("crl", "http://127.0.0.1:8181/crl/ucb.crl"), ("ocsp", "http://127.0.0.1:8181/ocsp")]
    assert home.run("ca", "config", "base_url", "ftp://x").code == 2


def test_an_offline_root_with_its_own_passphrase(tmp_path: Path) -> None:
    """The root key re-encrypted with a passphrase of its own: the root's CRL and a new issuing CA need it
    (``crl --ca root --ca-passphrase``, ``ca issuer add --root-passphrase``); issuing needs only the other."""
    from twcactl.pkix.keys import load_private_key, private_key_pem

    home = make_ca(tmp_path / "ca")
    assert home.passphrase is not None
    root_key = home.path / "ca" / "private" / "root.key"
    key = load_private_key(root_key.read_bytes(), home.passphrase, name="root", trusted=True)
    root_key.write_bytes(private_key_pem(key, "the root's own long passphrase"))
    root_env = {"ROOT_PASS": "the root's own long passphrase"}
    assert home.run("crl", "--ca", "root").code == 4  # the issuing CAs' passphrase does not open the root
    result = home.run("--json", "crl", "--ca", "root", "--ca-passphrase", "env:ROOT_PASS", env=root_env)
    assert result.code == 0 and result.json()["number"] == 2, result.stderr
    assert home.run("ca", "issuer", "add", "ucb").code == 4
    added = home.run("--json", "ca", "issuer", "add", "ucb", "--root-passphrase", "env:ROOT_PASS", env=root_env)
    assert added.code == 0, added.stderr
    ok(home, "ca", "issuer", "activate", "ucb")
    ok(home, "account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "2")
    assert _cert(Path(issue(home, tmp_path, "w")["path"])).issuer == _ca(home, "ucb").subject  # the usual passphrase
    assert home.run("ca", "check").code == 0
