"""Issue 17 (first half): ``cert renew-due`` for a nightly job, and notices to technical contacts by e-mail
(``cert issue --notify``, ``notify due``) through a real SMTP server (aiosmtpd) on loopback.

Everything through the CLI on real homes; files checked with OpenSSL, messages parsed with the email package."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.conftest import ACCOUNT, CaHome, db_rows, make_ca, require, sh
from tests.mail_support import MailKeeper, smtp_server
from tests.serve_support import free_port

SUBJ = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN={cn}"
CONTACT = "ops@twca.com.tw"
PFX_PASSWORD = "pfx-secret-17"
SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def home(tmp_path: Path) -> CaHome:
    """A CA home without a CA passphrase and an account of 10 certificate-years."""
    ca = make_ca(tmp_path / "ca", passphrase=None)
    assert ca.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10").code == 0
    return ca


def _ok(result: Any) -> Any:
    assert result.code == 0, result.stdout + result.stderr
    return result.json()


def _csr(directory: Path, cn: str, *, ec_key: bool = False) -> Path:
    """A CSR made by OpenSSL (RSA-2048 or EC P-256), its unencrypted key next to it (``<cn>.key``)."""
    require("openssl")
    csr, key = directory / f"{cn}.csr", directory / f"{cn}.key"
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if ec_key else ["-newkey", "rsa:2048"]
    proc = sh("openssl", "req", "-new", *newkey, "-nodes", "-subj", SUBJ.format(cn=cn), "-keyout", key, "-out", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


def _issue(home: CaHome, csr: Path, *extra: str) -> dict[str, Any]:
    return _ok(home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, *extra))["certificates"][0]  # type: ignore[no-any-return]


def _account(home: CaHome) -> dict[str, Any]:
    return _ok(home.run("--json", "account", "show", ACCOUNT))  # type: ignore[no-any-return]


def _root(home: CaHome, tmp_path: Path, serial: str) -> Path:
    out = tmp_path / f"bundle-{serial}"
    assert home.run("cert", "export", serial, "--out-dir", out).code == 0
    return out / "root.cer"


def _hook(tmp_path: Path) -> tuple[str, Path]:
    """A --exec command that appends its TWCACTL_* environment as one JSON line to a log file."""
    log = tmp_path / "hook.log"
    script = tmp_path / "hook.py"
    script.write_text("import json, os, sys\n"
                      f"with open({str(log)!r}, 'a') as fh:\n"
                      "    fh.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith('TWCACTL_')})"
                      " + '\\n')\n")
    import sys
    return f"{sys.executable} {script}", log


def _hook_runs(log: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# ------------------------------------------------------------------------------------------- renew-due


def test_two_runs_renew_once_charge_once_and_files_verify(home: CaHome, tmp_path: Path) -> None:
    www = _issue(home, _csr(tmp_path, "www.twca.com.tw"), "--days", "20")
    api = _issue(home, _csr(tmp_path, "api.twca.com.tw", ec_key=True), "--days", "25")
    later = _issue(home, _csr(tmp_path, "later.twca.com.tw"), "--days", "200")
    live = tmp_path / "live"
    command, log = _hook(tmp_path)
    before = _account(home)

    first = home.run("--json", "cert", "renew-due", "--within", "30", "--out-dir", live, "--new-key",
                     "--pfx-password", "env:PFXPW", "--exec", command, env={"PFXPW": PFX_PASSWORD})
    doc = _ok(first)
    assert {r["serial"]: r["outcome"] for r in doc["results"]} == {www["serial"]: "renewed", api["serial"]: "renewed"}
    assert doc["renewed"] == 2 and doc["failed"] == 0
    charged = _account(home)
    assert charged["balance"] == before["balance"] - 2  # one certificate-year each (ceil(20/365), ceil(25/365))

    root = _root(home, tmp_path, www["serial"])
    runs = _hook_runs(log)
    assert len(runs) == 2  # once per renewal
    for result in doc["results"]:
        directory = live / result["cn"]
        cert = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
        assert format(cert.serial_number, "x") == result["renewed_by"]
        key = serialization.load_pem_private_key((directory / "key.pem").read_bytes(), None)
        assert key.public_key().public_bytes(*SPKI) == cert.public_key().public_bytes(*SPKI)
        assert stat.S_IMODE((directory / "key.pem").stat().st_mode) == 0o600
        assert stat.S_IMODE((directory / "cert.pfx").stat().st_mode) == 0o600
        # OpenSSL verifies the certificate and the fullchain against the CA's root
        proc = sh("openssl", "verify", "-CAfile", root, "-untrusted", directory / "chain.pem", directory / "cert.pem")
        assert proc.returncode == 0, proc.stderr
        proc = sh("openssl", "verify", "-CAfile", root, "-untrusted", directory / "fullchain.pem",
                  directory / "fullchain.pem")
        assert proc.returncode == 0, proc.stderr
        pfx = pkcs12.load_pkcs12((directory / "cert.pfx").read_bytes(), PFX_PASSWORD.encode())
        assert pfx.cert is not None and pfx.cert.certificate == cert
        assert len(pfx.additional_certs) == 2  # uca and root, each once
        # the hook saw this renewal's files
        run = next(r for r in runs if r["TWCACTL_SERIAL"] == result["renewed_by"])
        assert run["TWCACTL_RENEWED"] == result["serial"]
        assert Path(run["TWCACTL_CERT"]) == (directory / "cert.pem").resolve()
        assert Path(run["TWCACTL_KEY"]) == (directory / "key.pem").resolve()
        assert Path(run["TWCACTL_FULLCHAIN"]) == (directory / "fullchain.pem").resolve()
        assert Path(run["TWCACTL_PFX"]) == (directory / "cert.pfx").resolve()
    # --new-key keeps the old key's type and size: the EC P-256 certificate stays EC P-256
    api_key = serialization.load_pem_private_key((live / "api.twca.com.tw" / "key.pem").read_bytes(), None)
    assert isinstance(api_key, ec.EllipticCurvePrivateKey) and api_key.curve.name == "secp256r1"
    www_key = serialization.load_pem_private_key((live / "www.twca.com.tw" / "key.pem").read_bytes(), None)
    assert isinstance(www_key, rsa.RSAPrivateKey) and www_key.key_size == 2048
    old_www_key = serialization.load_pem_private_key((tmp_path / "www.twca.com.tw.key").read_bytes(), None)
    assert old_www_key.public_key().public_bytes(*SPKI) != www_key.public_key().public_bytes(*SPKI)

    second = _ok(home.run("--json", "cert", "renew-due", "--within", "30", "--out-dir", live, "--new-key",
                          "--pfx-password", "env:PFXPW", "--exec", command, env={"PFXPW": PFX_PASSWORD}))
    assert second["results"] == [] and second["renewed"] == 0
    after = _account(home)
    assert after["balance"] == charged["balance"] and after["ledger"] == charged["ledger"]  # charges nothing
    assert len(_hook_runs(log)) == 2
    shown = _ok(home.run("--json", "cert", "show", later["serial"]))
    assert shown["certificate"]["status"] == "valid" and shown["renewed_by"] == []
    assert _ok(home.run("--json", "ca", "check"))["ok"] is True


def test_same_key_renewal_reads_the_key_file_and_skips_without_it(home: CaHome, tmp_path: Path) -> None:
    www = _issue(home, _csr(tmp_path, "www.twca.com.tw"), "--days", "20")
    live = tmp_path / "live"
    before = _account(home)

    skipped = _ok(home.run("--json", "cert", "renew-due", "--within", "30", "--out-dir", live))
    assert [(r["serial"], r["outcome"]) for r in skipped["results"]] == [(www["serial"], "skipped")]
    assert "key.pem" in skipped["results"][0]["why"]
    assert _account(home)["balance"] == before["balance"]

    directory = live / "www.twca.com.tw"
    directory.mkdir(parents=True)
    (directory / "key.pem").write_bytes((tmp_path / "www.twca.com.tw.key").read_bytes())
    (directory / "key.pem").chmod(0o600)
    (directory / "nginx.conf").write_text("# kept\n")
    renewed = _ok(home.run("--json", "cert", "renew-due", "--within", "30", "--out-dir", live))
    assert [r["outcome"] for r in renewed["results"]] == ["renewed"]
    old = x509.load_pem_x509_certificate(_root(home, tmp_path, www["serial"]).with_name("server.cer").read_bytes())
    new = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
    assert new.public_key().public_bytes(*SPKI) == old.public_key().public_bytes(*SPKI)  # the same key
    assert new.not_valid_after_utc > old.not_valid_after_utc
    assert (directory / "nginx.conf").read_text() == "# kept\n"  # other files carried over
    assert not [p for p in live.iterdir() if p.name.startswith(".")]  # no staging directory left
    assert _account(home)["balance"] == before["balance"] - 1


def test_a_failure_is_reported_per_certificate_and_sets_the_exit_code(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca", passphrase=None)
    assert ca.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "1").code == 0
    _issue(ca, _csr(tmp_path, "www.twca.com.tw"), "--days", "20")  # the balance is now 0: the renewal is short
    result = ca.run("--json", "cert", "renew-due", "--within", "30", "--out-dir", tmp_path / "live", "--new-key")
    assert result.code == 5, result.stderr
    doc = result.json()
    assert doc["failed"] == 1 and doc["results"][0]["outcome"] == "failed"
    assert doc["results"][0]["error"]["code"] == 5 and doc["results"][0]["error"]["kind"] == "state"
    assert not (tmp_path / "live" / "www.twca.com.tw").exists()  # nothing written for a refused renewal
    assert not (tmp_path / "live").exists() or not list((tmp_path / "live").iterdir())


def test_dry_run_changes_nothing(home: CaHome, tmp_path: Path) -> None:
    www = _issue(home, _csr(tmp_path, "www.twca.com.tw"), "--days", "20")
    before = _account(home)
    doc = _ok(home.run("--json", "cert", "renew-due", "--within", "30", "--new-key", "--dry-run"))
    assert [(r["serial"], r["outcome"]) for r in doc["results"]] == [(www["serial"], "would-renew")]
    assert _account(home) == before
    assert home.run("cert", "renew-due", "--within", "30", "--new-key").code == 2  # --out-dir needed
    assert home.run("cert", "renew-due", "--within", "30", "--account", "99999999-01", "--dry-run").code == 5


# ------------------------------------------------------------------------------------------- notices


@pytest.fixture
def smtp() -> Iterator[tuple[MailKeeper, int]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 keeping what it receives."""
    with smtp_server() as running:
        yield running


def _configure_mail(home: CaHome, port: int, host: str = "127.0.0.1") -> None:
    for key, value in (("smtp_host", host), ("smtp_port", str(port)), ("smtp_starttls", "false"),
                       ("smtp_from", "ca@twca.com.tw")):
        assert home.run("ca", "config", key, value).code == 0


def test_issue_notify_mails_the_bundle(home: CaHome, tmp_path: Path, smtp: tuple[MailKeeper, int]) -> None:
    handler, port = smtp
    _configure_mail(home, port)
    doc = _ok(home.run("--json", "cert", "issue", _csr(tmp_path, "www.twca.com.tw"), "--account", ACCOUNT,
                       "--contact", CONTACT, "--notify"))
    serial = doc["certificates"][0]["serial"]
    assert [n["outcome"] for n in doc["notices"]] == ["sent"]
    assert len(handler.messages) == 1 and handler.recipients == [[CONTACT]]
    message = handler.messages[0]
    assert message["To"] == CONTACT and serial in message["Subject"]
    attachments = [part for part in message.iter_attachments() if part.get_filename() == "cert.zip"]
    assert len(attachments) == 1
    with zipfile.ZipFile(io.BytesIO(attachments[0].get_content())) as archive:
        assert sorted(archive.namelist()) == ["root.cer", "server.cer", "uca.cer"]
        leaf = x509.load_pem_x509_certificate(archive.read("server.cer"))
    assert format(leaf.serial_number, "x") == serial


def test_issue_notify_failure_after_commit_is_reported_not_fatal(home: CaHome, tmp_path: Path) -> None:
    _configure_mail(home, free_port())  # nobody listens there
    result = home.run("--json", "cert", "issue", _csr(tmp_path, "www.twca.com.tw"), "--account", ACCOUNT,
                      "--contact", CONTACT, "--notify")
    doc = _ok(result)  # exit 0: the certificate is issued and charged
    assert doc["certificates"] and doc["notices"][0]["outcome"] == "failed"
    assert _account(home)["balance"] == 9


def test_notify_requires_contact_and_safe_settings(home: CaHome, tmp_path: Path) -> None:
    csr = _csr(tmp_path, "www.twca.com.tw")
    assert home.run("cert", "issue", csr, "--account", ACCOUNT, "--notify").code == 2  # no --contact
    assert home.run("cert", "issue", csr, "--account", ACCOUNT, "--contact", CONTACT, "--notify").code == 5  # no relay
    _configure_mail(home, 2525, host="192.0.2.1")
    assert home.run("ca", "config", "smtp_user", "ca-relay").code == 0
    assert home.run("ca", "config", "smtp_password_source", "pass:secret").code == 2  # never the password itself
    assert home.run("ca", "config", "smtp_password_source", "env:SMTP_PW").code == 0
    assert home.run("ca", "config", "smtp_starttls", "maybe").code == 2
    # a password in clear to a host that is not loopback is refused before anything is issued
    refused = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, "--contact", CONTACT, "--notify",
                       env={"SMTP_PW": "relay-secret"})
    assert refused.code == 1 and refused.json()["error"]["kind"] == "policy"
    assert "relay-secret" not in refused.stdout + refused.stderr
    assert home.run("notify", "due", env={"SMTP_PW": "relay-secret"}).code == 1
    assert _account(home)["balance"] == 10
    config = (home.path / "config.toml").read_text()
    assert "relay-secret" not in config and "smtp_starttls = false" in config


def test_notify_due_sends_once_per_certificate_and_window(store_engine: str, tmp_path: Path,
                                                          smtp: tuple[MailKeeper, int]) -> None:
    """On both store engines: the v5 ``notices`` table keeps a nightly run from repeating."""
    handler, port = smtp
    home = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10").code == 0
    soon = _issue(home, _csr(tmp_path, "www.twca.com.tw"), "--days", "20", "--contact", CONTACT)
    ssl_50 = _issue(home, _csr(tmp_path, "api.twca.com.tw"), "--days", "50", "--contact", f"API Team <{CONTACT}>")
    _issue(home, _csr(tmp_path, "far.twca.com.tw"), "--days", "90", "--contact", CONTACT)  # not in its window
    nobody = _issue(home, _csr(tmp_path, "anon.twca.com.tw"), "--days", "20")  # no contact
    _configure_mail(home, port)

    dry = _ok(home.run("--json", "notify", "due", "--dry-run"))
    assert dry["would_send"] == 2 and handler.messages == []
    first = _ok(home.run("--json", "notify", "due"))
    outcomes = {n["serial"]: (n["outcome"], n["window_days"]) for n in first["notices"]}
    assert outcomes == {soon["serial"]: ("sent", 60), ssl_50["serial"]: ("sent", 60),
                        nobody["serial"]: ("skipped", 60)}
    assert len(handler.messages) == 2
    assert sorted(r[0] for r in handler.recipients) == [CONTACT, CONTACT]
    assert {m["Subject"].split("(")[-1].rstrip(")") for m in handler.messages} == {soon["serial"], ssl_50["serial"]}

    second = _ok(home.run("--json", "notify", "due"))
    assert second["sent"] == 0 and second["already_notified"] == 2
    assert len(handler.messages) == 2  # a nightly run does not repeat
    log = _ok(home.run("--json", "log", "--action", "notice.sent"))["entries"]
    assert sorted(e["serial"] for e in log) == sorted([soon["serial"], ssl_50["serial"]])
    rows = db_rows(home.path, "SELECT serial, kind, window_days, recipient FROM notices ORDER BY serial")
    assert sorted(rows) == sorted([(soon["serial"], "reminder", 60, CONTACT), (ssl_50["serial"], "reminder", 60,
                                                                                CONTACT)])
    assert _ok(home.run("--json", "ca", "check"))["ok"] is True


def test_reminder_windows_per_profile() -> None:
    import datetime as dt

    from twcactl.rules.windows import reminder_due, reminder_window_days

    assert reminder_window_days("ssl") == 60 and reminder_window_days("ev") == 60
    assert reminder_window_days("user-sign") == 30 and reminder_window_days("user-enc") == 30
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert reminder_due("ssl", now + dt.timedelta(days=45), now)
    assert not reminder_due("user-sign", now + dt.timedelta(days=45), now)
    assert reminder_due("user-sign", now + dt.timedelta(days=29), now)
    assert not reminder_due("ssl", now - dt.timedelta(days=1), now)  # expired


def test_the_home_migrates_to_version_5_with_the_notices_table(home: CaHome) -> None:
    import sqlite3

    from twcactl.store.schema import SCHEMA_VERSION

    assert SCHEMA_VERSION >= 5
    with sqlite3.connect(home.path / "twcactl.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "notices" in tables
