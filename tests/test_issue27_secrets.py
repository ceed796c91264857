"""Issue 27, part one: secrets stay on their node.

Two nodes share one PostgreSQL store; a manager on node A (or anyone holding A's database password) must not
make node B send any of B's secrets: the settings that name a secret SOURCE, and the relay it is sent to, are
node-local.  A ``--exec`` hook gets no variable a SOURCE named.  A notice the relay did not take is delivered
by the next ``notify due``, exactly once.  Contact addresses go through the standard library's parser; PIN
messages say only what the token's flags say.  Real PostgreSQL and real SMTP servers (aiosmtpd) on loopback.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCOUNT, CaHome, db_rows, make_ca, require, sh
from tests.serve_support import free_port
from tests.test_issue14_scale import add_node, pg_home

CONTACT = "ops@twca.com.tw"
B_SECRET = "node-b-ca-passphrase-27"
B_RELAY_SECRET = "node-b-relay-secret-27"


@dataclass
class Relay:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that records every AUTH and every message."""

    port: int
    logins: list[tuple[str, str]] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(bytes(envelope.content))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else str(auth_data.login)
        password = auth_data.password.decode() if isinstance(auth_data.password, bytes) else str(auth_data.password)
        self.logins.append((login, password))
        return AuthResult(success=True)


@contextlib.contextmanager
def relay(port: int | None = None) -> Iterator[Relay]:
    """Start a :class:`Relay` (on ``port`` or a free one) for the block."""
    from aiosmtpd.controller import Controller

    handler = Relay(port or free_port())
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port, authenticator=handler.authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def _ok(result: Any) -> Any:
    assert result.code == 0, result.stdout + result.stderr
    return result.json()


def _csr(directory: Path, cn: str) -> Path:
    require("openssl")
    csr, key = directory / f"{cn}.csr", directory / f"{cn}.key"
    proc = sh("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN={cn}",
              "-keyout", key, "-out", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


def _configure(home: CaHome, port: int, *extra: tuple[str, str], env: dict[str, str | None] | None = None) -> None:
    for key, value in (("smtp_host", "127.0.0.1"), ("smtp_port", str(port)), ("smtp_starttls", "false"),
                       ("smtp_from", "ca@twca.com.tw"), *extra):
        assert home.run("ca", "config", key, value, env=env).code == 0, key


def test_node_a_cannot_make_node_b_send_its_secrets(pg_server: Any, tmp_path: Path) -> None:
    """A manager on node A points the relay at a server of theirs and names B's CA passphrase variable as the
    SMTP password source, through ``ca config`` and by writing the shared settings row itself: node B never
    logs in anywhere with it, and keeps using its own relay with its own password."""
    import tomllib

    import psycopg

    node_a, url = pg_home(pg_server, tmp_path / "a")
    node_b = add_node(node_a, url, tmp_path / "b")
    _ok(node_a.run("--json", "cert", "issue", _csr(tmp_path, "www.twca.com.tw"), "--account", ACCOUNT,
                   "--days", "20", "--contact", CONTACT))
    b_env: dict[str, str | None] = {"B_CA_PASS": B_SECRET, "B_RELAY_PW": B_RELAY_SECRET}
    with relay() as evil, relay() as own:
        _configure(node_a, evil.port, ("smtp_user", "mallory"), ("smtp_password_source", "env:B_CA_PASS"))
        # ... and straight into the shared settings row, as anyone with the database password could
        with psycopg.connect(url) as db:
            text = db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()[0]
            shared = tomllib.loads(text)
            shared.update(smtp_host="127.0.0.1", smtp_port=evil.port, smtp_user="mallory", smtp_starttls=False,
                          smtp_password_source="env:B_CA_PASS", smtp_from="ca@twca.com.tw")
            import tomli_w

            db.execute("UPDATE meta SET value = %s WHERE key = 'settings'", (tomli_w.dumps(shared),))
        # node B has no relay of its own yet: nothing is sent at all (exit 5), nobody logs in
        seen = node_b.run("--json", "ca", "config", env=b_env).json()["settings"]
        assert seen["smtp_host"] == "" and seen["smtp_password_source"] == "" and seen["smtp_user"] == ""
        assert node_b.run("--json", "notify", "due", env=b_env).code == 5
        assert evil.logins == [] and evil.messages == []
        # node B's own relay, user and password source: B sends there, with B's relay password only
        _configure(node_b, own.port, ("smtp_user", "node-b"), ("smtp_password_source", "env:B_RELAY_PW"), env=b_env)
        done = _ok(node_b.run("--json", "notify", "due", env=b_env))
        assert done["sent"] == 1
        assert own.logins == [("node-b", B_RELAY_SECRET)] and len(own.messages) == 1
        assert evil.logins == [] and evil.messages == []
        assert all(B_SECRET not in login + password for login, password in own.logins + evil.logins)
    # node A's settings did not move to B and B's did not move to A
    assert _ok(node_a.run("--json", "ca", "config", "smtp_password_source"))["settings"]["smtp_password_source"] == "env:B_CA_PASS"
    assert _ok(node_b.run("--json", "ca", "config", "smtp_password_source"))["settings"]["smtp_password_source"] == "env:B_RELAY_PW"


def test_exec_hook_gets_no_variable_a_source_named(tmp_path: Path) -> None:
    """``cert renew-due --exec``: the CA passphrase, the PFX password and the SMTP password variables named by
    SOURCEs (on the command line, in ``$TWCACTL_CA_PASSPHRASE_SOURCE`` and in the settings) are not in the
    hook's environment; the hook's own variables and unrelated ones are."""
    home = make_ca(tmp_path / "ca")  # passphrase from $TWCACTL_CA_PASSPHRASE_SOURCE = env:TW_TEST_CA_PASS
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10").code == 0
    _ok(home.run("--json", "cert", "issue", _csr(tmp_path, "www.twca.com.tw"), "--account", ACCOUNT, "--days", "20"))
    assert home.run("ca", "config", "smtp_password_source", "env:SMTP_PW_27").code == 0
    dump = tmp_path / "hook-env.json"
    script = tmp_path / "hook.py"
    script.write_text(f"import json, os\nopen({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))\n")
    env: dict[str, str | None] = {"PFX_PW_27": "pfx-secret-27", "SMTP_PW_27": "smtp-secret-27",
                                  "INLINE_27": "pass:inline-secret-27", "UNRELATED_27": "kept"}
    result = home.run("--json", "cert", "renew-due", "--within", "30", "--new-key", "--out-dir", tmp_path / "live",
                      "--pfx-password", "env:PFX_PW_27", "--exec", f"{sys.executable} {script}", env=env)
    assert result.code == 0, result.stderr
    hook_env = json.loads(dump.read_text())
    for name in ("TW_TEST_CA_PASS", "PFX_PW_27", "SMTP_PW_27", "INLINE_27"):
        assert name not in hook_env, name
    assert not any(secret in value for value in hook_env.values()
                   for secret in (home.passphrase or "x", "pfx-secret-27", "smtp-secret-27", "inline-secret-27"))
    assert hook_env["UNRELATED_27"] == "kept" and hook_env["TWCACTL_CERT"].endswith("cert.pem")


def test_a_failed_notice_is_delivered_by_the_next_notify_due_exactly_once(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10").code == 0
    port = free_port()
    _configure(home, port)  # the relay is down: nobody listens on the port yet
    issued = _ok(home.run("--json", "cert", "issue", _csr(tmp_path, "www.twca.com.tw"), "--account", ACCOUNT,
                          "--contact", f"Ops Team <{CONTACT}>", "--notify"))
    serial = issued["certificates"][0]["serial"]
    assert [n["outcome"] for n in issued["notices"]] == ["failed"]
    assert db_rows(home.path, "SELECT serial, kind FROM notices_pending") == [(serial, "issued")]
    with relay(port) as up:
        first = _ok(home.run("--json", "notify", "due"))
        assert [(n["serial"], n["kind"], n["outcome"]) for n in first["notices"]] == [(serial, "issued", "sent")]
        assert len(up.messages) == 1 and serial.encode() in up.messages[0]
        second = _ok(home.run("--json", "notify", "due"))
        assert second["notices"] == [] and len(up.messages) == 1  # once sent, never twice
    assert db_rows(home.path, "SELECT serial, kind FROM notices_pending") == []
    assert db_rows(home.path, "SELECT serial, kind, recipient FROM notices") == [(serial, "issued", CONTACT)]
    sent = _ok(home.run("--json", "log", "--action", "notice.sent"))["entries"]
    assert [e["serial"] for e in sent] == [serial]


@pytest.mark.parametrize(("contact", "address"), [
    ("ops@twca.com.tw", "ops@twca.com.tw"),
    ("Ops Team <ops@twca.com.tw>", "ops@twca.com.tw"),
    ('"Ops, Team" <ops@twca.com.tw>', "ops@twca.com.tw"),
    ("ops@twca.com.tw, evil@example.com", None),  # two recipients
    ("ops@twca.com.tw\r\nBcc: evil@example.com", None),  # header injection
    ("ops@twca.com.tw <evil@example.com>", None),  # which one?
    ("not an address", None),
    ("ops@localhost", None),
    ("\u00e4@twca.com.tw", None),  # needs SMTPUTF8
    ("", None),
])
def test_contact_addresses_are_parsed_by_the_standard_library(contact: str, address: str | None) -> None:
    from twcactl.authority.notify import contact_address

    assert contact_address(contact) == address


def test_pin_messages_say_only_what_the_flags_say() -> None:
    from twcactl.rules.pin import PinState, pin_warnings, refused_message

    for state in (PinState(count_low=True), PinState()):
        message, _hint = refused_message(state)
        words = " ".join([message, *state.words(), *pin_warnings(state)])
        assert "few" not in words and "left before" not in words
    assert "final try" in refused_message(PinState(count_low=True, final_try=True))[0]
