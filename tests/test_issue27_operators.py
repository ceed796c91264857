"""Issue 27, part two: operators prove who they are; every change is signed with their key.

Two operators whose keys are on SoftHSM2 tokens (made there by ``card enroll``, the certificate written to
the card) and one automation operator with a key file, plus an auditor.  With ``operator_auth required``:
an unsigned change exits 4 and changes nothing, an auditor's signature cannot issue (exit 5), an RA
operator cannot change an account (exit 5), a removed operator and one whose certificate was revoked are
refused, every change's log entry holds a signature ``log verify`` checks, and one edited byte of a signed
entry is found even when the hash chain is rewritten to match.  ``set-role`` and ``remove`` are logged; the
last manager stays.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.card_support import PIN, SoftHsm
from tests.conftest import ACCOUNT, CaHome, make_ca
from tests.test_issue27_remote_ra import _csr
from twcactl.backends.p11_uri import Pkcs11Uri
from twcactl.store.log import log_hash

CSR_SUBJ = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN={cn}"


def _ok(result: Any) -> Any:
    assert result.code == 0, result.stdout + result.stderr
    return result.json()


def _enroll_card(hsm: SoftHsm, home: CaHome, cn: str, tmp_path: Path) -> tuple[str, Path]:
    """A key made on a new token and its certificate written there (``card enroll``); returns the operator key
    URI and the certificate read back from the token by OpenSC's pkcs11-tool."""
    token = hsm.new_token(prefix=cn.rsplit("-", 1)[-1].lower())
    doc = _ok(home.run("--json", "card", "enroll", "--token", token, "--pin", f"pass:{PIN}", "--account", ACCOUNT,
                       "--cn", cn, "--org", "TWCA", "--country", "TW", env=hsm.env()))
    key_id = doc["keys"][0]["id"]
    out = tmp_path / f"{token}.der"
    proc = hsm.pkcs11_tool(token, "--read-object", "--type", "cert", "--id", key_id, "--output-file", str(out))
    assert proc.returncode == 0, proc.stderr
    x509.load_der_x509_certificate(out.read_bytes())
    return Pkcs11Uri(token=token, id_hex=key_id).to_text(), out


def _key_file_operator(home: CaHome, cn: str, tmp_path: Path) -> tuple[Path, Path, str]:
    """An automation operator's key file and its certificate (``cert issue --profile user-sign``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / f"{cn}.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "TW"),
                                    x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "TWCA"),
                                    x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    csr_file = tmp_path / f"{cn}.csr"
    csr_file.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    doc = _ok(home.run("--json", "cert", "issue", csr_file, "--account", ACCOUNT, "--profile", "user-sign"))
    serial = doc["certificates"][0]["serial"]
    return key_file, Path(doc["certificates"][0]["path"]), serial


def _server_csr(tmp_path: Path, cn: str) -> Path:
    return _csr(tmp_path, cn)[0]


class Desk:
    """One operator at the CA home: name and key (a card URI with its PIN, or a key file)."""

    def __init__(self, home: CaHome, hsm: SoftHsm, name: str, key: str | None) -> None:
        self.home, self.hsm, self.name, self.key = home, hsm, name, key

    def run(self, *args: str | Path) -> Any:
        env: dict[str, str | None] = {**self.hsm.env(), "TWCACTL_OPERATOR": self.name,
                                      "TWCACTL_OPERATOR_PIN_SOURCE": f"pass:{PIN}"}
        if self.key is not None:
            env["TWCACTL_OPERATOR_KEY"] = self.key
        return self.home.run(*args, env=env)

    def issue(self, csr: Path) -> Any:
        return self.run("--json", "cert", "issue", csr, "--account", ACCOUNT)


def _counts(home: CaHome) -> tuple[int, int, int]:
    """(certificates, log entries, balance): what a refused change must leave as it was."""
    certs = _ok(home.run("--json", "cert", "list"))["count"]
    with sqlite3.connect(home.path / "twcactl.db") as db:
        entries = db.execute("SELECT COUNT(*) FROM activity_log").fetchone()[0]
    balance = _ok(home.run("--json", "account", "show", ACCOUNT))["balance"]
    return int(certs), int(entries), int(balance)


def _rewrite_chain(db_path: Path, seq: int, details: str) -> None:
    """Replace entry ``seq``'s details and re-hash the chain after it, the head and the CRL anchors: what
    someone holding the database could do so that the hash chain alone shows nothing."""
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE activity_log SET details = ? WHERE seq = ?", (details, seq))
        rows = db.execute("SELECT seq, time, operator, action, account, serial, details, prev_hash, hash"
                          " FROM activity_log WHERE seq >= ? ORDER BY seq", (seq,)).fetchall()
        prev = rows[0][7]
        for s, time, operator, action, account, serial, text, _prev, _old in rows:
            digest = log_hash(prev, s, time, operator, action, account, serial, text)
            db.execute("UPDATE activity_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, s))
            db.execute("UPDATE crls SET log_hash = ? WHERE log_seq = ?", (digest, s))
            prev = digest
        db.execute("UPDATE meta SET value = ? WHERE key = 'log_head'", (f"{rows[-1][0]}:{prev}",))


def test_signed_actions_with_cards_and_a_key_file(hsm: SoftHsm, tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca", passphrase=None)
    _ok(home.run("--json", "account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "100"))
    bob_key, bob_cert = _enroll_card(hsm, home, "A123456789-01-BOB", tmp_path)
    _rita_id_key, rita_file = _enroll_card(hsm, home, "A123456789-02-RITA", tmp_path)
    rita_token = rita_file.stem
    # rita is registered from her card and signs with the key named by its label
    rita_cert = f"pkcs11:token={rita_token};object=user-sign"
    rita_key = f"pkcs11:token={rita_token};object=user-sign;type=private"
    ci_key, ci_cert, ci_serial = _key_file_operator(home, "A123456789-03-CI", tmp_path)
    carol_key, carol_cert, _ = _key_file_operator(home, "A123456789-04-CAROL", tmp_path)
    alice = Desk(home, hsm, "alice", None)  # the bootstrap manager: no certificate
    for name, role, cert in (("bob", "manager", bob_cert), ("rita", "ra", rita_cert), ("ci", "manager", ci_cert),
                             ("carol", "auditor", carol_cert)):
        _ok(alice.run("--json", "operator", "add", name, "--role", role, "--cert", cert))
    listed = {o["name"]: o["cert_sha256"] for o in _ok(alice.run("--json", "operator", "list"))["operators"]}
    assert listed["rita"] == hashlib.sha256(rita_file.read_bytes()).hexdigest()
    # a certificate not issued by this CA is refused
    other = make_ca(tmp_path / "other", passphrase=None)
    assert other.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    _x_key, foreign_cert, _ = _key_file_operator(other, "A123456789-05-EVE", tmp_path)
    assert alice.run("operator", "add", "eve", "--role", "manager", "--cert", foreign_cert).code == 5
    _ok(alice.run("--json", "ca", "config", "operator_auth", "required"))

    bob = Desk(home, hsm, "bob", bob_key)
    rita = Desk(home, hsm, "rita", rita_key)
    ci = Desk(home, hsm, "ci", f"file:{ci_key}")
    carol = Desk(home, hsm, "carol", str(carol_key))
    csr = _server_csr(tmp_path, "www.twca.com.tw")

    # no signature: exit 4, nothing changed
    before = _counts(home)
    assert Desk(home, hsm, "bob", None).issue(csr).code == 4
    assert alice.issue(csr).code == 4  # a manager without a certificate
    assert Desk(home, hsm, "bob", f"file:{ci_key}").issue(csr).code == 4  # someone else's key
    assert _counts(home) == before
    # an auditor's signature cannot issue; an RA operator cannot change an account
    assert carol.issue(csr).code == 5
    assert rita.run("account", "credit", ACCOUNT, "5").code == 5
    assert rita.run("ca", "config", "crl_days", "3").code == 5
    assert _counts(home) == before
    # signed by the card, by the RA's card, by the automation key file
    issued = [_ok(desk.issue(_server_csr(tmp_path, f"{desk.name}.twca.com.tw")))["certificates"][0]["serial"]
              for desk in (bob, rita, ci)]
    _ok(rita.run("--json", "cert", "revoke", issued[1], "--reason", "superseded"))
    _ok(bob.run("--json", "account", "credit", ACCOUNT, "1"))

    # set-role and remove: managers only, logged; the last manager stays
    _ok(bob.run("--json", "operator", "set-role", "rita", "manager"))
    _ok(bob.run("--json", "operator", "set-role", "rita", "ra"))
    assert rita.run("operator", "remove", "carol").code == 5
    _ok(bob.run("--json", "operator", "remove", "carol"))
    assert carol.issue(csr).code == 5  # a removed operator
    # the automation operator's certificate is revoked: it is refused from then on
    _ok(bob.run("--json", "cert", "revoke", ci_serial, "--reason", "keyCompromise"))
    assert ci.issue(csr).code == 4
    # checked where the role is checked, before any transaction: even an unsigned duty (a CRL) is refused
    assert ci.run("crl", "--out", tmp_path / "by-ci.crl").code == 4 and not (tmp_path / "by-ci.crl").exists()
    _ok(bob.run("--json", "operator", "remove", "ci"))
    _ok(bob.run("--json", "operator", "remove", "alice"))
    assert bob.run("operator", "remove", "bob").code == 5  # the last manager
    assert bob.run("operator", "set-role", "bob", "auditor").code == 5
    managers = [o for o in _ok(bob.run("--json", "operator", "list"))["operators"] if o["active"]]
    assert [(o["name"], o["role"]) for o in managers] == [("bob", "manager"), ("rita", "ra")]
    logged = _ok(home.run("--json", "log", "--action", "operator.remove"))["entries"]
    assert sorted(e["details"]["name"] for e in logged) == ["alice", "carol", "ci"]
    updates = _ok(home.run("--json", "log", "--action", "operator.update"))["entries"]
    assert [e["details"]["role"] for e in reversed(updates)] == ["manager", "ra"]

    # every change since operator_auth required holds a verified signature
    verified = _ok(home.run("--json", "log", "verify"))
    assert verified["ok"] is True
    with sqlite3.connect(home.path / "twcactl.db") as db:
        rows = db.execute("SELECT seq, operator, action, details, signature FROM activity_log ORDER BY seq").fetchall()
    start = next(seq for seq, _o, action, details, _s in rows
                 if action == "ca.config" and json.loads(details)["key"] == "operator_auth")
    changes = [r for r in rows if r[0] > start and r[2] in ("cert.issue", "cert.revoke", "account.credit",
                                                              "operator.update", "operator.remove")]
    assert len(changes) >= 10
    signed = [r for r in changes if r[4] is not None]
    assert {r[1] for r in signed} == {"bob", "rita", "ci"}
    assert len(signed) == len(changes)  # one entry per append here: each is signed itself

    # one byte of a signed entry changed, the hash chain rewritten to match: the signature shows it
    seq, _op, _action, details, _sig = signed[0]
    edited = details.replace("superseded", "superseder") if "superseded" in details else details.replace("1", "2", 1)
    assert edited != details
    _rewrite_chain(home.path / "twcactl.db", seq, edited)
    found = home.run("--json", "log", "verify")
    assert found.code == 1
    assert [f["seq"] for f in found.json()["findings"]] == [seq]


def test_operator_enroll_makes_the_key_on_the_card_and_binds_it(hsm: SoftHsm, tmp_path: Path) -> None:
    """``operator enroll``: the key is made on the operator's token, its certificate written there and bound;
    the operator then signs with the card, and a certificate on another card does not stand in for it."""
    home = make_ca(tmp_path / "ca", passphrase=None)
    _ok(home.run("--json", "account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "20"))
    token = hsm.new_token(prefix="dave")
    doc = _ok(home.run("--json", "operator", "enroll", "dave", "--role", "ra", "--token", token, "--pin",
                       f"pass:{PIN}", "--account", ACCOUNT, "--cn", "A123456789-06-DAVE", "--org", "TWCA",
                       "--country", "TW", env=hsm.env()))
    dave = next(o for o in doc["operators"] if o["name"] == "dave")
    assert dave["role"] == "ra" and dave["cert_sha256"]
    objects = hsm.pkcs11_tool(token, "--login", "--pin", PIN, "-O").stdout
    assert "Private Key Object" in objects and "never extractable" in objects and "Certificate Object" in objects
    # the bootstrap manager binds a card of their own, then requires signatures
    boss_key, boss_cert = _enroll_card(hsm, home, "A123456789-07-BOSS", tmp_path)
    _ok(home.run("--json", "operator", "add", "alice", "--role", "manager", "--update", "--cert", boss_cert))
    _ok(home.run("--json", "ca", "config", "operator_auth", "required"))
    desk = Desk(home, hsm, "dave", f"pkcs11:token={token};object=user-sign")
    _ok(desk.issue(_server_csr(tmp_path, "dave.twca.com.tw")))
    assert Desk(home, hsm, "dave", boss_key).issue(_server_csr(tmp_path, "x.twca.com.tw")).code == 4
    assert _ok(home.run("--json", "log", "verify"))["ok"] is True
