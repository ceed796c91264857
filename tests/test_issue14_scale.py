"""Issue 14: the CA's records on PostgreSQL shared by several nodes, chosen at ``ca init`` or by
``store migrate``; invariants held by the database across nodes; faults (SIGKILL, a server restart).

Every test runs against the real PostgreSQL server of the session (``pg_server``).  The lifecycle,
policy-on-issue, reliability and backup tests run on both engines in their own files (``store_engine``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.card_support import PIN, SoftHsm, softhsm_directory
from tests.conftest import ACCOUNT, CaHome, db_rows, invoke, make_ca, openssl_csr, require
from tests.test_reliability import write_csrs
from twcactl.backends.p11_uri import parse_pkcs11_uri
from twcactl.rules.settings import NODE_LOCAL_KEYS

REPO = Path(__file__).resolve().parent.parent
OPERATOR = {"TWCACTL_OPERATOR": "alice"}


def pg_home(server: Any, path: Path, *extra: str, passphrase: str | None = None) -> tuple[CaHome, str]:
    """A CA (no passphrase by default) whose records are in a fresh database; account 70759028-01 with
    10,000 years."""
    url = server.new_database()
    home = make_ca(path, "--store", url, *extra, passphrase=passphrase)
    result = home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10000")
    assert result.code == 0, result.stderr
    return home, url


def add_node(first: CaHome, url: str, path: Path) -> CaHome:
    """Another node: its own home directory holding only config.toml (``store = URL``) and copies of the
    CA key files, if any: none when the CA keys are on a token (docs/scale-out.md, "Adding a node");
    it shares no file with ``first``."""
    (path / "ca" / "private").mkdir(parents=True)
    os.chmod(path, 0o700)
    os.chmod(path / "ca", 0o700)
    os.chmod(path / "ca" / "private", 0o700)
    (path / "config.toml").write_text(f'store = "{url}"\n')
    for key in (first.path / "ca" / "private").glob("*.key"):
        shutil.copyfile(key, path / "ca" / "private" / key.name)
        os.chmod(path / "ca" / "private" / key.name, 0o600)
    return CaHome(path, first.passphrase)


def ca_check(home: CaHome) -> dict[str, Any]:
    result = home.run("--json", "ca", "check")
    doc: dict[str, Any] = result.json()
    assert (result.code == 0) == doc["ok"], result.stderr
    return doc


def test_ca_init_on_postgresql_and_a_second_node(pg_server: Any, tmp_path: Path) -> None:
    home, url = pg_home(pg_server, tmp_path / "n1")
    config = tomllib.loads((home.path / "config.toml").read_text())
    assert set(config) <= NODE_LOCAL_KEYS and config["store"] == url, config
    assert not (home.path / "twcactl.db").exists()
    shown = home.run("--json", "store", "show").json()
    assert (shown["engine"], shown["url"]) == ("postgresql", url)
    # the CA's settings live in the database: a change on one node is seen by the other
    assert home.run("ca", "config", "crl_days", "3").code == 0
    node = add_node(home, url, tmp_path / "n2")
    assert node.run("--json", "ca", "config", "crl_days").json()["settings"] == {"crl_days": 3}
    assert set(tomllib.loads((home.path / "config.toml").read_text())) <= NODE_LOCAL_KEYS
    # the node wrote its CA certificates from the database (cas.der) on first open
    for stem in ("root", "uca"):
        cert = x509.load_pem_x509_certificate((node.path / "ca" / f"{stem}.cer").read_bytes())
        assert cert == x509.load_pem_x509_certificate((home.path / "ca" / f"{stem}.cer").read_bytes())
    csr = openssl_csr(tmp_path, name="www")
    issued = node.run("--json", "cert", "issue", csr, "--account", ACCOUNT)
    assert issued.code == 0, issued.stderr
    serial = issued.json()["certificates"][0]["serial"]
    assert home.run("--json", "cert", "show", serial).json()["certificate"]["status"] == "valid"
    assert home.run("--json", "cert", "revoke", serial, "--reason", "superseded").code == 0
    assert node.run("--json", "cert", "show", serial).json()["certificate"]["status"] == "revoked"
    for each in (home, node):
        doc = ca_check(each)
        assert doc["ok"], doc["findings"]
    assert (node.path / "certs" / f"{serial}.pem").is_file()  # the cache rebuilt by ca check on the other node


def test_store_choice_by_environment_and_refusals(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.new_database()
    made = invoke("--home", tmp_path / "env", "--json", "ca", "init", "--no-passphrase", "--root-key-type", "rsa2048",
                  env={**OPERATOR, "TWCACTL_STORE": url})
    assert made.code == 0, made.stderr
    assert tomllib.loads((tmp_path / "env" / "config.toml").read_text())["store"] == url
    # the same database again: it already holds a CA
    again = invoke("--home", tmp_path / "again", "--json", "ca", "init", "--no-passphrase", "--store", url, env=OPERATOR)
    assert again.code == 5 and again.json()["error"]["kind"] == "state"
    assert not (tmp_path / "again").exists()
    # a password in the URL or on the command line is refused; a config.toml holding one too
    secret = "S3kr1t-store-pw"
    with_password = url.replace("postgres@", f"postgres:{secret}@")
    bad = invoke("--home", tmp_path / "pw", "--json", "ca", "init", "--no-passphrase", "--store", with_password,
                 env=OPERATOR)
    assert bad.code == 2 and secret not in bad.stdout + bad.stderr
    argv = invoke("--home", tmp_path / "pw", "--json", "ca", "init", "--no-passphrase", "--store",
                  pg_server.new_database(), "--store-password", f"pass:{secret}", env=OPERATOR)
    assert argv.code == 2
    node = tmp_path / "bad-node"
    node.mkdir(mode=0o700)
    (node / "config.toml").write_text(f'store = "{with_password}"\n')
    opened = invoke("--home", node, "--json", "cert", "list", env=OPERATOR)
    assert opened.code == 3 and secret not in opened.stdout + opened.stderr
    # a password from a SOURCE reaches libpq and nothing else
    sourced = invoke("--home", tmp_path / "src", "--json", "ca", "init", "--no-passphrase", "--store",
                     pg_server.new_database(), "--store-password", "env:PGPW", env={**OPERATOR, "PGPW": secret})
    assert sourced.code == 0, sourced.stderr
    listed = invoke("--home", tmp_path / "src", "--store-password", "env:PGPW", "--json", "log",
                    env={**OPERATOR, "PGPW": secret})
    assert secret not in sourced.stdout + sourced.stderr + listed.stdout + listed.stderr
    for path in (tmp_path / "src").rglob("*"):
        assert not path.is_file() or secret.encode() not in path.read_bytes(), path
    assert all(secret not in json.dumps(row, default=str)
               for row in db_rows(tmp_path / "src", "SELECT key, value FROM meta"))
    assert all(secret not in str(row) for row in db_rows(tmp_path / "src", "SELECT details FROM activity_log"))


def test_store_migrate_to_postgresql_and_back(pg_server: Any, tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "9").code == 0
    serials = []
    for name in ("a", "b", "c"):
        issued = home.run("--json", "cert", "issue", openssl_csr(tmp_path, f"/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN={name}.twca.com.tw",
                                                                   name=name), "--account", ACCOUNT)
        assert issued.code == 0, issued.stderr
        serials.append(issued.json()["certificates"][0]["serial"])
    assert home.run("cert", "revoke", serials[0], "--reason", "superseded").code == 0
    assert home.run("ca", "config", "crl_days", "2").code == 0
    before = {t: db_rows(home.path, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("certificates", "ledger", "crls")}
    url = pg_server.new_database()

    # into a database that already holds records: refused, nothing switched
    busy_url = pg_server.new_database()
    make_ca(tmp_path / "other", "--store", busy_url, passphrase=None)
    refused = home.run("--json", "store", "migrate", "--to", busy_url)
    assert refused.code == 5, refused.stdout
    assert tomllib.loads((home.path / "config.toml").read_text()).get("store", "") == ""

    moved = home.run("--json", "store", "migrate", "--to", url)
    assert moved.code == 0, moved.stderr
    doc = moved.json()
    assert doc["rows"]["certificates"] == 3 and doc["accounts"] == 1 and doc["log_entries"] > 0
    config = tomllib.loads((home.path / "config.toml").read_text())
    assert config["store"] == url and "crl_days" not in config
    assert not (home.path / "twcactl.db").exists()
    assert {t: db_rows(home.path, f"SELECT COUNT(*) FROM {t}")[0][0] for t in before} == before
    assert home.run("--json", "ca", "config", "crl_days").json()["settings"]["crl_days"] == 2
    assert home.run("--json", "log", "verify").code == 0
    assert ca_check(home)["ok"]
    assert home.run("--json", "cert", "issue", openssl_csr(tmp_path, "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN=d.twca.com.tw", name="d"),
                    "--account", ACCOUNT).code == 0
    balance = home.run("--json", "account", "show", ACCOUNT).json()["balance"]

    back = home.run("--json", "store", "migrate", "--to", "sqlite")
    assert back.code == 0, back.stderr
    assert (home.path / "twcactl.db").is_file()
    assert tomllib.loads((home.path / "config.toml").read_text()).get("store", "") == ""
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == balance
    assert home.run("--json", "cert", "list").json()["count"] == 4
    assert ca_check(home)["ok"]
    # another node still pointing at the old database is refused: the records moved out of it
    stale = add_node(home, url, tmp_path / "stale")
    result = stale.run("--json", "cert", "list")
    assert result.code == 5 and result.json()["error"]["kind"] == "state"


def _crl_numbers(home: CaHome) -> list[int]:
    return [n for (n,) in db_rows(home.path, "SELECT number FROM crls WHERE ca_name = 'uca' ORDER BY id")]


def _assert_books(nodes: list[CaHome]) -> None:
    """Balances equal ledgers, CRL numbers unique and increasing, the newest CRL lists exactly the revoked
    set, the log chain verifies and ca check is clean on every node."""
    first = nodes[0]
    for balance, total in db_rows(first.path, "SELECT a.balance, SUM(l.delta) FROM accounts a JOIN ledger l"
                                              " ON l.account_id = a.id GROUP BY a.id, a.balance"):
        assert balance == total
    numbers = _crl_numbers(first)
    assert numbers == sorted(set(numbers)), "CRL numbers unique and strictly increasing"
    revoked = {s for (s,) in db_rows(first.path, "SELECT serial FROM certificates WHERE state <> 'valid'")}
    (der,) = db_rows(first.path, "SELECT der FROM crls WHERE ca_name = 'uca' ORDER BY number DESC LIMIT 1")[0]
    assert {format(e.serial_number, "x") for e in x509.load_der_x509_crl(bytes(der))} == revoked
    assert first.run("--json", "log", "verify").code == 0
    for node in nodes:
        doc = ca_check(node)
        assert doc["ok"], (node.path, doc["findings"])


@pytest.fixture(params=["hsm", "key-files"])
def ca_keys(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SoftHsm | None]:
    """Where the 4 nodes' CA keys are: on ONE SoftHSM2 token every node reaches through PKCS#11 (issue 14:
    no node holds a key file), or copies of the CA key files on each node (the weaker choice)."""
    if request.param == "key-files":
        yield None
        return
    require("softhsm2-util")
    with softhsm_directory(tmp_path / "softhsm") as hsm:  # one token directory; its SOFTHSM2_CONF for all
        yield hsm


def test_four_nodes_share_one_database(pg_server: Any, tmp_path: Path, ca_keys: SoftHsm | None) -> None:
    """4 processes, each with its own home (no shared file), one database and (``hsm``) one SoftHSM2 token:
    50 issues + revokes each."""
    if ca_keys is None:
        first, url = pg_home(pg_server, tmp_path / "node0")
    else:
        label = ca_keys.new_token(prefix="CA")
        first, url = pg_home(pg_server, tmp_path / "node0", "--key-uri", f"pkcs11:token={label}",
                             "--pkcs11-module", ca_keys.module, passphrase=PIN)
    nodes = [first] + [add_node(first, url, tmp_path / f"node{i}") for i in range(1, 4)]
    if ca_keys is not None:  # the nodes sign with the token's keys, named by URI in the database
        assert all(not list((n.path / "ca" / "private").iterdir()) for n in nodes)
        uris = [ca["key_uri"] for ca in first.run("--json", "ca", "show").json()["cas"]]
        assert len(uris) == 2 and all(parse_pkcs11_uri(u).token == label for u in uris), uris
    procs = []
    for i, node in enumerate(nodes):
        write_csrs(tmp_path / f"csr{i}", 50, f"n{i}h")
        env = {**os.environ, **OPERATOR, "PYTHONPATH": str(REPO)}
        env.pop("TWCACTL_CA_PASSPHRASE_SOURCE", None)
        if ca_keys is not None:  # the token's user PIN is the CA passphrase; SOFTHSM2_CONF is in os.environ
            env.update({"TW_TEST_CA_PASS": PIN, "TWCACTL_CA_PASSPHRASE_SOURCE": "env:TW_TEST_CA_PASS"})
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.reliability_worker", str(node.path), ACCOUNT,
                                       str(tmp_path / f"csr{i}"), str(tmp_path / f"out{i}.json")], env=env, cwd=REPO))
    for p in procs:
        assert p.wait(timeout=900) == 0
    results = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(4)]
    assert [r["failures"] for r in results] == [[], [], [], []]
    serials = [s for r in results for s in r["issued"]]
    assert len(serials) == 200 and len(set(serials)) == 200
    assert db_rows(first.path, "SELECT COUNT(*) FROM certificates WHERE state = 'revoked'")[0][0] == 200
    assert len(_crl_numbers(first)) >= 200  # one CRL per revoke, from whichever node revoked
    _assert_books(nodes)
    for node in nodes:  # each node's cache of the CRL is the newest one, after ca check
        assert x509.load_der_x509_crl((node.path / "crl" / "uca.crl").read_bytes()).get_revoked_certificate_by_serial_number(
            int(serials[-1], 16)) is not None


class _Driver:
    """One node's stream of ``cert issue`` / ``cert revoke`` commands as separate processes, some killed."""

    def __init__(self, node: CaHome, csrs: list[Path], rng: random.Random, max_kills: int) -> None:
        self.node, self.csrs, self.rng, self.max_kills = node, csrs, rng, max_kills
        self.results: list[tuple[str, int, dict[str, Any] | None]] = []  # (command, exit, JSON when 0)
        self.kills = 0
        self.done = 0

    def _run(self, args: list[str]) -> tuple[int, dict[str, Any] | None]:
        env = {**os.environ, **OPERATOR, "TWCACTL_HOME": str(self.node.path)}
        env.pop("TWCACTL_CA_PASSPHRASE_SOURCE", None)
        proc = subprocess.Popen([sys.executable, "-m", "twcactl", "--lock-timeout", "20", "--json", *args],
                                env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if self.kills < self.max_kills and self.rng.random() < 0.3:
            time.sleep(self.rng.uniform(0.1, 0.9))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                self.kills += 1
        out, _err = proc.communicate(timeout=120)
        self.done += 1
        return proc.returncode, json.loads(out) if proc.returncode == 0 else None

    def run(self) -> None:
        for csr in self.csrs:
            code, doc = self._run(["cert", "issue", str(csr), "--account", ACCOUNT])
            self.results.append(("issue", code, doc))
            if code == 0 and doc is not None:
                serial = doc["certificates"][0]["serial"]
                code, doc = self._run(["cert", "revoke", serial, "--reason", "superseded"])
                self.results.append((f"revoke {serial}", code, doc))


def test_faults_sigkill_and_a_server_restart(pg_server: Any, tmp_path: Path) -> None:
    """Three nodes issue and revoke while some of their commands are SIGKILLed at random instants (at most
    4 per node) and the PostgreSQL server is restarted mid-run: no acknowledged operation is lost, none is
    applied twice, and every command that failed (not killed) exited 75."""
    first, url = pg_home(pg_server, tmp_path / "node0")
    nodes = [first] + [add_node(first, url, tmp_path / f"node{i}") for i in range(1, 3)]
    rng = random.Random(1414)
    drivers = [_Driver(node, write_csrs(tmp_path / f"csr{i}", 10, f"f{i}h"), random.Random(rng.random()), 4)
               for i, node in enumerate(nodes)]
    threads = [threading.Thread(target=d.run) for d in drivers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 300
    while sum(d.done for d in drivers) < 12 and time.monotonic() < deadline:
        time.sleep(0.1)
    pg_server.pause()  # a restart of the database server in the middle of the run
    time.sleep(1.5)
    pg_server.resume()
    for t in threads:
        t.join(timeout=600)
    results = [r for d in drivers for r in d.results]
    codes = {code for _what, code, _doc in results}
    assert codes <= {0, 75, -signal.SIGKILL}, codes
    assert 75 in codes, "some command met the stopped server"
    assert sum(d.kills for d in drivers) >= 3
    state = dict(db_rows(first.path, "SELECT serial, state FROM certificates"))
    for what, code, doc in results:
        if code != 0 or doc is None:
            continue
        if what == "issue":
            assert doc["certificates"][0]["serial"] in state  # acknowledged: never lost
        else:
            assert state[what.split()[1]] == "revoked"
    # applied once: one charge per certificate, one revoke entry per revoked certificate
    charges = db_rows(first.path, "SELECT serial, COUNT(*) FROM ledger WHERE action = 'issue' GROUP BY serial")
    assert sorted(s for s, _n in charges) == sorted(state) and all(n == 1 for _s, n in charges)
    revokes = db_rows(first.path, "SELECT serial, COUNT(*) FROM activity_log WHERE action = 'cert.revoke'"
                                  " GROUP BY serial")
    assert all(n == 1 for _s, n in revokes)
    assert {s for s, _n in revokes} == {s for s, st in state.items() if st == "revoked"}
    _assert_books(nodes)


def test_a_stopped_server_is_exit_75_and_changes_nothing(pg_server: Any, tmp_path: Path) -> None:
    home, _url = pg_home(pg_server, tmp_path / "node")
    csr = openssl_csr(tmp_path, name="www")
    pg_server.pause()
    try:
        for args in (("cert", "list"), ("cert", "issue", csr, "--account", ACCOUNT)):
            result = home.run("--json", *args)
            assert result.code == 75, (args, result.stdout)
            assert result.json()["error"]["kind"] == "busy"
    finally:
        pg_server.resume()
    assert home.run("--json", "cert", "list").json()["count"] == 0
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 10000


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_backup_of_either_engine_restores_and_migrates(pg_server: Any, tmp_path: Path, engine: str) -> None:
    """One archive format: a backup of a PostgreSQL home restores as an SQLite home holding every setting,
    which ``store migrate`` moves into a new database."""
    if engine == "postgresql":
        home, _url = pg_home(pg_server, tmp_path / "ca")
    else:
        home = make_ca(tmp_path / "ca", passphrase=None)
        assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw",
                        "--quota", "10000").code == 0
    assert home.run("ca", "config", "crl_days", "5").code == 0
    serial = home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="w"), "--account", ACCOUNT).json()[
        "certificates"][0]["serial"]
    assert home.run("cert", "revoke", serial, "--reason", "superseded").code == 0
    assert home.run("--json", "ca", "backup", tmp_path / "b.tar.gz").code == 0
    restored = invoke("--home", tmp_path / "r", "--json", "ca", "restore", tmp_path / "b.tar.gz", env=OPERATOR)
    assert restored.code == 0 and restored.json()["ok"], restored.stdout
    copy = CaHome(tmp_path / "r", None)
    config = tomllib.loads((copy.path / "config.toml").read_text())
    assert config["crl_days"] == 5 and config.get("store", "") == ""
    assert copy.run("--json", "cert", "show", serial).json()["certificate"]["status"] == "revoked"
    assert copy.run("--json", "store", "migrate", "--to", pg_server.new_database()).code == 0
    assert copy.run("--json", "ca", "config", "crl_days").json()["settings"]["crl_days"] == 5
    assert ca_check(copy)["ok"]
