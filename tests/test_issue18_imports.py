"""Issue 18: start-up and per-process speed, and batch issuance.

What a command imports is asserted on module names in a fresh interpreter
(never on time): ``--version``, ``--help`` and ``cert issue --json`` load
nothing they do not use.  The batch keeps every guarantee (records, ledger,
log, files; ``ca check`` clean) and shows a progress bar on a terminal only.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.conftest import ACCOUNT, CaHome, db_rows, openssl_csr

#: Runs twcactl's console entry point with ``$ARGS`` and writes the names in sys.modules at exit to ``$MODS``.
_PROBE = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["MODS"], "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["twcactl", *json.loads(os.environ["ARGS"])]
from twcactl.__main__ import main
main()
"""

#: Modules that only some commands need (issue 18): none may load for a command that does not use it.
UI_ONLY = ("rich",)
POLICY_AND_LIFECYCLE = ("twcactl.authority.lifecycle", "twcactl.policy.checks", "twcactl.policy.toml_policy",
                        "twcactl.store")
NOT_FOR_ISSUE = ("rich", "twcactl.store.acme", "twcactl.store.notices", "twcactl.authority.token_keys",
                 "twcactl.backends.p11", "twcactl.backends.p11_uri", "twcactl.policy.toml_policy",
                 "twcactl.authority.acme", "twcactl.serve", "twcactl.authority.notify", "pkcs11", "psycopg",
                 "tempfile", "shutil")


def loaded_modules(tmp_path: Path, *args: str | os.PathLike[str], env: dict[str, str] | None = None
                   ) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    """Run ``twcactl ARGS`` in a new interpreter; its exit and the module names loaded when it ended."""
    mods = tmp_path / "modules.json"
    full_env = {**os.environ, "ARGS": json.dumps([str(a) for a in args]), "MODS": str(mods),
                "TWCACTL_OPERATOR": "alice", **(env or {})}
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=full_env, capture_output=True, timeout=120)
    return proc, set(json.loads(mods.read_text()))


def top_names(modules: set[str], wanted: tuple[str, ...]) -> list[str]:
    """The names of ``wanted`` (a package counts with its submodules) that are among ``modules``."""
    return sorted(w for w in wanted if any(m == w or m.startswith(w + ".") for m in modules))


def test_version_loads_neither_click_nor_the_core(tmp_path: Path) -> None:
    proc, mods = loaded_modules(tmp_path, "--version")
    assert proc.returncode == 0
    assert proc.stdout.decode().split() == ["twcactl", __import__("twcactl").__version__]
    assert top_names(mods, ("click", "cryptography", "sqlite3", "twcactl.cli", *UI_ONLY,
                            *POLICY_AND_LIFECYCLE)) == []
    assert "importlib.metadata" not in mods  # the version is a constant, not read from the installed metadata


def test_help_loads_no_command_module_no_core(tmp_path: Path) -> None:
    proc, mods = loaded_modules(tmp_path, "--help")
    assert proc.returncode == 0
    assert top_names(mods, ("cryptography", "sqlite3", *UI_ONLY, *POLICY_AND_LIFECYCLE,
                            "twcactl.cli.cert_cmd", "twcactl.cli.ca_cmd", "twcactl.cli.card_cmd")) == []
    assert "click" in mods  # the control: the probe did see the CLI load


def test_cert_issue_json_loads_only_what_issuing_uses(ca_home: CaHome, tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path)
    proc, mods = loaded_modules(tmp_path, "--home", ca_home.path, "cert", "issue", csr, "--account", ACCOUNT,
                                "--json", env={"TW_TEST_CA_PASS": str(ca_home.passphrase),
                                               "TWCACTL_CA_PASSPHRASE_SOURCE": "env:TW_TEST_CA_PASS"})
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["certificates"]) == 1
    assert top_names(mods, NOT_FOR_ISSUE) == []
    # the control: what issuing does use is loaded, so the probe can tell
    assert top_names(mods, ("twcactl.authority.lifecycle", "twcactl.policy.checks", "cryptography.x509")) == [
        "cryptography.x509", "twcactl.authority.lifecycle", "twcactl.policy.checks"]


def test_cert_list_json_loads_no_policy_lifecycle_or_rich(ca_home: CaHome, tmp_path: Path) -> None:
    proc, mods = loaded_modules(tmp_path, "--home", ca_home.path, "cert", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["count"] == 0
    assert top_names(mods, ("rich", "twcactl.authority.lifecycle", "twcactl.policy", "twcactl.csr")) == []


def _batch(tmp_path: Path, count: int) -> Path:
    directory = tmp_path / "batch"
    directory.mkdir()
    for i in range(count):
        openssl_csr(directory, f"/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN=host{i}.twca.com.tw", name=f"h{i}")
        (directory / f"h{i}.key").unlink()
    return directory


def _on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run ``argv`` with stderr on a pseudo-terminal (stdout a pipe); exit status, stdout, the terminal's bytes."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out = proc.stdout.read() if proc.stdout else b""
    code = proc.wait(timeout=120)
    os.close(master)
    return code, out, seen


def _cli_env(home: CaHome) -> dict[str, str]:
    return {**os.environ, "TWCACTL_OPERATOR": "alice", "TW_TEST_CA_PASS": str(home.passphrase),
            "TWCACTL_CA_PASSPHRASE_SOURCE": "env:TW_TEST_CA_PASS"}


def test_batch_shows_progress_on_a_terminal_only_and_keeps_every_guarantee(ca_home: CaHome, tmp_path: Path) -> None:
    directory = _batch(tmp_path, 3)
    argv = [sys.executable, "-m", "twcactl", "--home", str(ca_home.path), "cert", "issue", str(directory),
            "--account", ACCOUNT, "--json"]
    code, out, terminal = _on_a_terminal(argv, _cli_env(ca_home))
    assert code == 0, terminal
    doc = json.loads(out)
    assert len(doc["certificates"]) == 3 and doc["failed"] == []
    bars = re.findall(rb"(checking|signing) +\[[#.]+\] (\d+)/(\d+)", terminal)
    assert (b"signing", b"3", b"3") in bars and (b"checking", b"3", b"3") in bars

    # a pipe gets no bar (nor does --quiet on a terminal)
    piped = subprocess.run(argv, capture_output=True, env=_cli_env(ca_home), timeout=120)
    assert piped.returncode == 0 and piped.stderr == b""
    code, out, terminal = _on_a_terminal([*argv[:3], "--quiet", *argv[3:]], _cli_env(ca_home))
    assert code == 0 and terminal == b""

    # every certificate recorded, charged and logged with its record; each PEM file is its record's DER
    serials = [c["serial"] for c in doc["certificates"]]
    assert db_rows(ca_home.path, "SELECT COUNT(*) FROM certificates")[0][0] == 9
    assert doc["account"] == {"id": ACCOUNT, "balance": 7, "was": 10}  # the first of the three batches
    logged = {r[0] for r in db_rows(ca_home.path, "SELECT serial FROM activity_log WHERE action = 'cert.issue'")}
    assert set(serials) <= logged
    for serial in serials:
        der = db_rows(ca_home.path, "SELECT der FROM certificates WHERE serial = ?", serial)[0][0]
        pem = (ca_home.path / "certs" / f"{serial}.pem").read_bytes()
        assert x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM) == pem
    check = ca_home.run("ca", "check", "--json")
    assert check.code == 0, check.stdout
    assert check.json()["ok"] is True and check.json()["findings"] == []


def test_a_refused_batch_clears_its_progress_bar_before_the_error(ca_home: CaHome, tmp_path: Path) -> None:
    directory = _batch(tmp_path, 2)
    openssl_csr(directory, "/C=TW/O=TWCA/CN=www.example.org", name="z-refused")  # not the account's domain
    (directory / "z-refused.key").unlink()
    argv = [sys.executable, "-m", "twcactl", "--home", str(ca_home.path), "cert", "issue", str(directory),
            "--account", ACCOUNT]
    code, out, terminal = _on_a_terminal(argv, _cli_env(ca_home))
    assert code == 1 and out == b""
    assert re.search(rb"checking +\[[#.]+\] [123]/3", terminal)  # the bar was drawn before the refusal
    # what the terminal shows last on the error's line is the error alone: the bar was cleared first
    segments = next(line for line in terminal.split(b"\n") if b"error: " in line).split(b"\r")
    at = next(i for i, seg in enumerate(segments) if seg.startswith(b"error: "))
    bar = max(len(seg) for seg in segments if seg.startswith(b"checking"))
    assert segments[at - 1].strip() == b"" and len(segments[at - 1]) >= bar  # blanked over the whole bar first
    assert db_rows(ca_home.path, "SELECT COUNT(*) FROM certificates")[0][0] == 0


@pytest.mark.parametrize("count", [1, 2, 5])
def test_der_encoded_once_is_the_certificate_everywhere(ca_home: CaHome, tmp_path: Path, count: int) -> None:
    """The DER a batch encodes once is the record's and the PEM file's certificate, byte for byte."""
    directory = _batch(tmp_path, count)
    result = ca_home.run("cert", "issue", directory, "--account", ACCOUNT, "--json")
    assert result.code == 0, result.stderr
    for item in result.json()["certificates"]:
        pem = (ca_home.path / "certs" / f"{item['serial']}.pem").read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
        assert pem == cert.public_bytes(Encoding.PEM)
        stored = db_rows(ca_home.path, "SELECT der FROM certificates WHERE serial = ?", item["serial"])[0][0]
        assert bytes(stored) == cert.public_bytes(Encoding.DER)
