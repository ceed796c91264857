"""Issue 28, "Nodes by environment": a node made from environment variables alone, over a real PostgreSQL
server whose role logs in with a password (scram-sha-256), and the exit codes of the three ways connecting
fails: a refused login (4), a malformed URL (2), a server that cannot be reached (75).

Each node command is a real process (``python -m twcactl``) with no ``--home`` and no files made by hand:
``TWCACTL_HOME`` (an absent directory), ``TWCACTL_STORE``, ``TWCACTL_STORE_PASSWORD_SOURCE``,
``TWCACTL_CA_KEY_DIR`` and the CA passphrase SOURCE are all it gets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCOUNT, invoke, openssl_csr

ROLE, ROLE_PASSWORD = "twca_node", "Node-password-28"
CA_PASS = "node passphrase 28"


def _sql(server: Any, statement: str) -> Any:
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchone() if cur.description else None


@pytest.fixture(scope="module")
def pw_server(pg_server: Any) -> Any:
    """The session's server with one more role that must log in with a password (pg_hba: scram-sha-256 for it
    alone, so the other tests' trust logins are unchanged)."""
    import time

    if _sql(pg_server, f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'") is None:
        _sql(pg_server, f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{ROLE_PASSWORD}'")
        hba = Path(_sql(pg_server, "SHOW hba_file")[0])
        hba.write_text(f"local all {ROLE} scram-sha-256\n" + hba.read_text())
        _sql(pg_server, "SELECT pg_reload_conf()")
        time.sleep(0.5)
    return pg_server


def _database(server: Any) -> str:
    """A new empty database owned by the password role; its URL for that role."""
    url = server.new_database()
    name = url.split("?")[0].rsplit("/", 1)[1]
    _sql(server, f'ALTER DATABASE "{name}" OWNER TO {ROLE}')
    _sql(server, f'GRANT ALL ON SCHEMA public TO {ROLE}')
    return f"postgresql://{ROLE}@/{name}?host={server.directory}&port={server.port}"


def node(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``twcactl ARGS`` as a process that has only the environment: no --home, no config file."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TWCACTL_", "PG"))}
    base.update({"TWCACTL_HOME": str(home), "TWCACTL_OPERATOR": "alice", "PGPASSFILE": "/nonexistent",
                 "NODE_PG_PASS": ROLE_PASSWORD, "NODE_CA_PASS": CA_PASS,
                 "TWCACTL_STORE_PASSWORD_SOURCE": "env:NODE_PG_PASS",
                 "TWCACTL_CA_PASSPHRASE_SOURCE": "env:NODE_CA_PASS"})
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "twcactl", *args], env=base, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def shared_ca(pw_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA made on the password role's database by a first node (key files, encrypted), with an account."""
    base = tmp_path_factory.mktemp("issue28-nodes")
    url = _database(pw_server)
    env = {"TWCACTL_OPERATOR": "alice", "PGPASSFILE": "/nonexistent", "NODE_PG_PASS": ROLE_PASSWORD,
           "NODE_CA_PASS": CA_PASS}
    made = invoke("--home", base / "first", "ca", "init", "--org", "TWCA", "--country", "TW",
                  "--root-key-type", "rsa2048", "--store", url, "--store-password", "env:NODE_PG_PASS",
                  "--ca-passphrase", "env:NODE_CA_PASS", env=env)  # type: ignore[arg-type]
    assert made.code == 0, made.stderr
    added = invoke("--home", base / "first", "--store-password", "env:NODE_PG_PASS", "account", "add", ACCOUNT,
                   "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5", env=env)  # type: ignore[arg-type]
    assert added.code == 0, added.stderr
    return {"base": base, "url": url, "keys": base / "first" / "ca" / "private", "first": base / "first"}


def test_a_node_from_the_environment_lists_issues_and_revokes(shared_ca: dict[str, Any]) -> None:
    base: Path = shared_ca["base"]
    home = base / "containers" / "node2"  # absent, its parent too
    env = {"TWCACTL_STORE": shared_ca["url"], "TWCACTL_CA_KEY_DIR": str(shared_ca["keys"])}
    listed = node(home, "--json", "cert", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["count"] == 0
    assert (home / "config.toml").read_text().strip() == f'store = "{shared_ca["url"]}"'  # no password in it
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in (home / "ca").glob("*.cer"))  # the CA certificates, from the database

    csr = openssl_csr(base)
    issued = node(home, "--json", "cert", "issue", str(csr), "--account", ACCOUNT, env=env)
    assert issued.returncode == 0, issued.stderr
    serial = json.loads(issued.stdout)["certificates"][0]["serial"]
    revoked = node(home, "--json", "cert", "revoke", serial, "--reason", "superseded", env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["certificate"]["status"] == "revoked"

    # the first node sees what the new one did: one CA, one database
    seen = invoke("--home", shared_ca["first"], "--store-password", "env:P", "--json", "cert", "show", serial,
                  env={"P": ROLE_PASSWORD, "PGPASSFILE": "/nonexistent"})
    assert seen.code == 0 and seen.json()["certificate"]["status"] == "revoked"


def test_a_node_without_key_files_reads_but_cannot_sign(shared_ca: dict[str, Any]) -> None:
    home = shared_ca["base"] / "reader"
    env = {"TWCACTL_STORE": shared_ca["url"]}
    assert node(home, "--json", "account", "show", ACCOUNT, env=env).returncode == 0
    refused = node(home, "--json", "cert", "issue", str(openssl_csr(shared_ca["base"], name="r")), "--account",
                   ACCOUNT, env=env)
    assert refused.returncode == 5 and "key" in json.loads(refused.stdout)["error"]["message"]


def test_login_failures_exit_4_and_leave_no_home(shared_ca: dict[str, Any]) -> None:
    for name, extra in (("wrong", {"NODE_PG_PASS": "not-the-password"}),
                        ("missing", {"TWCACTL_STORE_PASSWORD_SOURCE": ""})):
        home = shared_ca["base"] / f"auth-{name}"
        result = node(home, "--json", "cert", "list", env={"TWCACTL_STORE": shared_ca["url"], **extra})
        assert result.returncode == 4, (name, result.stdout, result.stderr)
        error = json.loads(result.stdout)["error"]
        assert error["kind"] == "auth" and ROLE_PASSWORD not in result.stdout + result.stderr
        assert not home.exists()  # nothing is made of a home that could not join


def test_malformed_store_urls_exit_2(shared_ca: dict[str, Any], pw_server: Any) -> None:
    server_dir = pw_server.directory
    for url in (f"postgresql://{ROLE}@/db?host={server_dir}&port=notaport",  # libpq cannot parse the port
                f"postgresql://{ROLE}@/db?host={server_dir}&bogus=1",       # an unknown parameter
                "postgresql://twca@db.example.tw/twca?password=x",           # a password in the URL
                "mysql://twca@db/twca"):                                     # not PostgreSQL
        home = shared_ca["base"] / "malformed"
        result = node(home, "--json", "cert", "list", env={"TWCACTL_STORE": url})
        assert result.returncode == 2, (url, result.stdout, result.stderr)
        assert json.loads(result.stdout)["error"]["kind"] == "usage"
        assert not home.exists()
    init = invoke("--home", shared_ca["base"] / "init-bad", "ca", "init", "--no-passphrase",
                  "--store", f"postgresql://{ROLE}@/x?host={server_dir}&port=notaport")
    assert init.code == 2, init.stderr


def test_an_unreachable_server_exits_75(shared_ca: dict[str, Any], pw_server: Any) -> None:
    url = re.sub(r"port=\d+", "port=1", shared_ca["url"])  # no server on that socket
    home = shared_ca["base"] / "unreachable"
    result = node(home, "--json", "cert", "list", env={"TWCACTL_STORE": url})
    assert result.returncode == 75, result.stderr
    assert json.loads(result.stdout)["error"]["kind"] == "busy"
    assert not home.exists()


def test_restore_with_twcactl_store_goes_into_that_database(shared_ca: dict[str, Any], pw_server: Any) -> None:
    base: Path = shared_ca["base"]
    backup = base / "backup.tar.gz"
    made = invoke("--home", shared_ca["first"], "--store-password", "env:P", "ca", "backup", backup,
                  env={"P": ROLE_PASSWORD, "PGPASSFILE": "/nonexistent"})
    assert made.code == 0, made.stderr
    before = invoke("--home", shared_ca["first"], "--store-password", "env:P", "--json", "cert", "list",
                    env={"P": ROLE_PASSWORD, "PGPASSFILE": "/nonexistent"}).json()["certificates"]
    target = _database(pw_server)
    restored = node(base / "restored", "--json", "ca", "restore", str(backup), env={"TWCACTL_STORE": target})
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["store"]["target"].startswith("postgresql://")
    # a fresh node of the target database sees the restored records
    after = node(base / "after-restore", "--json", "cert", "list", env={"TWCACTL_STORE": target})
    assert after.returncode == 0, after.stderr
    assert {c["serial"] for c in json.loads(after.stdout)["certificates"]} == {c["serial"] for c in before}


_SQL = re.compile(r"""["'](?:SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE|ALTER TABLE|DROP TABLE)\b""")


def test_all_sql_lives_in_store() -> None:
    """architecture.md: "All SQL lives in store/" -- no SQL string literal in any other module."""
    package = Path(__file__).resolve().parent.parent / "twcactl"
    offenders = [f"{path.relative_to(package)}:{n}" for path in sorted(package.rglob("*.py"))
                 if path.relative_to(package).parts[0] != "store"
                 for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if _SQL.search(line)]
    assert offenders == []
    assert _SQL.search('row = engine.db.one(f"SELECT COUNT(*) AS n FROM {table}")')  # the one that moved


def test_an_empty_home_of_another_user_is_not_taken(tmp_path: Path) -> None:
    import pwd

    home = tmp_path / "theirs"
    home.mkdir(mode=0o755)
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    result = node(home, "--json", "cert", "list", env={"TWCACTL_STORE": "postgresql://twca@127.0.0.1:1/twca"})
    assert result.returncode == 5, result.stdout + result.stderr
    assert "owned by uid" in json.loads(result.stdout)["error"]["message"]
    assert list(home.iterdir()) == [] and home.stat().st_uid == nobody.pw_uid


def test_doctor_checks_the_database_a_node_would_join(shared_ca: dict[str, Any]) -> None:
    home = shared_ca["base"] / "doctor-node"
    env = {"TWCACTL_STORE": shared_ca["url"]}
    ok = node(home, "--json", "doctor", env=env)
    store = {c["name"]: c for c in json.loads(ok.stdout)["checks"] if c["area"] == "home"}["store"]
    assert ok.returncode == 0 and store["status"] == "ok" and "will join" in store["detail"]
    assert not home.exists()  # doctor made nothing
    refused = node(home, "--json", "doctor", env={**env, "NODE_PG_PASS": "wrong"})
    store = {c["name"]: c for c in json.loads(refused.stdout)["checks"] if c["area"] == "home"}["store"]
    assert refused.returncode == 1 and store["status"] == "fail" and "refused the login" in store["detail"]
