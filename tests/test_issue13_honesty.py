"""Issue 13 (honesty and tamper evidence): after the commit nothing says "failed"; derived files that cannot be
written are reported pending and repaired by ``ca check``; no waiting without bound after a commit; ``ca check``
rebuilds the records from the activity log and reports every record that differs; forged certificates are never
written to ``certs/``; a CA key must match its certificate, and an encrypted home refuses a plaintext key.

Unwritable directories: the tests run as root, who ignores file modes, so ``chattr +i`` (immutable) makes
``certs/`` or ``crl/`` refuse new files (EPERM), and a 4 KiB tmpfs mounted on ``certs/`` makes it full (ENOSPC).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ACCOUNT, CA_PASSPHRASE, CaHome, make_ca
from twcactl.store.log import GENESIS_HASH, log_hash

ACCOUNT2 = "70759028-02"


# ----- helpers -----

def csr_file(directory: Path, host: str) -> Path:
    """An EC P-256 CSR for ``host`` under twca.com.tw, O=TWCA (fast to make)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "TW"),
                      x509.NameAttribute(x509.NameOID.STATE_OR_PROVINCE_NAME, "Taiwan"),
                      x509.NameAttribute(x509.NameOID.LOCALITY_NAME, "Taipei"),
                      x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "TWCA"),
                      x509.NameAttribute(x509.NameOID.COMMON_NAME, f"{host}.twca.com.tw")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    path = directory / f"{host}.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


def new_home(path: Path, *, passphrase: str | None = None, quota: int = 10) -> CaHome:
    home = make_ca(path, passphrase=passphrase)
    result = home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", str(quota))
    assert result.code == 0, result.stderr
    return home


def issue(home: CaHome, host: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = home.run("--json", "cert", "issue", csr_file(home.path.parent / "csrs", host), "--account", ACCOUNT,
                      *extra)
    return result.code, result.json()


def db(home: CaHome) -> sqlite3.Connection:
    return sqlite3.connect(home.path / "twcactl.db", isolation_level=None)


def query(home: CaHome, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = db(home)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def execute(home: CaHome, *statements: tuple[str, tuple[Any, ...]]) -> None:
    conn = db(home)
    try:
        for sql, params in statements:
            conn.execute(sql, params)
    finally:
        conn.close()


def ca_check(home: CaHome, *extra: str) -> tuple[int, dict[str, Any]]:
    result = home.run("--json", "ca", "check", *extra)
    return result.code, result.json()


@contextlib.contextmanager
def immutable(directory: Path) -> Iterator[None]:
    """``directory`` refuses new entries, even for root (``chattr +i``)."""
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


@contextlib.contextmanager
def files_lock_held(home: CaHome) -> Iterator[subprocess.Popen[bytes]]:
    """Another process holds ``HOME/.files.lock`` (fcntl.flock) until the block ends."""
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(home.path / ".files.lock")], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"locked"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


# ----- after the commit nothing says "failed" -----

def test_issue_with_unwritable_certs_exits_0_lists_the_pem_pending_and_ca_check_repairs_it(tmp_path: Path) -> None:
    home = new_home(tmp_path / "ca")
    with immutable(home.path / "certs"):
        code, doc = issue(home, "www")
    assert code == 0, doc
    serial = doc["certificates"][0]["serial"]
    pem = home.path / "certs" / f"{serial}.pem"
    assert doc["files"] == {"written": [], "pending": [str(pem)]}
    assert not pem.exists()
    # recorded and charged exactly once
    assert query(home, "SELECT COUNT(*) FROM certificates") == [(1,)]
    assert query(home, "SELECT COUNT(*) FROM ledger WHERE action = 'issue'") == [(1,)]
    assert query(home, "SELECT balance FROM accounts") == [(9,)]
    code, report = ca_check(home)
    assert code == 0 and report["ok"], report
    assert len(report["repairs"]) == 1
    assert x509.load_pem_x509_certificate(pem.read_bytes()).serial_number == int(serial, 16)
    assert ca_check(home)[1]["repairs"] == []


def test_issue_on_a_full_certs_directory_exits_0_and_leaves_no_partial_file(tmp_path: Path) -> None:
    home = new_home(tmp_path / "ca")
    certs = home.path / "certs"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(certs)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        with contextlib.suppress(OSError), (certs / "filler").open("wb") as fh:
            fh.write(b"x" * 65536)
        code, doc = issue(home, "www")
        assert code == 0, doc
        serial = doc["certificates"][0]["serial"]
        assert doc["files"]["pending"] == [str(certs / f"{serial}.pem")] and doc["files"]["written"] == []
        assert not (certs / f"{serial}.pem").exists()
    finally:
        subprocess.run(["umount", str(certs)], check=True)
    assert query(home, "SELECT balance FROM accounts") == [(9,)]
    code, report = ca_check(home)
    assert code == 0 and len(report["repairs"]) == 1, report


def test_revoke_with_unwritable_crl_exits_0_and_is_not_revoked_twice(tmp_path: Path) -> None:
    home = new_home(tmp_path / "ca")
    code, doc = issue(home, "www")
    serial = doc["certificates"][0]["serial"]
    crl_file = home.path / "crl" / "uca.crl"
    with immutable(home.path / "crl"):
        result = home.run("--json", "cert", "revoke", serial, "--reason", "keyCompromise")
        assert result.code == 0, result.stdout
        revoked = result.json()
        assert revoked["certificate"]["status"] == "revoked"
        assert revoked["files"] == {"written": [], "pending": [str(crl_file)]}
        crl_result = home.run("--json", "crl")
        assert crl_result.code == 0, crl_result.stdout
        assert crl_result.json()["files"]["pending"] == [str(crl_file)]
    assert not crl_file.exists()
    assert query(home, "SELECT COUNT(*) FROM activity_log WHERE action = 'cert.revoke'") == [(1,)]
    assert query(home, "SELECT COUNT(*) FROM ledger WHERE action = 'refund'") == [(1,)]
    code, report = ca_check(home)
    assert code == 0 and report["ok"], report
    crl = x509.load_der_x509_crl(crl_file.read_bytes())
    assert [e.serial_number for e in crl] == [int(serial, 16)]


def test_issue_with_the_files_lock_held_elsewhere_finishes_within_its_lock_timeout(tmp_path: Path) -> None:
    home = new_home(tmp_path / "ca")
    _code, first = issue(home, "api")
    old = first["certificates"][0]["serial"]
    with files_lock_held(home):
        # "--lock-timeout 2" bounds every wait: before the commit (exit 75) and after it (files left pending)
        started = time.monotonic()
        code, doc = _issue_with_timeout(home, "www", "2")
        assert time.monotonic() - started < 8
        started = time.monotonic()
        revoked = home.run("--lock-timeout", "2", "--json", "cert", "revoke", old, "--reason", "superseded")
        assert time.monotonic() - started < 8
        # ca check --no-repair does not need the lock at all
        started = time.monotonic()
        code_check, report = ca_check(home, "--no-repair")
        assert time.monotonic() - started < 6
    assert code == 0, doc
    serial = doc["certificates"][0]["serial"]
    assert doc["files"] == {"written": [], "pending": [str(home.path / "certs" / f"{serial}.pem")]}
    assert revoked.code == 0, revoked.stdout
    assert revoked.json()["files"] == {"written": [], "pending": [str(home.path / "crl" / "uca.crl")]}
    assert code_check == 1 and f"{serial}.pem is missing" in report["findings"], report
    assert query(home, "SELECT COUNT(*) FROM certificates") == [(2,)]
    assert query(home, "SELECT balance FROM accounts") == [(9,)]  # 10 - 2 issued + 1 refunded, each once
    code, report = ca_check(home)
    assert code == 0 and len(report["repairs"]) == 2, report


def _issue_with_timeout(home: CaHome, host: str, timeout: str) -> tuple[int, dict[str, Any]]:
    result = home.run("--lock-timeout", timeout, "--json", "cert", "issue",
                      csr_file(home.path.parent / "csrs", host), "--account", ACCOUNT)
    return result.code, result.json()


# ----- tamper evidence for the records -----

@pytest.fixture(scope="module")
def base_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A home with two accounts, three certificates (one revoked for keyCompromise), an auditor, a changed
    setting and a credit: every kind of record the log describes."""
    root = tmp_path_factory.mktemp("base")
    home = new_home(root / "ca")
    assert home.run("account", "add", ACCOUNT2, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "3").code == 0
    assert home.run("account", "set", ACCOUNT, "--add-domain", "twca.net").code == 0
    assert home.run("account", "credit", ACCOUNT, "5", "--note", "order 1").code == 0
    assert home.run("operator", "add", "carol", "--role", "auditor").code == 0
    assert home.run("ca", "config", "crl_days", "3").code == 0
    serials = {host: issue(home, host)[1]["certificates"][0]["serial"] for host in ("www", "api", "mail")}
    assert home.run("cert", "revoke", serials["www"], "--reason", "keyCompromise").code == 0
    assert home.run("cert", "hold", serials["mail"]).code == 0
    return home.path, serials


@pytest.fixture
def tampered(base_home: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[CaHome, dict[str, str]]:
    path, serials = base_home
    shutil.copytree(path, tmp_path / "ca", symlinks=True)
    return CaHome(tmp_path / "ca", None), serials


def test_an_untouched_home_is_sound(tampered: tuple[CaHome, dict[str, str]]) -> None:
    home, _serials = tampered
    code, report = ca_check(home, "--no-repair")
    assert code == 0 and report["ok"], report
    assert report["checked"]["certificates against the log"] == 3
    assert report["checked"]["certificates the log states only partly (entries before issue 13)"] == 0
    assert report["checked"]["balances against the log"] == 2
    assert report["checked"]["operators against the log"] == 2


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


TAMPERS: dict[str, Callable[[dict[str, str]], tuple[list[tuple[str, tuple[Any, ...]]], str]]] = {
    # a keyCompromise revocation undone, and its CRLs deleted so the CRL check agrees with the records
    "unrevoke": lambda s: ([("UPDATE certificates SET state = 'valid', reason = NULL, revoked_at = NULL,"
                             " invalidity_date = NULL WHERE serial = ?", (s["www"],)),
                            ("UPDATE certificates SET state = 'valid', reason = NULL, revoked_at = NULL"
                             " WHERE serial = ?", (s["mail"],)),
                            ("DELETE FROM crls", ())], f"certificate {s['www']}"),
    "add manager": lambda s: ([("INSERT INTO operators (name, role, created_at, created_by) VALUES"
                                " ('mallory', 'manager', ?, 'alice')", (_now(),))], "operator mallory"),
    "promote auditor": lambda s: ([("UPDATE operators SET role = 'manager' WHERE name = 'carol'", ())],
                                  "operator carol"),
    "agreed domain": lambda s: ([("INSERT INTO account_domains (account_id, domain) VALUES (?, 'evil.example')",
                                  (ACCOUNT,))], "evil.example"),
    "500 years": lambda s: ([("UPDATE accounts SET balance = balance + 500 WHERE id = ?", (ACCOUNT,)),
                             ("INSERT INTO ledger (account_id, time, delta, balance, action, operator, note)"
                              " SELECT id, ?, 500, balance, 'credit', 'alice', 'free' FROM accounts WHERE id = ?",
                              (_now(), ACCOUNT))], f"account {ACCOUNT}"),
    "notAfter": lambda s: ([("UPDATE certificates SET not_after = '2099-01-01T00:00:00Z' WHERE serial = ?",
                             (s["api"],))], f"certificate {s['api']}"),
    "account": lambda s: ([("UPDATE certificates SET account_id = ? WHERE serial = ?", (ACCOUNT2, s["api"]))],
                          f"certificate {s['api']}"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERS))
def test_ca_check_names_each_tampered_record(tampered: tuple[CaHome, dict[str, str]], kind: str) -> None:
    home, serials = tampered
    statements, name = TAMPERS[kind](serials)
    execute(home, *statements)
    assert home.run("--json", "log", "verify").code == 0  # the chain itself is untouched
    code, report = ca_check(home, "--no-repair")
    assert code == 1 and not report["ok"]
    assert [f for f in report["findings"] if name in f], report["findings"]


def test_a_forged_certificate_is_reported_and_never_written(tampered: tuple[CaHome, dict[str, str]]) -> None:
    home, serials = tampered
    serial = serials["api"]
    key = ec.generate_private_key(ec.SECP256R1())
    record = x509.load_der_x509_certificate(query(home, "SELECT der FROM certificates WHERE serial = ?", serial)[0][0])
    forged = (x509.CertificateBuilder().subject_name(record.subject).issuer_name(record.issuer)
              .public_key(key.public_key()).serial_number(record.serial_number)
              .not_valid_before(record.not_valid_before_utc).not_valid_after(record.not_valid_after_utc)
              .sign(key, hashes.SHA256()))
    der = forged.public_bytes(serialization.Encoding.DER)
    execute(home, ("UPDATE certificates SET der = ?, sha256 = ? WHERE serial = ?",
                   (der, hashlib.sha256(der).hexdigest(), serial)))
    pem = home.path / "certs" / f"{serial}.pem"
    pem.unlink()
    code, report = ca_check(home)  # with repairs
    assert code == 1
    assert [f for f in report["findings"] if serial in f and "not signed" in f], report["findings"]
    assert [f for f in report["findings"] if serial in f and "sha256" in f], report["findings"]
    assert not pem.exists()


# ----- the CA key must match its certificate -----

def _cannot_issue(home: CaHome, code_wanted: int) -> dict[str, Any]:
    balance = query(home, "SELECT balance FROM accounts")
    code, doc = issue(home, "www")
    assert code == code_wanted, doc
    assert query(home, "SELECT COUNT(*) FROM certificates") == [(0,)]
    assert query(home, "SELECT balance FROM accounts") == balance
    assert list((home.path / "certs").iterdir()) == []
    return doc


def test_a_plaintext_key_in_an_encrypted_home_is_refused(tmp_path: Path) -> None:
    home = new_home(tmp_path / "ca", passphrase=CA_PASSPHRASE)
    key_file = home.path / "ca" / "private" / "uca.key"
    key = serialization.load_pem_private_key(key_file.read_bytes(), CA_PASSPHRASE.encode())
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    doc = _cannot_issue(home, 5)
    assert doc["error"]["kind"] == "state"
    code, report = ca_check(home, "--no-repair")
    assert code == 1 and [f for f in report["findings"] if "CA uca" in f and "encrypted" in f], report


def test_a_key_that_does_not_match_its_certificate_is_refused(tmp_path: Path) -> None:
    home = new_home(tmp_path / "ca")
    key_file = home.path / "ca" / "private" / "uca.key"
    other = ec.generate_private_key(ec.SECP256R1())
    key_file.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    _cannot_issue(home, 5)
    code, report = ca_check(home, "--no-repair")
    assert code == 1 and [f for f in report["findings"] if "CA uca" in f and "does not belong" in f], report


def test_a_ca_certificate_file_that_is_not_the_recorded_one_is_reported(tmp_path: Path) -> None:
    home = new_home(tmp_path / "ca")
    (home.path / "ca" / "uca.cer").write_bytes((home.path / "ca" / "root.cer").read_bytes())
    code, report = ca_check(home, "--no-repair")
    assert code == 1 and [f for f in report["findings"] if "CA uca" in f and "recorded" in f], report


# ----- old homes, and the limit of a consistent rewrite -----

def rechain(home: CaHome, change: Callable[[str, dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite every log entry's details with ``change`` and recompute the whole chain, its head and the CRL
    anchors: what someone holding the database could do."""
    conn = db(home)
    try:
        rows = conn.execute("SELECT seq, time, operator, action, account, serial, details FROM activity_log"
                            " ORDER BY seq").fetchall()
        prev = GENESIS_HASH
        conn.execute("BEGIN")
        for seq, time_, operator, action, account, serial, details in rows:
            text = json.dumps(change(action, json.loads(details)), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False)
            digest = log_hash(prev, seq, time_, operator, action, account, serial, text)
            conn.execute("UPDATE activity_log SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                         (text, prev, digest, seq))
            conn.execute("UPDATE crls SET log_hash = ? WHERE log_seq = ?", (digest, seq))
            prev = digest
        conn.execute("UPDATE meta SET value = ? WHERE key = 'log_head'", (f"{rows[-1][0]}:{prev}",))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _as_before_issue_13(_action: str, details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if k not in ("record", "result", "balance")}


def test_an_old_home_without_the_new_fields_has_no_false_findings(tampered: tuple[CaHome, dict[str, str]]) -> None:
    home, serials = tampered
    rechain(home, _as_before_issue_13)
    assert home.run("--json", "log", "verify").code == 0
    code, report = ca_check(home, "--no-repair")
    assert code == 0 and report["ok"], report
    assert report["checked"]["certificates the log states only partly (entries before issue 13)"] == 3
    # what the old entries do state is still checked
    execute(home, ("UPDATE certificates SET state = 'valid', reason = NULL, revoked_at = NULL WHERE serial = ?",
                   (serials["www"],)), ("DELETE FROM crls", ()))
    code, report = ca_check(home, "--no-repair")
    assert code == 1 and [f for f in report["findings"] if serials["www"] in f], report


def test_a_consistent_rewrite_is_caught_only_by_a_head_exported_before(tampered: tuple[CaHome, dict[str, str]]) -> None:
    home, _serials = tampered
    result = home.run("--json", "log", "head")
    assert result.code == 0
    exported = result.json()
    assert set(exported) == {"seq", "hash"} and len(exported["hash"]) == 64
    assert home.run("--json", "log", "head", "--seq", str(exported["seq"])).json() == exported
    assert home.run("--json", "log", "verify").json()["head"] == exported

    def grant_more(action: str, details: dict[str, Any]) -> dict[str, Any]:
        if action == "account.credit":
            return {**details, "delta": details["delta"] + 500, "balance": details["balance"] + 500}
        return details

    rechain(home, grant_more)
    assert home.run("--json", "log", "verify").code == 0  # a full consistent rewrite is not detectable inside
    anchored = home.run("--json", "log", "verify", "--expect-head", f"{exported['seq']}:{exported['hash']}")
    assert anchored.code == 1
    assert [f for f in anchored.json()["findings"] if f["seq"] == exported["seq"]]
    assert home.run("--json", "log", "verify", "--expect-head", "1:xyz").code == 2
