"""Issue 27, part four: an RA desk works through ``serve`` with signed requests.

A real ``twcactl serve`` on loopback (HTTPS); the RA desk is a process with no CA home, no database password
and no CA key, only the operator's key file, running ``twcactl --server URL ...``.  The same commands run
on a second, local home: the JSON documents, the books (ledger) and the log come out the same.  A replayed
request and one signed by an unknown key are refused.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ACCOUNT, CaHome, invoke, make_ca
from tests.serve_support import Served, serving


def _ok(result: Any) -> Any:
    assert result.code == 0, result.stdout + result.stderr
    return result.json()


def _subject(cn: str, *, personal: bool = False) -> x509.Name:
    attrs = [x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "TW")]
    if not personal:
        attrs += [x509.NameAttribute(x509.NameOID.STATE_OR_PROVINCE_NAME, "Taiwan"),
                  x509.NameAttribute(x509.NameOID.LOCALITY_NAME, "Taipei")]
    attrs += [x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "TWCA"), x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]
    return x509.Name(attrs)


def _csr(directory: Path, cn: str, *, personal: bool = False) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(_subject(cn, personal=personal)).sign(key, hashes.SHA256())
    path = directory / f"{cn}.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path, key


def _rita(home: CaHome, tmp_path: Path) -> Path:
    """Operator rita (RA) bound to a user-sign certificate of ``home``; her key file."""
    csr, key = _csr(tmp_path, "A123456789-02-RITA", personal=True)
    issued = _ok(home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, "--profile", "user-sign"))
    _ok(home.run("--json", "operator", "add", "rita", "--role", "ra", "--cert", issued["certificates"][0]["path"]))
    key_file = tmp_path / "rita.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return key_file


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "server-ca", quota=20) as server:
        yield server


class Desk:
    """The RA desk: no home, no CA passphrase, no store password; the operator's key file only."""

    def __init__(self, served: Served, key_file: Path, desk_dir: Path) -> None:
        self.env: dict[str, str | None] = {
            "TWCACTL_SERVER": f"https://127.0.0.1:{served.port}", "TWCACTL_SERVER_CA_FILE": str(served.root),
            "TWCACTL_OPERATOR": "rita", "TWCACTL_OPERATOR_KEY": f"file:{key_file}", "TWCACTL_HOME": str(desk_dir)}

    def run(self, *args: str | Path) -> Any:
        return invoke(*args, env=self.env)


def _books(home_run: Any) -> tuple[Any, Any]:
    ledger = [(e["delta"], e["balance"], e["action"]) for e in
              _ok(home_run("--json", "account", "show", ACCOUNT))["ledger"]]
    entries = _ok(home_run("--json", "log", "--operator", "rita"))["entries"]  # the desk's work (the server's
    # own entries, its TLS and OCSP certificates, are not the desk's)
    log = [(e["action"], e["account"], sorted(e["details"]), e["details"].get("balance"), e["details"].get("cost"))
           for e in entries]
    return ledger, log


def _work(run: Any, csrs: list[Path], out_dir: Path) -> dict[str, Any]:
    """Issue two, revoke one, list, export: what an RA desk does in a morning."""
    first = _ok(run("--json", "cert", "issue", csrs[0], "--account", ACCOUNT))
    second = _ok(run("--json", "cert", "issue", csrs[1], "--account", ACCOUNT, "--days", "90"))
    revoked = _ok(run("--json", "cert", "revoke", first["certificates"][0]["serial"], "--reason", "superseded"))
    listed = _ok(run("--json", "cert", "list", "--account", ACCOUNT))
    serial = second["certificates"][0]["serial"]
    exported = _ok(run("--json", "cert", "export", serial, "--out-dir", out_dir))
    return {"first": first, "second": second, "revoked": revoked, "listed": listed, "exported": exported,
            "serial": serial}


def _shape(doc: Any) -> Any:
    """The document's keys, all the way down (values differ: serials, times, paths)."""
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_shape(v) for v in doc[:1]]
    return type(doc).__name__


def _by_cn(listed: dict[str, Any]) -> dict[str, Any]:
    """The list with the certificates in CN order (certificates issued within one second list in any order)."""
    return {**listed, "certificates": sorted(listed["certificates"], key=lambda c: (c.get("cn") or "", c["serial"]))}


def test_remote_desk_issues_revokes_lists_and_exports_like_local_use(served: Served, tmp_path: Path) -> None:
    (tmp_path / "server-side").mkdir()
    key_file = _rita(served.home, tmp_path / "server-side")
    desk_dir = tmp_path / "desk"  # never created: the desk has no home at all
    desk = Desk(served, key_file, desk_dir)
    local = make_ca(tmp_path / "local-ca")
    assert local.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "20").code == 0
    (tmp_path / "local-side").mkdir()
    _rita(local, tmp_path / "local-side")

    requests = tmp_path / "requests"
    requests.mkdir()
    csrs = [_csr(requests, "www.twca.com.tw")[0], _csr(requests, "api.twca.com.tw")[0]]
    remote = _work(desk.run, csrs, tmp_path / "remote-out")
    here = _work(lambda *a: local.run(*a, env={"TWCACTL_OPERATOR": "rita"}), csrs, tmp_path / "local-out")
    assert not desk_dir.exists()

    for name in ("first", "second", "revoked", "listed", "exported"):
        assert _shape(remote[name]) == _shape(here[name]) if name != "listed" else \
            _shape(_by_cn(remote[name])) == _shape(_by_cn(here[name])), name
    assert remote["revoked"]["certificate"]["status"] == here["revoked"]["certificate"]["status"] == "revoked"
    assert sorted(c["status"] for c in remote["listed"]["certificates"]) == sorted(
        c["status"] for c in here["listed"]["certificates"])
    # the export's files are on the desk, named as locally, the server certificate the one issued
    remote_files = sorted(p.name for p in (tmp_path / "remote-out").iterdir())
    assert remote_files == sorted(p.name for p in (tmp_path / "local-out").iterdir())
    leaf = x509.load_pem_x509_certificate((tmp_path / "remote-out" / "server.cer").read_bytes())
    assert format(leaf.serial_number, "x") == remote["serial"]
    assert str(tmp_path / "remote-out") in json.dumps(remote["exported"])
    if (tmp_path / "remote-out" / "cert.zip").exists():
        assert zipfile.is_zipfile(tmp_path / "remote-out" / "cert.zip")
    # the books and the log: the same entries, by the same operator, for the same actions
    assert _books(served.home.run) == _books(local.run)
    signed = [e for e in _ok(served.home.run("--json", "log", "--operator", "rita"))["entries"]]
    assert {e["action"] for e in signed} == {"cert.issue", "cert.revoke"}
    assert _ok(served.home.run("--json", "log", "verify"))["ok"] is True
    _tamper_request_signature(served.home.path / "twcactl.db")
    tampered = served.home.run("--json", "log", "verify")
    assert tampered.code == 1 and "request signature" in tampered.json()["findings"][0]["message"]
    # the same exit codes: a refused request, a non-RA command, a role that may not
    assert desk.run("--json", "cert", "revoke", remote["first"]["certificates"][0]["serial"], "--reason",
                    "superseded").code == 5
    assert desk.run("--json", "account", "credit", ACCOUNT, "5").code == 2
    assert desk.run("--json", "cert", "issue", "--account", ACCOUNT, "/etc/hostname-not-sent").code == 2


def _tamper_request_signature(db_path: Path) -> None:
    """Change one character of the JWS payload kept with rita's first signed entry."""
    import sqlite3

    with sqlite3.connect(db_path) as db:
        seq, text = db.execute("SELECT seq, signature FROM activity_log WHERE operator = 'rita' AND signature IS NOT"
                               " NULL ORDER BY seq LIMIT 1").fetchone()
        doc = json.loads(text)
        jws = json.loads(doc["jws"])
        jws["payload"] = ("B" if jws["payload"][0] != "B" else "C") + jws["payload"][1:]
        doc["jws"] = json.dumps(jws)
        db.execute("UPDATE activity_log SET signature = ? WHERE seq = ?", (json.dumps(doc), seq))


def _signed_request(served: Served, key: Any, kid: str, argv: list[str], monkeypatch: pytest.MonkeyPatch,
                    tmp_path: Path) -> bytes:
    from twcactl.cli import ra_client

    key_file = tmp_path / f"{kid}-{id(key)}.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    monkeypatch.setenv("TWCACTL_SERVER_CA_FILE", str(served.root))
    base = f"https://127.0.0.1:{served.port}"
    payload = json.dumps({"argv": argv, "files": {}, "outputs": []}).encode()
    return ra_client._sign(payload, str(key_file), kid=kid, nonce=ra_client._nonce(base), url=f"{base}/ra/command")


def _post(served: Served, body: bytes) -> tuple[int, dict[str, Any]]:
    status, _headers, data = served.get(f"https://127.0.0.1:{served.port}/ra/command", data=body,
                                        headers={"Content-Type": "application/jose+json"}, method="POST")
    return status, json.loads(data)


def test_replayed_and_unknown_key_requests_are_refused(served: Served, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key_file = _rita(served.home, tmp_path)
    rita_key = load_pem_private_key(key_file.read_bytes(), None)
    body = _signed_request(served, rita_key, "rita", ["cert", "list", "--json"], monkeypatch, tmp_path)
    status, answer = _post(served, body)
    assert status == 200 and answer["exit"] == 0 and json.loads(answer["stdout"])["count"] >= 1
    status, again = _post(served, body)  # the same request, its nonce already used
    assert again["exit"] == 4 and "nonce" in json.loads(again["stdout"])["error"]["message"]
    # a key no operator is bound to, under rita's name and under an unknown name
    stranger = ec.generate_private_key(ec.SECP256R1())
    for kid in ("rita", "mallory"):
        status, refused = _post(served, _signed_request(served, stranger, kid, ["cert", "list"], monkeypatch, tmp_path))
        assert status == 401 and refused["error"]["code"] == 4
    # a signed request for another command than the RA ones
    status, refused = _post(served, _signed_request(served, rita_key, "rita", ["operator", "add", "x", "--role",
                                                                                "manager"], monkeypatch, tmp_path))
    assert status == 400 and refused["error"]["code"] == 2
    assert [o["name"] for o in _ok(served.home.run("--json", "operator", "list"))["operators"]] == ["alice", "rita"]


def test_remote_desk_signs_with_the_card(served: Served, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
                                         ) -> None:
    """The RA operator's key is on their card (SoftHSM2): ``operator enroll`` puts it there, the desk signs
    each request with it; the server's log holds the request signatures, and ``log verify`` checks them."""
    from tests.card_support import PIN, softhsm_directory
    from tests.conftest import require

    require("softhsm2-util")
    with softhsm_directory(tmp_path_factory.mktemp("softhsm")) as hsm:
        token = hsm.new_token(prefix="desk")
        _ok(served.home.run("--json", "operator", "enroll", "bob", "--role", "ra", "--token", token, "--pin",
                            f"pass:{PIN}", "--account", ACCOUNT, "--cn", "A123456789-08-BOB", "--org", "TWCA",
                            "--country", "TW", env=hsm.env()))
        env: dict[str, str | None] = {
            **hsm.env(), "TWCACTL_SERVER": f"https://127.0.0.1:{served.port}",
            "TWCACTL_SERVER_CA_FILE": str(served.root), "TWCACTL_OPERATOR": "bob",
            "TWCACTL_OPERATOR_KEY": f"pkcs11:token={token};object=user-sign", "TWCACTL_OPERATOR_PIN_SOURCE": "env:PIN",
            "PIN": PIN, "TWCACTL_HOME": str(tmp_path / "no-desk-home")}
        csr = _csr(tmp_path, "desk.twca.com.tw")[0]
        issued = _ok(invoke("--json", "cert", "issue", csr, "--account", ACCOUNT, env=env))
        serial = issued["certificates"][0]["serial"]
        assert invoke("--json", "cert", "issue", csr, "--account", ACCOUNT,
                      env={**env, "PIN": "00000000"}).code == 4  # a wrong card PIN signs nothing
    entries = _ok(served.home.run("--json", "log", "--operator", "bob"))["entries"]
    assert [(e["action"], e["serial"]) for e in entries] == [("cert.issue", serial)]
    assert _ok(served.home.run("--json", "log", "verify"))["ok"] is True
