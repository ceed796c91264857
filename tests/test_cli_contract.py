"""The contract scripts rely on: help with examples, --json documents, exit codes, stdout/stderr split."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import ACCOUNT, CaHome, invoke, require, sh
from twcactl.cli import cli

COMMANDS = [
    ("ca", "init"), ("ca", "show"), ("account", "add"), ("account", "show"), ("account", "list"),
    ("csr", "new"), ("csr", "show"), ("cert", "issue"), ("cert", "show"), ("cert", "list"), ("cert", "export"),
    ("pfx", "export"), ("pfx", "show"), ("pfx", "rekey"), ("pfx", "split"), ("chain", "build"), ("chain", "verify"),
    ("csr", "check"), ("cert", "renew"), ("cert", "revoke"), ("cert", "hold"), ("cert", "release"),
    ("account", "set"), ("account", "credit"), ("ca", "config"), ("ca", "check"), ("ca", "backup"), ("ca", "restore"),
    ("crl",), ("ocsp", "respond"), ("log",), ("log", "verify"), ("operator", "add"), ("operator", "list"),
    ("card", "readers"), ("card", "status"), ("card", "verify-pin"), ("card", "enroll"), ("card", "import-cert"),
    ("card", "renew"), ("card", "change-pin"), ("card", "unblock"), ("card", "register"),
]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example_and_json(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.code == 0
    assert "Example" in result.stdout
    assert "--json" in result.stdout
    assert f"twcactl {' '.join(path)}" in result.stdout


def test_version_is_answered_without_click() -> None:
    code = "import sys; sys.argv=['twcactl','--version']; from twcactl.__main__ import main\n" \
           "try:\n main()\nexcept SystemExit: pass\nprint('click' in sys.modules, 'cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["twcactl 0.1.0", "False False"]


def test_help_does_not_load_cryptography() -> None:
    code = "import sys; from twcactl.cli import run\ntry:\n run(['--help'])\nexcept SystemExit: pass\n" \
           "print('cryptography' in sys.modules, 'rich' in sys.modules, 'sqlite3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "False False False"


def test_usage_errors_exit_2_with_json_document() -> None:
    result = invoke("--json", "cert", "issue")
    assert result.code == 2
    doc = result.json()
    assert doc["error"]["code"] == 2 and doc["error"]["kind"] == "usage"
    result = invoke("cert", "frobnicate")
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ")


def test_no_ca_home_is_state_error(tmp_path: Path) -> None:
    result = invoke("--home", tmp_path / "nothing", "--json", "ca", "show")
    assert result.code == 5
    assert result.json()["error"]["kind"] == "state"


def test_json_flag_after_the_command(ca_home: CaHome) -> None:
    result = ca_home.run("account", "show", ACCOUNT, "--json")
    assert result.code == 0
    doc = result.json()
    assert set(doc) == {"id", "org", "org_aliases", "domains", "balance", "ledger",
                        "business_number", "jurisdiction", "business_category",  # issue 12 added the EV identity
                        "subscriptions",  # issue 16: the certificates with paid time
                        "ledger_total"}  # issue 28: account show --limit
    assert doc["domains"] == ["twca.com.tw"] and doc["balance"] == 10
    assert set(doc["ledger"][0]) == {"time", "delta", "balance", "action", "serial", "operator", "note"}
    assert doc["ledger"][0]["time"].endswith("Z")


def test_ca_init_refuses_short_passphrase_and_existing_home(tmp_path: Path, ca_home: CaHome) -> None:
    result = invoke("--home", tmp_path / "new", "ca", "init", "--ca-passphrase", "pass:short")
    assert result.code == 2
    assert not (tmp_path / "new" / "twcactl.db").exists()
    result = invoke("--home", ca_home.path, "ca", "init", "--no-passphrase")
    assert result.code == 5


def test_ca_keys_are_encrypted_and_private(ca_home: CaHome) -> None:
    private = ca_home.path / "ca" / "private"
    assert private.stat().st_mode & 0o777 == 0o700
    for key_file in private.iterdir():
        assert key_file.stat().st_mode & 0o777 == 0o600
        data = key_file.read_bytes()
        assert b"ENCRYPTED PRIVATE KEY" in data
        with pytest.raises(TypeError):
            serialization.load_pem_private_key(data, None)
        serialization.load_pem_private_key(data, ca_home.passphrase.encode())  # type: ignore[union-attr]
    show = ca_home.run("--json", "ca", "show").json()
    assert show["key_encrypted"] is True
    assert show["operators"] == [{"name": "alice", "role": "manager"}]
    assert [c["name"] for c in show["cas"]] == ["root", "uca"]


def test_auditor_or_unknown_operator_cannot_issue(ca_home: CaHome, openssl_request: Path) -> None:
    result = ca_home.run("cert", "issue", openssl_request, "--account", ACCOUNT, env={"TWCACTL_OPERATOR": "mallory"})
    assert result.code == 5
    assert "mallory" in result.stderr


def test_account_add_validates(ca_home: CaHome) -> None:
    assert ca_home.run("account", "add", "12345678-01", "--org", "X", "--domain", "x.tw").code == 2
    assert ca_home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw").code == 5
    assert ca_home.run("account", "add", "70759028-02", "--org", "TWCA", "--domain", "192.168.1.1").code == 2
    assert ca_home.run("account", "show", "70759028-09").code == 5


def test_csr_new_and_show(tmp_path: Path) -> None:
    key, csr = tmp_path / "www.key", tmp_path / "www.csr"
    result = invoke("--json", "csr", "new", "--cn", "www.twca.com.tw", "--org", "TWCA", "--ou", "SYSTEM",
                    "--locality", "Taipei", "--state", "Taiwan", "--country", "TW", "--san", "twca.com.tw",
                    "--key-out", key, "--out", csr, "--key-passphrase", "env:KP", env={"KP": "key-pass-123"})
    assert result.code == 0, result.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    parsed = x509.load_pem_x509_csr(csr.read_bytes())
    assert parsed.is_signature_valid
    assert parsed.subject.rfc4514_string() == "CN=www.twca.com.tw,OU=SYSTEM,O=TWCA,L=Taipei,ST=Taiwan,C=TW"
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.twca.com.tw", "twca.com.tw"]
    proc = sh(require("openssl"), "req", "-in", csr, "-noout", "-verify")
    assert proc.returncode == 0, proc.stderr
    proc = sh(require("openssl"), "pkey", "-in", key, "-passin", "pass:key-pass-123", "-noout")
    assert proc.returncode == 0, proc.stderr
    proc = sh(require("openssl"), "pkey", "-in", key, "-passin", "pass:wrong-pass", "-noout")
    assert proc.returncode != 0

    shown = invoke("--json", "csr", "show", csr).json()
    assert shown["signature"] == "valid"
    assert shown["key"] == {"type": "rsa", "size": 2048, "label": "RSA 2048"}
    assert [a["name"] for a in shown["subject"]] == ["C", "ST", "L", "O", "OU", "CN"]
    assert shown["sans"] == ["www.twca.com.tw", "twca.com.tw"]

    again = invoke("csr", "new", "--cn", "www.twca.com.tw", "--key-out", key, "--no-passphrase")
    assert again.code == 5, "never over an existing key without --force"


def test_csr_new_refuses_non_english_before_keygen(tmp_path: Path) -> None:
    result = invoke("csr", "new", "--cn", "www.twca.com.tw", "--org", "台灣網路認證", "--key-out", tmp_path / "k",
                    "--no-passphrase")
    assert result.code == 1  # the profile's rule subject.printable (issue 17); --force overrides it
    assert not (tmp_path / "k").exists()
    assert "\x1b" not in result.stderr


def test_results_on_stdout_progress_on_stderr(tmp_path: Path) -> None:
    # --country: since issue 17 a missing C refuses the request (exit 1); the other missing fields warn
    result = invoke("--json", "csr", "new", "--cn", "a.twca.com.tw", "--country", "TW", "--key-type", "ec-p256",
                    "--key-out", tmp_path / "k", "--no-passphrase")
    assert result.code == 0
    doc = result.json()
    assert doc["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert "Generating" in result.stderr
    quiet = invoke("--quiet", "--json", "csr", "new", "--cn", "b.twca.com.tw", "--country", "TW",
                   "--key-type", "ec-p256", "--key-out", tmp_path / "k2", "--no-passphrase")
    assert quiet.code == 0 and quiet.stderr == ""


def test_console_script_end_to_end(tmp_path: Path) -> None:
    """The installed `twcactl` executable, as a user runs it."""
    exe = Path(sys.executable).with_name("twcactl")
    assert exe.exists(), "pip install -e . provides the console script"
    proc = subprocess.run([exe, "--home", tmp_path / "h", "--json", "ca", "show"], capture_output=True, text=True)
    assert proc.returncode == 5
    assert '"kind": "state"' in proc.stdout
    assert proc.stderr == ""


def test_every_listed_command_loads() -> None:
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):  # type: ignore[attr-defined]
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name
