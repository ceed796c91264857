"""Issue 28, contacts for every certificate: ``card enroll --contact`` on a real SoftHSM2 token, a personal
certificate's e-mail SAN as its default contact, ``cert set-contact`` (logged), and their renewal reminders
(30 days for personal and card certificates, 60 for server ones) through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.card_support import PIN, SoftHsm
from tests.conftest import ACCOUNT, CaHome, make_ca, require, sh
from tests.mail_support import MailKeeper, smtp_server

HOLDER_MAIL = "yiru@twca.com.tw"
CARD_MAIL = "card.holder@twca.com.tw"
OPS = "ops@twca.com.tw"


@pytest.fixture
def smtp() -> Iterator[tuple[MailKeeper, int]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 keeping what it receives."""
    with smtp_server() as running:
        yield running


def _ok(result: Any) -> Any:
    assert result.code == 0, result.stdout + result.stderr
    return result.json()


def _national_id(stem: str) -> str:
    """A national ID starting with the 9 characters ``stem``, with the check digit that makes it valid."""
    from twcactl.rules.identifiers import national_id_problem

    return next(stem + d for d in "0123456789" if national_id_problem(stem + d) is None)


def _personal_csr(directory: Path, cn: str, mail: str | None) -> Path:
    csr = directory / f"{cn}.csr"
    extra = ["-addext", f"subjectAltName=email:{mail}"] if mail else []
    proc = sh(require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-subj", f"/C=TW/O=TWCA/CN={cn}", *extra, "-keyout", directory / f"{cn}.key", "-out", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


def _server_csr(directory: Path, cn: str) -> Path:
    csr = directory / f"{cn}.csr"
    proc = sh(require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-subj", f"/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN={cn}", "-keyout", directory / f"{cn}.key", "-out", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


def test_card_and_personal_certificates_get_their_reminders(tmp_path: Path, hsm: SoftHsm,
                                                            smtp: tuple[MailKeeper, int]) -> None:
    handler, port = smtp
    home: CaHome = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "20").code == 0

    # a card enrolled with --contact, ending in 20 days (inside the 30-day window of personal profiles)
    token = hsm.new_token()
    enrolled = _ok(home.run("card", "enroll", "--token", token, "--pin", f"pass:{PIN}", "--account", ACCOUNT,
                            "--cn", "A123456789-01-YIRU", "--org", "TWCA", "--country", "TW", "--days", "20",
                            "--contact", CARD_MAIL, "--json", env=hsm.env()))
    card_serials = [k["certificate"]["serial"] for k in enrolled["keys"]]
    assert card_serials
    assert all(_ok(home.run("--json", "cert", "show", s))["contact"] == CARD_MAIL for s in card_serials)
    assert home.run("card", "enroll", "--token", token, "--pin", f"pass:{PIN}", "--account", ACCOUNT, "--cn",
                    "A123456789-01-YIRU", "--contact", "not an address", env=hsm.env()).code == 2

    # a personal certificate with no --contact: its e-mail SAN is the contact
    personal = _ok(home.run("--json", "cert", "issue", _personal_csr(tmp_path, f"{_national_id('B22345678')}-01-MEI", HOLDER_MAIL),
                            "--account", ACCOUNT, "--profile", "user-sign", "--days", "25"))["certificates"][0]
    # one that ends in 45 days: outside the 30-day window of personal certificates
    later = _ok(home.run("--json", "cert", "issue", _personal_csr(tmp_path, f"{_national_id('C12345678')}-01-LIN", "lin@twca.com.tw"),
                         "--account", ACCOUNT, "--profile", "user-sign", "--days", "45"))["certificates"][0]
    # a personal certificate without any address, given one afterwards with cert set-contact (by a short prefix)
    bare = _ok(home.run("--json", "cert", "issue", _personal_csr(tmp_path, f"{_national_id('D12345678')}-01-WU", None),
                        "--account", ACCOUNT, "--profile", "user-sign", "--days", "10"))["certificates"][0]
    changed = _ok(home.run("--json", "cert", "set-contact", bare["serial"][:10], f"Wu <{OPS}>"))
    assert changed["contact"] == f"Wu <{OPS}>" and changed["was"] is None
    logged = _ok(home.run("--json", "log", "--action", "cert.contact"))["entries"]
    assert [(e["serial"], e["details"]) for e in logged] == [(bare["serial"], {"old": None, "new": f"Wu <{OPS}>"})]
    assert home.run("--json", "cert", "set-contact", bare["serial"], "nobody").code == 2
    refused = home.run("--json", "cert", "set-contact", bare["serial"], OPS, env={"TWCACTL_OPERATOR": "mallory"})
    assert refused.code == 5  # only a manager redirects a certificate's notices
    # and a server certificate ending in 50 days: inside its 60-day window
    server = _ok(home.run("--json", "cert", "issue", _server_csr(tmp_path, "www.twca.com.tw"), "--account", ACCOUNT,
                          "--days", "50", "--contact", OPS))["certificates"][0]

    for key, value in (("smtp_host", "127.0.0.1"), ("smtp_port", str(port)), ("smtp_starttls", "false"),
                       ("smtp_from", "ca@twca.com.tw")):
        assert home.run("ca", "config", key, value).code == 0
    sent = _ok(home.run("--json", "notify", "due"))
    outcomes = {n["serial"]: (n["outcome"], n["window_days"], n["recipient"]) for n in sent["notices"]}
    expected = {s: ("sent", 30, CARD_MAIL) for s in card_serials}
    expected.update({personal["serial"]: ("sent", 30, HOLDER_MAIL), bare["serial"]: ("sent", 30, OPS),
                     server["serial"]: ("sent", 60, OPS)})
    assert outcomes == expected
    assert later["serial"] not in outcomes
    received = {m["Subject"].split("(")[-1].rstrip(")"): m["To"] for m in handler.messages}
    assert received == {serial: to for serial, (_o, _w, to) in expected.items()}
    again = _ok(home.run("--json", "notify", "due"))
    assert again["sent"] == 0 and len(handler.messages) == len(expected)  # once per window


def test_issue_notice_of_a_personal_certificate_goes_to_its_email_san(tmp_path: Path,
                                                                     smtp: tuple[MailKeeper, int]) -> None:
    import io
    import zipfile

    handler, port = smtp
    home: CaHome = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    for key, value in (("smtp_host", "127.0.0.1"), ("smtp_port", str(port)), ("smtp_starttls", "false"),
                       ("smtp_from", "ca@twca.com.tw")):
        assert home.run("ca", "config", key, value).code == 0
    csr = _personal_csr(tmp_path, "A123456789-02-YIRU", HOLDER_MAIL)
    doc = _ok(home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, "--profile", "user-sign", "--notify"))
    assert [(n["outcome"], n["recipient"]) for n in doc["notices"]] == [("sent", HOLDER_MAIL)]
    (message,) = handler.messages
    assert message["To"] == HOLDER_MAIL
    (bundle,) = [p for p in message.iter_attachments() if p.get_filename() == "cert.zip"]
    with zipfile.ZipFile(io.BytesIO(bundle.get_content())) as archive:
        assert sorted(archive.namelist()) == ["root.cer", "sign.cer", "uca.cer"]  # named by its profile
    # a server certificate still needs --contact for --notify
    server = _server_csr(tmp_path, "www.twca.com.tw")
    assert home.run("cert", "issue", server, "--account", ACCOUNT, "--notify").code == 2
