"""Shared fixtures: an in-process twcactl runner that sees exactly what users see
(the real exit-code mapping of ``twcactl.cli.run``), CA homes, and CSRs made
by the real tools (OpenSSL, Java keytool, GnuTLS certtool)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from twcactl.cli import run

CA_PASSPHRASE = "correct horse battery staple"
TWCA_SUBJ = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/OU=SYSTEM/CN=www.twca.com.tw"
ACCOUNT = "70759028-01"


@dataclass
class Result:
    """One twcactl run: exit code and the two streams as text."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as the one JSON document."""
        return json.loads(self.stdout)


def invoke(*args: str | os.PathLike[str], env: dict[str, str | None] | None = None, input: str | None = None) -> Result:
    """Run twcactl in-process through its real entry point (error mapping included)."""
    runner = CliRunner()
    base_env: dict[str, str | None] = {"TWCACTL_CA_PASSPHRASE_SOURCE": None, "TWCACTL_HOME": None,
                                       "TWCACTL_STORE": None, "TWCACTL_STORE_PASSWORD_SOURCE": None}
    base_env.update(env or {})
    with runner.isolation(input=input, env=base_env) as (out, err, _combined):
        try:
            run([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
    return Result(code, out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8", "replace"))


def require(tool: str) -> str:
    """The path of an external tool; the test fails (not skips) when CI lacks it."""
    # console scripts of test dependencies (pkilint) live next to the interpreter
    path = shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{tool} is not installed; scripts/test.sh installs it")
    return path


def sh(*cmd: str | os.PathLike[str], cwd: Path | None = None, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run an external checker; return the completed process (not checked)."""
    return subprocess.run([str(c) for c in cmd], cwd=cwd, input=input, capture_output=True, timeout=120)


@pytest.fixture
def tw() -> Callable[..., Result]:
    """The in-process runner."""
    return invoke


@dataclass
class CaHome:
    """A CA home made for a test, with its passphrase and a helper runner bound to it."""

    path: Path
    passphrase: str | None

    def run(self, *args: str | os.PathLike[str], env: dict[str, str | None] | None = None, input: str | None = None) -> Result:
        full_env: dict[str, str | None] = {"TWCACTL_OPERATOR": "alice"}
        if self.passphrase is not None:
            full_env["TW_TEST_CA_PASS"] = self.passphrase
            full_env["TWCACTL_CA_PASSPHRASE_SOURCE"] = "env:TW_TEST_CA_PASS"
        full_env.update(env or {})
        return invoke("--home", self.path, *args, env=full_env, input=input)


#: While the ``store_engine`` fixture runs with "postgresql": makes a fresh database for each new home.
_NEW_HOME_STORE: list[Callable[[], str]] = []


def make_ca(path: Path, *extra: str, passphrase: str | None = CA_PASSPHRASE, fast: bool = True) -> CaHome:
    """``ca init`` a home (RSA-2048 root when ``fast``), operator ``alice``; on PostgreSQL (the
    ``store_engine`` fixture) with ``--store URL`` of a fresh database."""
    args: list[str] = ["--home", str(path), "ca", "init", "--org", "twcactl Test", "--country", "TW"]
    if _NEW_HOME_STORE and "--store" not in extra:
        args += ["--store", _NEW_HOME_STORE[-1]()]
    if fast:
        args += ["--root-key-type", "rsa2048"]
    env: dict[str, str | None] = {"TWCACTL_OPERATOR": "alice"}
    if passphrase is None:
        args.append("--no-passphrase")
    else:
        env["TW_TEST_CA_PASS"] = passphrase
        args += ["--ca-passphrase", "env:TW_TEST_CA_PASS"]
    result = invoke(*args, *extra, env=env)
    assert result.code == 0, result.stderr
    return CaHome(path, passphrase)


@pytest.fixture
def ca_home(tmp_path: Path) -> CaHome:
    """A fresh CA home (encrypted keys) with account 70759028-01 (TWCA, twca.com.tw, 10 years)."""
    home = make_ca(tmp_path / "ca")
    result = home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10")
    assert result.code == 0, result.stderr
    return home


@pytest.fixture(scope="session")
def tool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session directory for CSRs made by external tools."""
    return tmp_path_factory.mktemp("tools")


def openssl_csr(directory: Path, subj: str = TWCA_SUBJ, name: str = "openssl") -> Path:
    """A CSR made by ``openssl req -new -newkey rsa:2048 -nodes -subj ...``; its key next to it."""
    require("openssl")
    csr, key = directory / f"{name}.csr", directory / f"{name}.key"
    proc = sh("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", key, "-out", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


@pytest.fixture(scope="session")
def openssl_request(tool_dir: Path) -> Path:
    """The issue's reference CSR, made by OpenSSL."""
    return openssl_csr(tool_dir)


@pytest.fixture(scope="session")
def keytool_request(tool_dir: Path) -> Path:
    """A CSR written by Java ``keytool -certreq`` (the NEW CERTIFICATE REQUEST header)."""
    require("keytool")
    store = tool_dir / "keytool.p12"
    dname = "CN=www.twca.com.tw, OU=SYSTEM, O=TWCA, L=Taipei, ST=Taiwan, C=TW"
    common: list[str | os.PathLike[str]] = ["-keystore", store, "-storetype", "PKCS12", "-storepass", "changeit", "-alias", "www"]
    proc = sh("keytool", "-genkeypair", *common, "-keyalg", "RSA", "-keysize", "2048", "-dname", dname, "-validity", "30")
    assert proc.returncode == 0, proc.stderr
    csr = tool_dir / "keytool.csr"
    proc = sh("keytool", "-certreq", *common, "-file", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


@pytest.fixture(scope="session")
def certtool_request(tool_dir: Path) -> Path:
    """A CSR written by GnuTLS ``certtool --generate-request`` (a text dump before the PEM block)."""
    require("certtool")
    key, template, csr = tool_dir / "certtool.key", tool_dir / "certtool.tmpl", tool_dir / "certtool.csr"
    template.write_text('cn = "www.twca.com.tw"\norganization = "TWCA"\nunit = "SYSTEM"\nlocality = "Taipei"\n'
                        'state = "Taiwan"\ncountry = TW\ndns_name = "www.twca.com.tw"\n')
    proc = sh("certtool", "--generate-privkey", "--key-type", "rsa", "--bits", "2048", "--outfile", key)
    assert proc.returncode == 0, proc.stderr
    proc = sh("certtool", "--generate-request", "--load-privkey", key, "--template", template, "--outfile", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No twcactl variables leak in from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("TWCACTL_"):
            monkeypatch.delenv(name)
    yield


def issued_bundle(base: Path, *init_args: str) -> tuple[CaHome, Path, str]:
    """A CA home (no passphrase; ``init_args`` for ``ca init``) with account 70759028-01, one certificate
    for www.twca.com.tw issued from an OpenSSL CSR and exported to ``base/bundle``.

    Returns:
        ``(home, bundle directory, serial)``.
    """
    home = make_ca(base / "ca", *init_args, passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    result = home.run("--json", "cert", "issue", openssl_csr(base, name="www"), "--account", ACCOUNT)
    assert result.code == 0, result.stderr
    serial = result.json()["certificates"][0]["serial"]
    assert home.run("cert", "export", serial, "--out-dir", base / "bundle").code == 0
    return home, base / "bundle", serial


@pytest.fixture(params=["sqlite", "postgresql"])
def store_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test on both store engines (issue 14): with "postgresql" every home ``make_ca`` creates keeps
    its records in a fresh database of the session's PostgreSQL server (``ca init --store URL``)."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    server = request.getfixturevalue("pg_server")
    _NEW_HOME_STORE.append(server.new_database)
    try:
        yield "postgresql"
    finally:
        _NEW_HOME_STORE.remove(server.new_database)


def _open_records(home: Path) -> Any:
    from twcactl.store import Store

    return Store.open(home, strict=False)


def db_rows(home: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (qmark style) on the home's database, whichever engine holds it, as tuples."""
    store = _open_records(home)
    try:
        return [tuple(row[k] for k in row.keys()) for row in store.engine.db.all(sql, params)]
    finally:
        store.close()


def db_run(home: Path, sql: str, *params: object) -> None:
    """Change the home's database behind twcactl's back (tampering tests), whichever engine holds it."""
    store = _open_records(home)
    try:
        with store.transaction():
            store.engine.db.run(sql, params)
    finally:
        store.close()


@contextlib.contextmanager
def hold_write_lock(home: Path) -> Iterator[None]:
    """Hold the home's write lock from another connection: SQLite's ``BEGIN IMMEDIATE``, or on PostgreSQL
    the advisory lock every writer takes (another node in the middle of a write)."""
    from twcactl.store import store_url

    url = store_url(home)
    if not url:
        blocker = sqlite3.connect(home / "twcactl.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    import psycopg

    from twcactl.store.postgres import WRITE_LOCK_KEY

    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
        yield


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A real PostgreSQL server for the session (tests/pg_support.py); the test fails when it cannot start."""
    from tests import pg_support

    why = pg_support.available()
    if why is not None:
        pytest.fail(f"{why}; scripts/test.sh installs it")
    server = pg_support.PgServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A SoftHSM2 directory for the test module (tests/card_support.py); a module may define its own ``hsm``."""
    from tests.card_support import softhsm_directory

    require("softhsm2-util")
    with softhsm_directory(tmp_path_factory.mktemp("softhsm")) as h:
        yield h
