"""Issue 29: the resident process runs forwarded commands exactly as separate processes would.

Each test drives real processes (``python -m twcactl``) against a real resident for a fresh home and
compares with the same command run in-process (``TWCACTL_NO_RESIDENT``): exit codes, JSON, files
written relative to the caller's directory, SOURCEs read from the caller's environment, stdin and an
inherited descriptor.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import ACCOUNT, CaHome, make_ca
from twcactl import forwarder
from twcactl.platform_dirs import resident_socket_path


def twcactl(home: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            stdin: bytes | None = None, resident: bool = True, pass_fds: tuple[int, ...] = ()
            ) -> subprocess.CompletedProcess[bytes]:
    full = {**os.environ, "TWCACTL_HOME": str(home), "TWCACTL_OPERATOR": "alice", **(env or {})}
    full.pop("TWCACTL_NO_RESIDENT", None)
    if not resident:
        full["TWCACTL_NO_RESIDENT"] = "1"
    return subprocess.run([sys.executable, "-m", "twcactl", *args], env=full, cwd=cwd, input=stdin,
                          capture_output=True, timeout=120, pass_fds=pass_fds)


def commands_served(home: Path) -> int:
    proc = twcactl(home, "resident", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return int(json.loads(proc.stdout).get("commands", -1))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[CaHome]:
    """A CA home (encrypted keys) with the test account, and a resident process serving it."""
    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10").code == 0
    proc = twcactl(home.path, "resident", "start", "--idle-timeout", "120", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["running"] is True
    yield home
    twcactl(home.path, "resident", "stop")


def test_issue_through_the_resident_matches_an_in_process_run(served: CaHome, tmp_path: Path,
                                                                openssl_request: Path) -> None:
    env = {"CALLER_ONLY_PASS": served.passphrase or ""}
    args = ("cert", "issue", str(openssl_request), "--account", ACCOUNT, "--ca-passphrase", "env:CALLER_ONLY_PASS",
            "--json")
    warm = twcactl(served.path, *args, env=env)
    cold = twcactl(served.path, *args, env=env, resident=False)
    assert warm.returncode == cold.returncode == 0, (warm.stderr, cold.stderr)
    assert commands_served(served.path) == 1  # the first ran in the resident, the second did not
    warm_doc, cold_doc = json.loads(warm.stdout), json.loads(cold.stdout)
    assert warm_doc.keys() == cold_doc.keys()
    first, second = warm_doc["certificates"][0], cold_doc["certificates"][0]
    assert first.keys() == second.keys() and first["cn"] == second["cn"] and first["serial"] != second["serial"]
    listed = json.loads(twcactl(served.path, "cert", "list", "--json").stdout)
    assert {c["serial"] for c in listed["certificates"]} >= {first["serial"], second["serial"]}


def test_errors_keep_their_exit_code_and_stream(served: CaHome, tmp_path: Path) -> None:
    for args, code in ((("cert", "issue", str(tmp_path / "missing.csr"), "--account", ACCOUNT), 3),
                       (("cert", "show", "00ff"), 5), (("cert", "no-such-command",), 2)):
        warm, cold = twcactl(served.path, *args), twcactl(served.path, *args, resident=False)
        assert warm.returncode == cold.returncode == code, (args, warm.stderr)
        assert warm.stdout == cold.stdout and warm.stderr == cold.stderr
    assert commands_served(served.path) == 3


def test_files_land_in_the_callers_directory(served: CaHome, tmp_path: Path, openssl_request: Path) -> None:
    issued = twcactl(served.path, "cert", "issue", str(openssl_request), "--account", ACCOUNT, "--ca-passphrase",
                     "stdin", "--json", stdin=(served.passphrase or "").encode() + b"\n")
    assert issued.returncode == 0, issued.stderr
    serial = json.loads(issued.stdout)["certificates"][0]["serial"]
    work = tmp_path / "work"
    work.mkdir()
    exported = twcactl(served.path, "cert", "export", serial, "--out-dir", "bundle", cwd=work)
    assert exported.returncode == 0, exported.stderr
    data = (work / "bundle" / "server.cer").read_bytes()
    leaf = x509.load_pem_x509_certificate(data) if data.startswith(b"-----") else x509.load_der_x509_certificate(data)
    assert leaf.serial_number == int(serial, 16)
    assert commands_served(served.path) == 2


def test_an_inherited_descriptor_reaches_the_command(served: CaHome, openssl_request: Path) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, (served.passphrase or "").encode() + b"\n")
    os.close(write_end)
    try:
        proc = twcactl(served.path, "cert", "issue", str(openssl_request), "--account", ACCOUNT,
                       "--ca-passphrase", f"fd:{read_end}", "--json", pass_fds=(read_end,))
    finally:
        os.close(read_end)
    assert proc.returncode == 0, proc.stderr
    assert commands_served(served.path) == 1


def test_another_preloaded_library_set_runs_in_process(served: CaHome) -> None:
    proc = twcactl(served.path, "cert", "list", "--json", env={"LD_PRELOAD": ""})
    assert proc.returncode == 0, proc.stderr
    assert commands_served(served.path) == 0


def test_a_refused_request_runs_nothing(served: CaHome) -> None:
    path = resident_socket_path(served.path)
    for change in ({"version": "0.0.0"}, {"package": "/elsewhere"}, {"protocol": 99}):
        request = {"version": forwarder.__version__, "protocol": forwarder.PROTOCOL,
                   "package": forwarder.package_dir(), "argv": ["cert", "list"], "cwd": "/", "env": {},
                   "umask": 0o22, "fds": [], **change}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            forwarder.send_message(sock, request)
            answer = json.loads(sock.makefile("rb").readline())
        assert "refused" in answer and "pid" not in answer, change
    assert commands_served(served.path) == 0


def test_no_resident_means_in_process(ca_home: CaHome) -> None:
    proc = twcactl(ca_home.path, "resident", "status", "--json")
    assert json.loads(proc.stdout)["running"] is False
    assert twcactl(ca_home.path, "cert", "list", "--json").returncode == 0


def test_a_socket_directory_others_can_enter_is_not_used(served: CaHome, tmp_path: Path) -> None:
    directory = resident_socket_path(served.path).parent
    os.chmod(directory, 0o755)
    try:
        assert forwarder.private_dir_ok(directory) is False
        proc = twcactl(served.path, "cert", "list", "--json")
        assert proc.returncode == 0
    finally:
        os.chmod(directory, 0o700)
    assert commands_served(served.path) == 0


def test_global_options_name_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWCACTL_HOME", str(tmp_path / "env-home"))
    assert forwarder.parse_globals(["--home", "/x", "cert", "list"]) == (Path("/x"), "cert")
    assert forwarder.parse_globals(["--json", "--home=/y", "log"]) == (Path("/y"), "log")
    assert forwarder.parse_globals(["--lock-timeout", "3", "cert", "--home", "/z"]) == (tmp_path / "env-home", "cert")
    assert forwarder.parse_globals(["--help"]) == (tmp_path / "env-home", None)
    for command in forwarder.NOT_FORWARDED:
        assert forwarder.forward([command, "--help"]) is None


CLIENT_AS_ANOTHER_USER = r"""
import json, socket, struct, sys
request = json.dumps({"version": sys.argv[2], "protocol": int(sys.argv[3]), "package": sys.argv[4],
                      "argv": ["cert", "list"], "cwd": "/", "env": {}, "umask": 18, "fds": []}).encode()
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.connect(sys.argv[1])
    try:
        sock.sendall(struct.pack(">I", len(request)) + request)
        answer = sock.makefile("rb").readline().decode()
    except ConnectionResetError:  # closed unread: nothing was answered
        answer = ""
    print(json.dumps({"answer": answer}))
"""


def test_another_user_is_never_served(served: CaHome) -> None:
    """With the directory and the socket opened to everyone, a client of another uid still gets nothing:
    the resident checks the peer's uid (SO_PEERCRED) before it reads the request."""
    setpriv, python = "/usr/bin/setpriv", "/usr/bin/python3"
    if os.getuid() != 0 or not (os.path.exists(setpriv) and os.path.exists(python)):
        pytest.fail("this test runs as root with util-linux's setpriv and Debian's python3 (scripts/test.sh)")
    path = resident_socket_path(served.path)
    os.chmod(path.parent, 0o711)
    os.chmod(path, 0o666)
    try:
        proc = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c",
                               CLIENT_AS_ANOTHER_USER, str(path), forwarder.__version__, str(forwarder.PROTOCOL),
                               forwarder.package_dir()], capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(path, 0o600)
        os.chmod(path.parent, 0o700)
    assert proc.returncode == 0, proc.stderr  # it connected (the modes let it) ...
    assert json.loads(proc.stdout)["answer"] == ""  # ... and was sent nothing: no worker started
    assert commands_served(served.path) == 0


def test_a_node_on_postgresql_gets_its_driver_warm(pg_server: Any, tmp_path: Path, openssl_request: Path) -> None:
    """A home whose records are on PostgreSQL: the resident imports psycopg before the first command (about
    100 ms of every command's start-up otherwise), and the forwarded command's records land in the database."""
    from twcactl.cli import resident

    home = make_ca(tmp_path / "pg", "--store", pg_server.new_database(), passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    assert resident._store_modules(home.path) == resident.PG_WARM_MODULES
    assert resident._store_modules(make_ca(tmp_path / "lite", passphrase=None).path) == ()
    started = twcactl(home.path, "resident", "start", "--idle-timeout", "60", "--json")
    assert started.returncode == 0, started.stderr
    try:
        pid = json.loads(started.stdout)["pid"]
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert any("psycopg" in line.split()[-1] for line in maps.splitlines() if len(line.split()) > 5)
        issued = twcactl(home.path, "cert", "issue", str(openssl_request), "--account", ACCOUNT, "--json")
        assert issued.returncode == 0, issued.stderr
        assert commands_served(home.path) == 1
        serial = json.loads(issued.stdout)["certificates"][0]["serial"]
        shown = twcactl(home.path, "cert", "show", serial, "--json", resident=False)
        assert shown.returncode == 0 and json.loads(shown.stdout)["certificate"]["serial"] == serial
    finally:
        twcactl(home.path, "resident", "stop")
