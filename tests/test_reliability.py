"""Issue 8: concurrent operators, crash safety, ca check, tamper-evident log, backups, secrets."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import (
    ACCOUNT,
    CA_PASSPHRASE,
    CaHome,
    db_rows,
    db_run,
    hold_write_lock,
    invoke,
    make_ca,
    openssl_csr,
)

REPO = Path(__file__).resolve().parent.parent

#: Every test here runs on both store engines: the home's SQLite file and PostgreSQL (issue 14).
pytestmark = pytest.mark.usefixtures("store_engine")


def write_csrs(directory: Path, count: int, prefix: str) -> list[Path]:
    """``count`` EC P-256 CSRs for distinct hosts under twca.com.tw (fast to make)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    paths = []
    for i in range(count):
        name = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "TW"),
                          x509.NameAttribute(x509.NameOID.STATE_OR_PROVINCE_NAME, "Taiwan"),
                          x509.NameAttribute(x509.NameOID.LOCALITY_NAME, "Taipei"),
                          x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "TWCA"),
                          x509.NameAttribute(x509.NameOID.COMMON_NAME, f"{prefix}{i}.twca.com.tw")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        path = directory / f"{prefix}{i:03d}.csr"
        path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        paths.append(path)
    return paths


def home_with_quota(tmp_path: Path, quota: int, passphrase: str | None = None) -> CaHome:
    home = make_ca(tmp_path / "ca", passphrase=passphrase)
    result = home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", str(quota))
    assert result.code == 0, result.stderr
    return home


def ca_check(home: CaHome) -> dict:
    result = home.run("--json", "ca", "check")
    doc = result.json()
    assert (result.code == 0) == doc["ok"]
    return doc


def test_four_concurrent_operators(tmp_path: Path) -> None:
    home = home_with_quota(tmp_path, 200)
    procs = []
    for w in range(4):
        write_csrs(tmp_path / f"w{w}", 50, f"w{w}h")
        env = {**os.environ, "TWCACTL_OPERATOR": "alice", "PYTHONPATH": str(REPO)}
        env.pop("TWCACTL_CA_PASSPHRASE_SOURCE", None)
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.reliability_worker", str(home.path), ACCOUNT,
                                       str(tmp_path / f"w{w}"), str(tmp_path / f"w{w}.json")], env=env, cwd=REPO))
    for p in procs:
        assert p.wait(timeout=600) == 0
    results = [json.loads((tmp_path / f"w{w}.json").read_text()) for w in range(4)]
    assert [r["failures"] for r in results] == [[], [], [], []]
    serials = [s for r in results for s in r["issued"]]
    assert len(serials) == 200 and len(set(serials)) == 200

    assert db_rows(home.path, "SELECT COUNT(*) FROM certificates WHERE state = 'revoked'")[0][0] == 200
    balance, total = db_rows(home.path, "SELECT a.balance, SUM(l.delta) FROM accounts a JOIN ledger l"
                                        " ON l.account_id = a.id GROUP BY a.id")[0]
    assert balance == total == 200, "every revocation within the refund window refunded its year"
    crl = x509.load_der_x509_crl((home.path / "crl" / "uca.crl").read_bytes())
    assert {format(e.serial_number, "x") for e in crl} == set(serials)
    doc = ca_check(home)
    assert doc["ok"] and doc["repairs"] == [], doc


def test_busy_home_exits_75_and_changes_nothing(tmp_path: Path, openssl_request: Path) -> None:
    home = home_with_quota(tmp_path, 5)
    with hold_write_lock(home.path):  # another process (on PostgreSQL: another node) in the middle of a write
        started = time.monotonic()
        result = home.run("--lock-timeout", "0.5", "--json", "cert", "issue", openssl_request, "--account", ACCOUNT)
        assert result.code == 75, result.stdout
        assert result.json()["error"]["kind"] == "busy"
        assert time.monotonic() - started < 20
    assert home.run("--json", "cert", "list").json()["count"] == 0
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 5
    assert list((home.path / "certs").iterdir()) == []


OPERATIONS = ("issue", "renew", "revoke", "hold", "release", "credit", "crl")
#: Every kind must be killed at least this often, and acknowledged (ran to the end) at least this often.
MIN_KILLS, MIN_ACKS = 5, 3


def _db_rows(home: CaHome, query: str, *params: object) -> list[tuple]:
    return db_rows(home.path, query, *params)


def _sigkill_args(op: str, i: int, home: CaHome, rng: random.Random, csrs: dict[str, Path]) -> list[str] | None:
    """The command line of operation ``op`` (None when there is nothing to act on)."""
    if op == "issue":
        return ["--json", "cert", "issue", str(rng.choice(list(csrs.values()))), "--account", ACCOUNT, "--days", "10"]
    if op == "renew":
        # the newest certificate of a chain (renewed by nothing yet), with a request for its own CN
        rows = _db_rows(home, "SELECT c.serial, c.cn FROM certificates c WHERE c.state = 'valid' AND NOT EXISTS"
                              " (SELECT 1 FROM certificates d WHERE d.renewed_from = c.serial)")
        if not rows:
            return None
        serial, cn = rng.choice(rows)
        return ["--json", "cert", "renew", serial, "--csr", str(csrs[cn]), "--early"]
    if op in ("revoke", "hold", "release"):
        rows = _db_rows(home, "SELECT serial FROM certificates WHERE state = ?",
                        "suspended" if op == "release" else "valid")
        if not rows:
            return None
        serial = rng.choice(rows)[0]
        # superseded, not keyCompromise: a compromised key is blocked from the requests that reuse it
        return {"revoke": ["--json", "cert", "revoke", serial, "--reason", "superseded"],
                "hold": ["--json", "cert", "hold", serial],
                "release": ["--json", "cert", "release", serial]}[op]
    if op == "credit":
        return ["--json", "account", "credit", ACCOUNT, "1", "--note", f"op{i}"]
    return ["--json", "crl"]


def test_sigkill_at_random_instants(tmp_path: Path) -> None:
    """Operations of every kind killed at random instants; after each, ca check is clean (after its repairs)
    and no acknowledged operation is missing.

    Rounds of the seven kinds: every third round runs to the end (acknowledged, and timed per kind); in the
    others each operation is killed at a random instant within its own kind's typical time on this machine,
    so the kills spread over start-up, checks, commit and files of issues and renewals alike.
    """
    rng = random.Random(20261121)
    home = home_with_quota(tmp_path, 100000)
    csrs = {f"k{i}.twca.com.tw": path for i, path in enumerate(write_csrs(tmp_path / "csrs", 12, "k"))}
    env = {**os.environ, "TWCACTL_OPERATOR": "alice", "TWCACTL_HOME": str(home.path)}
    env.pop("TWCACTL_CA_PASSPHRASE_SOURCE", None)
    exe = [sys.executable, "-m", "twcactl"]
    acknowledged: list[tuple[str, dict]] = []
    kills = dict.fromkeys(OPERATIONS, 0)
    acks = dict.fromkeys(OPERATIONS, 0)
    durations: dict[str, list[float]] = {op: [] for op in OPERATIONS}
    for i in range(210):
        op = OPERATIONS[i % len(OPERATIONS)]
        args = _sigkill_args(op, i, home, rng, csrs)
        if args is None and op == "release":
            # the holds before it were all killed: suspend one first (run to the end), so releases are
            # killed as often as the other kinds whatever the timing on a loaded machine
            hold = _sigkill_args("hold", i, home, rng, csrs)
            if hold is not None:
                done = subprocess.run(exe + hold, env=env, cwd=REPO, capture_output=True, timeout=120)
                assert done.returncode == 0, done.stderr.decode()
                acks["hold"] += 1
                acknowledged.append(("hold", json.loads(done.stdout)))
                args = _sigkill_args(op, i, home, rng, csrs)
        if args is None:
            continue
        complete = (i // len(OPERATIONS)) % 3 == 0
        timed = sorted(durations[op])
        typical = timed[len(timed) // 2] if timed else 0.6
        started = time.monotonic()
        proc = subprocess.Popen(exe + args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if not complete:
            time.sleep(rng.uniform(0.0, typical * 1.1))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills[op] += 1
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            if complete:
                durations[op].append(time.monotonic() - started)
            acks[op] += 1
            acknowledged.append((op, json.loads(out)))
        elif proc.returncode != -signal.SIGKILL:
            raise AssertionError(f"{op} failed: {proc.returncode} {out.decode()} {err.decode()}")
        doc = ca_check(home)
        assert doc["ok"], (op, doc["findings"])
        for repair in doc["repairs"]:
            assert "rebuilt" in repair or "rewrote" in repair or "temporary" in repair, repair
    print(f"SIGKILL test: killed {kills}, acknowledged {acks}")
    assert all(n >= MIN_KILLS for n in kills.values()), f"kinds killed too rarely: {kills}"
    assert all(n >= MIN_ACKS for n in acks.values()), f"kinds acknowledged too rarely: {acks}"
    _check_acknowledged(home, acknowledged)


def _check_acknowledged(home: CaHome, acknowledged: list[tuple[str, dict]]) -> None:
    """Every operation that exited 0 is in the records, whatever was killed after it."""
    state = dict(_db_rows(home, "SELECT serial, state FROM certificates"))
    renewed_from = dict(_db_rows(home, "SELECT serial, renewed_from FROM certificates"))
    crl_numbers = {n for (n,) in _db_rows(home, "SELECT number FROM crls")}
    notes = {n for (n,) in _db_rows(home, "SELECT note FROM ledger WHERE action = 'credit'")}
    for op, doc in acknowledged:
        if op == "issue":
            assert doc["certificates"][0]["serial"] in state, doc
        elif op == "renew":
            assert renewed_from[doc["certificate"]["serial"]] == doc["renewed"], doc
        elif op == "revoke":
            assert state[doc["certificate"]["serial"]] == "revoked", doc
        elif op in ("hold", "release"):
            assert doc["certificate"]["serial"] in state, doc
        elif op == "crl":
            assert doc["number"] in crl_numbers, doc
    credits = sum(1 for op, _ in acknowledged if op == "credit")
    assert len(notes - {"initial quota"}) >= credits


def _tamper(home: CaHome, sql: str, *params: object) -> None:
    db_run(home.path, sql, *params)


@pytest.mark.parametrize("tamper", ["edit", "delete-middle", "delete-newest", "reorder", "insert"])
def test_tampered_log_is_detected(tmp_path: Path, tamper: str, openssl_request: Path) -> None:
    home = home_with_quota(tmp_path, 5)
    for _ in range(2):
        assert home.run("cert", "issue", openssl_request, "--account", ACCOUNT).code == 0
    assert home.run("account", "credit", ACCOUNT, "1").code == 0
    assert home.run("log", "verify").code == 0
    last = db_rows(home.path, "SELECT MAX(seq) FROM activity_log")[0][0]
    if tamper == "edit":
        _tamper(home, "UPDATE activity_log SET details = '{}' WHERE seq = 3")
        named = 3
    elif tamper == "delete-middle":
        _tamper(home, "DELETE FROM activity_log WHERE seq = 3")
        named = 4
    elif tamper == "delete-newest":
        _tamper(home, "DELETE FROM activity_log WHERE seq = ?", last)
        named = last
    elif tamper == "reorder":
        query = "SELECT time, operator, action, account, serial, details, prev_hash, hash FROM activity_log WHERE seq = ?"
        a, b = db_rows(home.path, query, 3)[0], db_rows(home.path, query, 4)[0]
        cols = "time = ?, operator = ?, action = ?, account = ?, serial = ?, details = ?, prev_hash = ?, hash = ?"
        _tamper(home, f"UPDATE activity_log SET {cols} WHERE seq = 3", *b)
        _tamper(home, f"UPDATE activity_log SET {cols} WHERE seq = 4", *a)
        named = 3
    else:
        _tamper(home, "INSERT INTO activity_log (seq, time, operator, action, details, prev_hash, hash)"
                      " VALUES (?, '2026-01-01T00:00:00Z', 'mallory', 'cert.issue', '{}', 'x', 'y')", last + 1)
        named = last + 1
    for args in (("--json", "log", "verify"), ("--json", "ca", "check", "--no-repair")):
        result = home.run(*args)
        assert result.code == 1, (tamper, args)
        text = json.dumps(result.json()["findings"])
        assert f"entry {named}" in text, (tamper, text)


def test_ca_check_repairs_derived_files_and_reports_the_rest(tmp_path: Path, openssl_request: Path) -> None:
    home = home_with_quota(tmp_path, 5)
    serial = home.run("--json", "cert", "issue", openssl_request, "--account", ACCOUNT).json()["certificates"][0]["serial"]
    assert home.run("cert", "hold", serial).code == 0
    pem = home.path / "certs" / f"{serial}.pem"
    pem.unlink()
    (home.path / "crl" / "uca.crl").unlink()
    (home.path / "certs" / "deadbeef.pem").write_text("left over")
    (home.path / "certs" / ".x.pem.abc.tmp").write_text("partial")
    doc = ca_check(home)
    assert doc["ok"], doc
    assert len(doc["repairs"]) == 4
    assert x509.load_pem_x509_certificate(pem.read_bytes()).serial_number == int(serial, 16)
    assert x509.load_der_x509_crl((home.path / "crl" / "uca.crl").read_bytes()).get_revoked_certificate_by_serial_number(
        int(serial, 16)) is not None
    assert not (home.path / "certs" / "deadbeef.pem").exists()
    assert ca_check(home) == {**ca_check(home), "repairs": []}

    _tamper(home, "UPDATE accounts SET balance = balance + 7")
    os.chmod(home.path / "ca" / "private" / "uca.key", 0o644)
    _tamper(home, "UPDATE certificates SET state = 'valid', reason = NULL, revoked_at = NULL")
    doc = ca_check(home)
    assert not doc["ok"]
    text = " | ".join(doc["findings"])
    assert "ledger adds up" in text and "others could read" in text and "does not match the records" in text
    assert (home.path / "ca" / "private" / "uca.key").stat().st_mode & 0o777 == 0o600


def test_backup_and_restore(tmp_path: Path, openssl_request: Path) -> None:
    home = home_with_quota(tmp_path, 5, passphrase=CA_PASSPHRASE)
    serial = home.run("--json", "cert", "issue", openssl_request, "--account", ACCOUNT).json()["certificates"][0]["serial"]
    assert home.run("cert", "revoke", serial, "--reason", "keyCompromise").code == 0
    archive = tmp_path / "backup.tar.gz"
    result = home.run("--json", "ca", "backup", archive)
    assert result.code == 0, result.stderr
    assert archive.stat().st_mode & 0o777 == 0o600
    assert home.run("ca", "backup", archive).code == 5
    restored = tmp_path / "restored"
    result = invoke("--home", restored, "--json", "ca", "restore", archive, env={"TWCACTL_OPERATOR": "alice"})
    assert result.code == 0, result.stdout + result.stderr
    assert result.json()["ok"] is True
    copy = CaHome(restored, CA_PASSPHRASE)
    assert copy.run("--json", "cert", "show", serial).json()["certificate"]["status"] == "revoked"
    assert (restored / "ca" / "private").stat().st_mode & 0o777 == 0o700
    # the key revoked for keyCompromise stays blocked in the copy (issue 12); a new key is issued
    assert copy.run("cert", "issue", openssl_request, "--account", ACCOUNT).code == 1
    assert copy.run("cert", "issue", openssl_csr(tmp_path, name="fresh"), "--account", ACCOUNT).code == 0
    assert invoke("--home", restored, "ca", "restore", archive).code == 5

    evil = tmp_path / "evil.tar.gz"
    import tarfile

    with tarfile.open(evil, "w:gz") as t:
        t.add(home.path / "config.toml", arcname="twcactl.db")
        t.add(home.path / "config.toml", arcname="../escape.toml")
    assert invoke("--home", tmp_path / "r2", "ca", "restore", evil).code == 3
    assert not (tmp_path / "escape.toml").exists()


def test_secrets_never_reach_the_home_or_output(tmp_path: Path) -> None:
    ca_secret, key_secret, pfx_secret = "ca-Sekr1t-passphrase-XYZ", "key-Sekr1t-9876", "pfx-Sekr1t-5432"
    home = make_ca(tmp_path / "ca", passphrase=ca_secret)
    home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5")
    outputs = []
    r = invoke("--json", "csr", "new", "--cn", "www.twca.com.tw", "--org", "TWCA", "--country", "TW", "--state",
               "Taiwan", "--locality", "Taipei", "--key-out", tmp_path / "k.pem", "--out", tmp_path / "r.csr",
               "--key-passphrase", "env:KP", env={"KP": key_secret})
    outputs.append(r)
    r = home.run("--json", "cert", "issue", tmp_path / "r.csr", "--account", ACCOUNT)
    outputs.append(r)
    serial = r.json()["certificates"][0]["serial"]
    outputs.append(home.run("cert", "export", serial, "--out-dir", tmp_path / "b"))
    outputs.append(home.run("pfx", "export", "--cert", tmp_path / "b" / "server.cer", "--key", tmp_path / "k.pem",
                            "--key-passphrase", "env:KP", "--password", "env:PP", "--out", tmp_path / "x.pfx",
                            env={"KP": key_secret, "PP": pfx_secret}))
    outputs.append(home.run("cert", "revoke", serial, "--reason", "superseded", "--ca-passphrase", "env:WRONG",
                            env={"WRONG": "wrong-" + ca_secret}))
    outputs.append(home.run("cert", "revoke", serial, "--reason", "superseded"))
    outputs.append(home.run("ca", "backup", tmp_path / "bk.tar.gz"))
    for r in outputs:
        for secret in (ca_secret, key_secret, pfx_secret):
            assert secret not in r.stdout and secret not in r.stderr
    needles = [s.encode() for s in (ca_secret, key_secret, pfx_secret)]
    for path in [*home.path.rglob("*"), *Path(os.environ.get("TMPDIR", "/tmp")).glob("twcactl*")]:
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), path
    assert (home.path / "ca" / "private").stat().st_mode & 0o777 == 0o700


def test_ca_key_modes_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        home = make_ca(tmp_path / "ca", passphrase=None)
    finally:
        os.umask(old)
    assert (home.path / "ca" / "private").stat().st_mode & 0o777 == 0o700
    for key in (home.path / "ca" / "private").iterdir():
        assert key.stat().st_mode & 0o777 == 0o600
    os.chmod(home.path / "ca" / "private" / "uca.key", 0o640)
    home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "1")
    csr = openssl_csr(tmp_path, name="m")
    result = home.run("cert", "issue", csr, "--account", ACCOUNT)
    assert result.code == 5 and "readable by others" in result.stderr
