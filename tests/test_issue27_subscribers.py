"""Issue 27, part three: subscribers act on their own certificate with the password set at application.

A real ``twcactl serve`` on loopback; the client is ``twcactl subscriber ... --server URL`` over HTTPS.
Suspend and resume with the password (the CRL and OCSP follow), 5 wrong tries lock it, the manager's reset
unlocks it, the stored hash is not the password, a password opens its own certificate only, and a
public-trust TLS certificate cannot be suspended (BR §4.9.13).
"""

from __future__ import annotations

import io
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.conftest import ACCOUNT, CaHome, invoke, make_ca
from tests.serve_support import Served, serving
from tests.test_issue27_remote_ra import _csr as ec_csr
from tests.validation_support import World, configure, validate_http, world_fixture

PASSWORD = "subscriber-pw-27"
OTHER_PASSWORD = "another-pw-27!"


def _ok(result: Any) -> Any:
    assert result.code == 0, result.stdout + result.stderr
    return result.json()


def _csr(tmp_path: Path, cn: str) -> Path:
    return ec_csr(tmp_path, cn)[0]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "ca", quota=10) as server:
        yield server


def _subscriber(served: Served, action: str, serial: str, password: str, *extra: str) -> Any:
    return invoke("--json", "subscriber", action, "--server", f"https://127.0.0.1:{served.port}", "--ca-file",
                  served.root, "--password", "env:SUB_PW", serial, *extra, env={"SUB_PW": password})


def _crl_entry(served: Served, serial: str) -> x509.RevokedCertificate | None:
    status, _headers, der = served.get(f"{served.http}/crl/uca.crl")
    assert status == 200
    return x509.load_der_x509_crl(der).get_revoked_certificate_by_serial_number(int(serial, 16))


def _ocsp(served: Served, leaf: x509.Certificate) -> ocsp.OCSPResponse:
    issuer = x509.load_pem_x509_certificate((served.home.path / "ca" / "uca.cer").read_bytes())
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    status, _headers, body = served.get(f"{served.http}/ocsp", data=request.public_bytes(serialization.Encoding.DER),
                                        headers={"Content-Type": "application/ocsp-request"}, method="POST")
    assert status == 200
    return ocsp.load_der_ocsp_response(body)


def test_subscriber_suspends_resumes_and_is_locked_out(served: Served, tmp_path: Path) -> None:
    home = served.home
    issued = _ok(home.run("--json", "cert", "issue", _csr(tmp_path, "www.twca.com.tw"), "--account", ACCOUNT,
                          "--subscriber-password", "env:SUB_PW", env={"SUB_PW": PASSWORD}))["certificates"][0]
    other = _ok(home.run("--json", "cert", "issue", _csr(tmp_path, "api.twca.com.tw"), "--account", ACCOUNT,
                         "--subscriber-password", "env:SUB_PW", env={"SUB_PW": OTHER_PASSWORD}))["certificates"][0]
    serial = issued["serial"]
    leaf = x509.load_pem_x509_certificate(Path(issued["path"]).read_bytes())
    with sqlite3.connect(home.path / "twcactl.db") as db:
        (stored,) = db.execute("SELECT hash FROM subscriber_secrets WHERE serial = ?", (serial,)).fetchone()
    assert stored.startswith("scrypt$") and PASSWORD not in stored and PASSWORD.encode().hex() not in stored

    # suspend with the password: the CRL lists it on hold, OCSP says revoked (certificateHold)
    assert _ok(_subscriber(served, "suspend", serial, PASSWORD)) == {"serial": serial, "state": "suspended"}
    entry = _crl_entry(served, serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.certificate_hold
    answer = _ocsp(served, leaf)
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason is x509.ReasonFlags.certificate_hold
    # resume: gone from the CRL, good in OCSP
    assert _ok(_subscriber(served, "resume", serial, PASSWORD))["state"] == "valid"
    assert _crl_entry(served, serial) is None
    assert _ocsp(served, leaf).certificate_status is ocsp.OCSPCertStatus.GOOD
    held = _ok(home.run("--json", "log", "--operator", f"subscriber:{serial}"))["entries"]
    assert [(e["action"], e["serial"]) for e in held] == [("cert.release", serial), ("cert.hold", serial)]

    # a password opens its own certificate only
    assert _subscriber(served, "suspend", serial, OTHER_PASSWORD).code == 4
    assert _subscriber(served, "suspend", other["serial"], PASSWORD).code == 4
    # 5 wrong tries lock it (logged); then even the right password is refused until the manager's reset
    for _ in range(3):  # with the one above: 4 wrong tries, not yet locked
        assert _subscriber(served, "suspend", serial, "wrong-password").code == 4
    assert _subscriber(served, "download", serial, PASSWORD, "--out", tmp_path / "a.zip").code == 0  # resets count
    for _ in range(5):
        assert _subscriber(served, "suspend", serial, "wrong-password").code == 4
    locked = _subscriber(served, "suspend", serial, PASSWORD)
    assert locked.code == 4 and "locked" in locked.json()["error"]["message"]
    assert [e["details"]["tries"] for e in _ok(home.run("--json", "log", "--action", "subscriber.locked"))["entries"]] \
        == [5]
    with sqlite3.connect(home.path / "twcactl.db") as db:
        assert db.execute("SELECT state FROM certificates WHERE serial = ?", (serial,)).fetchone() == ("valid",)
    _ok(home.run("--json", "subscriber", "reset", serial))
    out = tmp_path / "cert.zip"
    _ok(_subscriber(served, "download", serial, PASSWORD, "--out", out))
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as bundle:
        server_cer = x509.load_pem_x509_certificate(bundle.read("server.cer"))
    assert server_cer == leaf

    # change the password; revoke for a subscriber's reason only
    changed = invoke("--json", "subscriber", "passwd", "--server", f"https://127.0.0.1:{served.port}", "--ca-file",
                     served.root, "--password", "env:SUB_PW", "--new-password", "env:NEW_PW", serial,
                     env={"SUB_PW": PASSWORD, "NEW_PW": "brand-new-pw-27"})
    assert changed.code == 0, changed.stderr
    assert _subscriber(served, "resume", serial, PASSWORD).code == 4
    assert _subscriber(served, "revoke", serial, "brand-new-pw-27", "--reason", "privilegeWithdrawn").code == 2
    assert _ok(_subscriber(served, "revoke", serial, "brand-new-pw-27", "--reason", "keyCompromise"))["state"] == \
        "revoked"
    assert _ocsp(served, leaf).certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert _ok(home.run("--json", "log", "verify"))["ok"] is True


def test_a_subscriber_name_acts_on_its_own_certificate_only(tmp_path: Path) -> None:
    """The log refuses ``subscriber:A`` writing about certificate B, and any operator change (exit 5)."""
    from twcactl.errors import StateError
    from twcactl.store import Store

    home = make_ca(tmp_path / "ca", passphrase=None)
    store = Store.open(home.path)
    try:
        with pytest.raises(StateError), store.transaction():
            store.log.append(operator="subscriber:aa", action="cert.hold", serial="bb")
        with pytest.raises(StateError), store.transaction():
            store.log.append(operator="subscriber:aa", action="account.credit", serial="aa")
    finally:
        store.close()
    assert invoke("--home", home.path, "cert", "list", env={"TWCACTL_OPERATOR": "subscriber:aa"}).code == 2


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """dnsmasq, nginx and five remote perspectives for public-trust issuance (issue 26)."""
    world = world_fixture(tmp_path_factory.mktemp("world"))
    started = next(world)
    started.serve_all()
    yield started
    next(world, None)


def test_public_trust_tls_certificate_cannot_be_suspended_by_its_subscriber(tmp_path: Path, world: World) -> None:
    from twcactl.authority import subscribers
    from twcactl.errors import StateError
    from twcactl.store import Store

    result = invoke("--home", tmp_path / "pt", "ca", "init", "--public-trust", "--org", "twcactl Test", "--country",
                    "TW", "--root-key-type", "rsa2048", "--no-passphrase", "--crl-url",
                    "http://crl.example.tw/uca.crl", "--ocsp-url", "http://ocsp.example.tw",
                    env={"TWCACTL_OPERATOR": "alice"})
    assert result.code == 0, result.stderr
    home = CaHome(tmp_path / "pt", None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    configure(home, world)
    validate_http(home, world, "twca.com.tw")
    serial = _ok(home.run("--json", "cert", "issue", _csr(tmp_path, "www.twca.com.tw"), "--account", ACCOUNT,
                          "--subscriber-password", "env:SUB_PW", env={"SUB_PW": PASSWORD}))["certificates"][0]["serial"]
    store = Store.open(home.path)
    try:
        with pytest.raises(StateError) as refused:
            subscribers.act(store, serial, PASSWORD, "suspend", reason=None, passphrase=lambda: None)
        assert refused.value.details["rule"] == "BR 4.9.13"
        assert store.certificates.get(serial).state == "valid"
    finally:
        store.close()


def test_card_enrolment_keeps_the_subscriber_password(tmp_path: Path, hsm: Any) -> None:
    """``card enroll --subscriber-password``: the holder of a card certificate acts on it with the password set
    at enrolment (and only with it); with ``--csr-out`` (another CA issues) the option is refused before a key
    is made."""
    from tests.card_support import PIN
    from twcactl.authority import subscribers
    from twcactl.errors import AuthError
    from twcactl.store import Store

    home = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    token = hsm.new_token()
    env = {**hsm.env(), "SUB_PW": PASSWORD}
    enrolled = _ok(home.run("--json", "card", "enroll", "--token", token, "--pin", f"pass:{PIN}", "--account",
                            ACCOUNT, "--cn", "A123456789-01-YIRU", "--org", "TWCA", "--country", "TW",
                            "--subscriber-password", "env:SUB_PW", env=env))
    serial = enrolled["keys"][0]["certificate"]["serial"]
    store = Store.open(home.path)
    try:
        with pytest.raises(AuthError):
            subscribers.act(store, serial, "not-the-password-27", "suspend", reason=None, passphrase=lambda: None)
        subscribers.act(store, serial, PASSWORD, "suspend", reason=None, passphrase=lambda: None)
        assert store.certificates.get(serial).state == "suspended"
    finally:
        store.close()
    refused = home.run("card", "enroll", "--token", hsm.new_token(), "--pin", f"pass:{PIN}", "--csr-out",
                       str(tmp_path / "card.csr"), "--cn", "A123456789-01-YIRU", "--subscriber-password",
                       "env:SUB_PW", env=env)
    assert refused.code == 2 and not (tmp_path / "card.csr").exists(), refused.stderr
