"""Issue 15: certbot and lego against ``twcactl serve`` on loopback: EAB registration, http-01 issuance,
renewal, revocation; refusals (a name outside the agreed domains, an exhausted quota) as ACME problems."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import ACCOUNT, require
from tests.serve_support import Served, eab, serve_home

CERTBOT = str(Path(sys.executable).parent / "certbot")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = serve_home(tmp_path, quota=3)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log.read_text()[-2000:]


def _verify(served: Served, pem: Path) -> x509.Certificate:
    certs = x509.load_pem_x509_certificates(pem.read_bytes())
    chain = pem.parent / (pem.name + ".untrusted.pem")
    chain.write_bytes((served.home.path / "ca" / "uca.cer").read_bytes())
    out = subprocess.run([require("openssl"), "verify", "-CAfile", str(served.root), "-untrusted", str(chain),
                          str(pem)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return certs[0]


def _serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _balance_and_ledger(served: Served) -> tuple[int, list[dict[str, object]]]:
    doc = served.cli("account", "show", ACCOUNT)
    return doc["balance"], doc["ledger"]


def _certbot(served: Served, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, REQUESTS_CA_BUNDLE=str(served.root))
    return subprocess.run([CERTBOT, *args, "--config-dir", str(tmp / "c"), "--work-dir", str(tmp / "w"),
                           "--logs-dir", str(tmp / "l"), "--non-interactive"],
                          env=env, capture_output=True, text=True, timeout=120)


def _certonly(served: Served, tmp: Path, *names: str, kid: str | None = None,
              hmac: str | None = None) -> subprocess.CompletedProcess[str]:
    args = ["certonly", "--server", served.directory, "--standalone", "--http-01-port", str(served.http01_port),
            "--http-01-address", "127.0.0.1", "--register-unsafely-without-email", "--agree-tos"]
    if kid and hmac:
        args += ["--eab-kid", kid, f"--eab-hmac-key={hmac}"]  # =: a key may begin with "-"
    for n in names:
        args += ["-d", n]
    return _certbot(served, tmp, *args)


def test_certbot_issue_renew_revoke_and_the_books(served: Served, tmp_path: Path) -> None:
    kid, hmac = eab(served)
    cb = tmp_path / "certbot"
    out = _certonly(served, cb, "www.example.test", "example.test", kid=kid, hmac=hmac)
    assert out.returncode == 0, out.stdout + out.stderr
    live = cb / "c" / "live" / "www.example.test"
    first = _verify(served, live / "fullchain.pem")
    sans = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"www.example.test", "example.test"}
    balance, ledger = _balance_and_ledger(served)
    assert balance == 2 and ledger[0]["action"] == "issue" and ledger[0]["serial"] == _serial(first)
    assert ledger[0]["operator"] == f"acme:{kid}"

    out = _certbot(served, cb, "renew", "--force-renewal", "--no-random-sleep-on-renew")
    assert out.returncode == 0, out.stdout + out.stderr
    second = _verify(served, live / "fullchain.pem")
    assert second.serial_number != first.serial_number
    assert _balance_and_ledger(served)[0] == 1

    out = _certbot(served, cb, "revoke", "--cert-path", str(live / "cert.pem"), "--reason", "superseded",
                   "--no-delete-after-revoke", "--server", served.directory)
    assert out.returncode == 0, out.stdout + out.stderr
    assert served.cli("cert", "show", _serial(second))["certificate"]["status"] == "revoked"
    accounts = served.cli("acme", "accounts")
    assert [a["account"] for a in accounts["accounts"]] == [ACCOUNT]

    # out of the agreed domains: refused at newOrder with the rule ID; nothing charged
    before = _balance_and_ledger(served)
    out = _certonly(served, cb, "www.elsewhere.test")
    assert out.returncode != 0
    assert "cn.domain" in out.stderr
    # the problem document as the server sent it, in certbot's debug log
    assert '"type":"urn:ietf:params:acme:error:rejectedIdentifier"' in (cb / "l" / "letsencrypt.log").read_text()
    assert _balance_and_ledger(served) == before


def _lego(served: Served, path: Path, kid: str, hmac: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LEGO_CA_CERTIFICATES=str(served.root))
    cmd = [require("lego"), "--server", served.directory, "--email", "ops@example.test", "--eab", "--kid", kid,
           f"--hmac={hmac}", "--http", "--http.port", f"127.0.0.1:{served.http01_port}", "--accept-tos",
           "--path", str(path), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_lego_issue_renew_revoke_and_quota(served: Served, tmp_path: Path) -> None:
    kid, hmac = eab(served)
    path = tmp_path / "lego"
    out = _lego(served, path, kid, hmac, "--domains", "api.example.test", "run")
    assert out.returncode == 0, out.stderr
    crt = path / "certificates" / "api.example.test.crt"
    first = _verify(served, crt)
    assert first.subject.rfc4514_string() == "CN=api.example.test"
    out = _lego(served, path, kid, hmac, "--domains", "api.example.test", "renew", "--days", "9999", "--no-random-sleep")
    assert out.returncode == 0, out.stderr
    second = _verify(served, crt)
    assert second.serial_number != first.serial_number
    balance, ledger = _balance_and_ledger(served)
    assert balance == 1 and [e["action"] for e in ledger[:2]] == ["issue", "issue"]

    # the quota: one certificate-year left; the second order is refused at finalize, nothing charged
    out = _lego(served, path, kid, hmac, "--domains", "b.example.test", "run")
    assert out.returncode == 0, out.stderr
    out = _lego(served, path, kid, hmac, "--domains", "c.example.test", "run")
    assert out.returncode != 0
    assert "userActionRequired" in out.stderr and "quota" in out.stderr
    assert _balance_and_ledger(served)[0] == 0

    out = _lego(served, path, kid, hmac, "--domains", "api.example.test", "revoke", "--reason", "4")
    assert out.returncode == 0, out.stderr
    assert served.cli("cert", "show", _serial(second))["certificate"]["status"] == "revoked"
