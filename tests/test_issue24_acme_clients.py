"""Issue 24: more real ACME clients against ``twcactl serve`` (certbot and lego are in
tests/test_issue15_serve_clients.py), one server and CA for the module:

| client | from | EAB | what it does here |
|---|---|---|---|
| dehydrated 0.7.0 | Debian ``dehydrated`` | yes | account, http-01 order, chain, forced renewal, revoke |
| acme-client 5.4.0 | npm ``acme-client`` (a node script) | yes | account, order, chain, second order, revoke |
| uacme 1.7.4 | Debian ``uacme`` (C, libcurl-gnutls) | yes | account, http-01 order, chain, forced renewal, revoke |
| Caddy 2.6.2 | Debian ``caddy`` | yes | automatic HTTPS: account, order, chain (no renew or revoke command) |
| acme-tiny 5.0.1 | Debian ``acme-tiny`` | no | a certificate in ``--acme-eab optional`` mode (issue only) |
| certbot | pip (test extra) | yes | a ``shortlived`` certificate through ``--required-profile`` |

The http-01 answers come from a webroot this module serves on the port the server validates at (dehydrated,
acme-tiny, uacme's hook and the node script write into it); Caddy answers its own challenges on 127.0.0.2 (the server
resolves its name there).  scripts/test.sh installs every client.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import ACCOUNT, make_ca, require
from tests.serve_support import Served, TokenServer, eab, free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / ".cache" / "npm" / "node_modules"
CERTBOT = str(Path(sys.executable).parent / "certbot")
DOMAIN = "example.test"


class Webroot(TokenServer):
    """Serves ``dir/TOKEN`` at ``/.well-known/acme-challenge/TOKEN`` on ``(host, port)`` (http-01)."""

    def __init__(self, directory: Path, host: str, port: int) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(port, host)

    def body_for(self, token: str) -> bytes:
        path = self.dir / token
        return path.read_bytes() if token and path.is_file() else b""


@dataclass
class World:
    served: Served
    webroot: Webroot
    tmp: Path

    def verify(self, pem: bytes) -> x509.Certificate:
        """The leaf of a chain the client saved, checked by openssl against the test root."""
        tmp = self.tmp / f"verify-{time.monotonic_ns()}"
        tmp.mkdir()
        (tmp / "chain.pem").write_bytes(pem)
        certs = x509.load_pem_x509_certificates(pem)
        (tmp / "leaf.pem").write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
        (tmp / "untrusted.pem").write_bytes((self.served.home.path / "ca" / "uca.cer").read_bytes())
        out = subprocess.run([require("openssl"), "verify", "-CAfile", str(self.served.root), "-untrusted",
                              str(tmp / "untrusted.pem"), str(tmp / "leaf.pem")], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        return certs[0]

    def status(self, cert: x509.Certificate) -> str:
        return str(self.served.cli("cert", "show", format(cert.serial_number, "x"))["certificate"]["status"])

    def ledger(self) -> list[dict[str, Any]]:
        return list(self.served.cli("account", "show", ACCOUNT)["ledger"])


def _served(tmp: Path, *extra: str) -> Served:
    home = make_ca(tmp / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "Example Ltd", "--domain", DOMAIN, "--quota", "40").code == 0
    log = tmp / "serve.log"
    proc, port, http_port, http01_port = start_server(home, log, extra_args=extra)
    return Served(home=home, port=port, http_port=http_port, http01_port=http01_port, proc=proc, log=log)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("clients24")
    served = _served(tmp, "--acme-resolve", f"caddy.{DOMAIN}=127.0.0.2")
    webroot = Webroot(tmp / "webroot", "127.0.0.1", served.http01_port)
    try:
        yield World(served=served, webroot=webroot, tmp=tmp)
    finally:
        webroot.close()
        assert served.stop() == 0, served.log.read_text()[-2000:]
        assert "internal error" not in served.log.read_text()


def _run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 120,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


# ---------------------------------------------------------------- dehydrated (Debian, bash + curl + openssl)

def test_dehydrated_issue_renew_revoke(world: World) -> None:
    kid, hmac = eab(world.served)
    base = world.tmp / "dehydrated"
    base.mkdir()
    config = base / "config"
    config.write_text("\n".join([
        f'CA="{world.served.directory}"', f'BASEDIR="{base}"', f'WELLKNOWN="{world.webroot.dir}"',
        f'CURL_OPTS="--cacert {world.served.root}"', f'EAB_KID="{kid}"', f'EAB_HMAC_KEY="{hmac}"',
        'KEY_ALGO="prime256v1"', 'CONTACT_EMAIL="ops@example.test"', "OCSP_FETCH=no", "OCSP_MUST_STAPLE=no",
        "PRIVATE_KEY_RENEW=yes", ""]))
    dehydrated = [require("dehydrated"), "--config", str(config)]
    out = _run([*dehydrated, "--register", "--accept-terms"])
    assert out.returncode == 0, out.stdout + out.stderr
    name = f"dh.{DOMAIN}"
    out = _run([*dehydrated, "--cron", "--domain", name])
    assert out.returncode == 0, out.stdout + out.stderr
    live = base / "certs" / name
    first = world.verify((live / "fullchain.pem").read_bytes())
    assert first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [name]
    assert world.ledger()[0]["operator"] == f"acme:{kid}"
    out = _run([*dehydrated, "--cron", "--force", "--domain", name])
    assert out.returncode == 0, out.stdout + out.stderr
    second = world.verify((live / "fullchain.pem").read_bytes())
    assert second.serial_number != first.serial_number
    out = _run([*dehydrated, "--revoke", str(live / "cert.pem")])
    assert out.returncode == 0, out.stdout + out.stderr
    assert world.status(second) == "revoked" and world.status(first) == "valid"


# ---------------------------------------------------------------- acme-client (npm), a node script

def test_node_acme_client_issue_renew_revoke(world: World) -> None:
    node = require("node")
    assert (NODE_MODULES / "acme-client").is_dir(), "scripts/test.sh installs acme-client into .cache/npm"
    kid, hmac = eab(world.served)
    out = _run([node, str(ROOT / "tests" / "clients" / "acme_client_node.js")], env={
        "NODE_PATH": str(NODE_MODULES), "NODE_EXTRA_CA_CERTS": str(world.served.root),
        "ACME_DIRECTORY": world.served.directory, "EAB_KID": kid, "EAB_HMAC": hmac, "DOMAIN": f"node.{DOMAIN}",
        "WEBROOT": str(world.webroot.dir)})
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    first, second = world.verify(doc["first"].encode()), world.verify(doc["second"].encode())
    assert first.serial_number != second.serial_number
    assert first.subject.rfc4514_string() == f"CN=node.{DOMAIN}"
    assert world.status(second) == "revoked" and world.status(first) == "valid"
    operators = {e["operator"] for e in world.ledger() if e.get("serial") in
                 {format(first.serial_number, "x"), format(second.serial_number, "x")}}
    assert operators == {f"acme:{kid}"}


# ---------------------------------------------------------------- uacme (Debian, C with libcurl-gnutls)

def test_uacme_issue_renew_revoke(world: World) -> None:
    uacme = require("uacme")
    kid, hmac = eab(world.served)
    base = world.tmp / "uacme"
    base.mkdir()
    name = f"uacme.{DOMAIN}"
    # uacme has no CA option: libcurl-gnutls reads only the system bundle, so each run gets a private mount
    # namespace in which the test root is bind-mounted over that bundle (the machine's trust store is untouched)
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    wrap = [require("unshare"), "--user", "--map-root-user", "--mount", "sh", "-c",
            f'mount --bind "$0" {bundle} && exec "$@"', str(world.served.root), uacme, "--confdir", str(base / "conf"),
            "--acme-url", world.served.directory, "--type", "EC", "--no-ocsp", "--yes", "--verbose"]
    hook = ["--hook", "/usr/share/uacme/uacme.sh"]  # the package's own http-01 hook, writing into the webroot
    env = {"UACME_CHALLENGE_PATH": str(world.webroot.dir)}
    out = _run([*wrap, "--eab", f"{kid}:{hmac}", "new", f"ops@{DOMAIN}"], env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    out = _run([*wrap, *hook, "issue", name], env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    live = base / "conf" / name / "cert.pem"
    first = world.verify(live.read_bytes())
    assert first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [name]
    out = _run([*wrap, *hook, "--force", "issue", name], env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    second = world.verify(live.read_bytes())
    assert second.serial_number != first.serial_number
    out = _run([*wrap, "revoke", str(live)], env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert world.status(second) == "revoked" and world.status(first) == "valid"
    operators = {e["operator"] for e in world.ledger() if e.get("serial") in
                 {format(first.serial_number, "x"), format(second.serial_number, "x")}}
    assert operators == {f"acme:{kid}"}


# ---------------------------------------------------------------- Caddy's automatic HTTPS (Debian caddy 2.6.2)

def _sni_chain(port: int, name: str, root: Path) -> x509.Certificate:
    import ssl

    ctx = ssl.create_default_context(cafile=str(root))
    with socket.create_connection(("127.0.0.2", port), timeout=10) as sock, \
            ctx.wrap_socket(sock, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_caddy_automatic_https_obtains_a_certificate(world: World) -> None:
    caddy = require("caddy")
    kid, hmac = eab(world.served)
    base = world.tmp / "caddy"
    base.mkdir()
    name = f"caddy.{DOMAIN}"
    https_port = free_port()
    # Caddy answers http-01 itself on http_port, which is the port twcactl validates at (on 127.0.0.2,
    # where --acme-resolve sends this name); tls-alpn-01 is left out so that the test asks for http-01 only
    (base / "Caddyfile").write_text(f"""{{
    admin off
    default_bind 127.0.0.2
    http_port {world.served.http01_port}
    https_port {https_port}
    acme_ca {world.served.directory}
    acme_ca_root {world.served.root}
    acme_eab {{
        key_id {kid}
        mac_key {hmac}
    }}
    email ops@{DOMAIN}
    storage file_system {{
        root {base / "data"}
    }}
    skip_install_trust
    ocsp_stapling off
}}

{name} {{
    tls {{
        issuer acme {{
            disable_tlsalpn_challenge
        }}
    }}
    respond "served by caddy"
}}
""")
    env = dict(os.environ, HOME=str(base), XDG_DATA_HOME=str(base / "xdg-data"), XDG_CONFIG_HOME=str(base / "xdg"))
    log = base / "caddy.log"
    proc = subprocess.Popen([caddy, "run", "--config", str(base / "Caddyfile"), "--adapter", "caddyfile"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"))  # noqa: SIM115
    try:
        found: list[Path] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not found:
            assert proc.poll() is None, log.read_text()[-3000:]
            found = list((base / "data" / "certificates").rglob(f"{name}.crt")) if (base / "data").exists() else []
            time.sleep(0.5)
        assert found, log.read_text()[-3000:]
        cert = world.verify(found[0].read_bytes())
        assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName) == [name]
        assert _sni_chain(https_port, name, world.served.root).serial_number == cert.serial_number
        assert world.ledger()[0]["operator"] == f"acme:{kid}"
        assert world.status(cert) == "valid"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- certbot and the profiles extension

def test_certbot_obtains_a_shortlived_certificate(world: World) -> None:
    kid, hmac = eab(world.served)
    tmp = world.tmp / "certbot-short"
    name = f"short.{DOMAIN}"
    # certbot writes webroot/.well-known/acme-challenge/TOKEN: that directory is the module's webroot
    (tmp / "webroot" / ".well-known").mkdir(parents=True)
    (tmp / "webroot" / ".well-known" / "acme-challenge").symlink_to(world.webroot.dir)
    out = _run([CERTBOT, "certonly", "--server", world.served.directory, "--webroot", "--webroot-path",
                str(tmp / "webroot"), "--register-unsafely-without-email", "--agree-tos", "--eab-kid", kid,
                f"--eab-hmac-key={hmac}", "--required-profile", "shortlived", "-d", name, "--config-dir", str(tmp / "c"),
                "--work-dir", str(tmp / "w"), "--logs-dir", str(tmp / "l"), "--non-interactive"],
               env={"REQUESTS_CA_BUNDLE": str(world.served.root)})
    assert out.returncode == 0, out.stdout + out.stderr
    cert = world.verify((tmp / "c" / "live" / name / "fullchain.pem").read_bytes())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=7)
    for kind in (x509.CRLDistributionPoints, x509.AuthorityInformationAccess):
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(kind)
    # the profile an unknown name would get: certbot stops with the server's invalidProfile problem
    out = _run([CERTBOT, "certonly", "--server", world.served.directory, "--webroot", "--webroot-path",
                str(tmp / "webroot"), "--required-profile", "nosuch", "-d", f"other.{DOMAIN}", "--config-dir",
                str(tmp / "c"), "--work-dir", str(tmp / "w"), "--logs-dir", str(tmp / "l"), "--non-interactive"],
               env={"REQUESTS_CA_BUNDLE": str(world.served.root)})
    assert out.returncode != 0
    assert "urn:ietf:params:acme:error:invalidProfile" in (tmp / "l" / "letsencrypt.log").read_text()


# ---------------------------------------------------------------- acme-tiny: no EAB, --acme-eab optional

def test_acme_tiny_without_eab_in_optional_mode(tmp_path: Path) -> None:
    served = _served(tmp_path, "--acme-eab", "optional", "--acme-default-account", ACCOUNT)
    webroot = Webroot(tmp_path / "webroot", "127.0.0.1", served.http01_port)
    try:
        account_key = rsa.generate_private_key(65537, 2048)  # acme-tiny reads an RSA account key only
        (tmp_path / "account.key").write_bytes(account_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
        name = f"tiny.{DOMAIN}"
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(
            x509.oid.NameOID.COMMON_NAME, name)])).sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
        (tmp_path / "domain.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        out = _run([require("acme-tiny"), "--account-key", str(tmp_path / "account.key"), "--csr",
                    str(tmp_path / "domain.csr"), "--acme-dir", str(webroot.dir), "--directory-url", served.directory,
                    "--disable-check", "--contact", f"mailto:ops@{DOMAIN}"],
                   env={"SSL_CERT_FILE": str(served.root)})
        assert out.returncode == 0, out.stdout + out.stderr
        world = World(served=served, webroot=webroot, tmp=tmp_path)
        cert = world.verify(out.stdout.encode())
        assert cert.subject.rfc4514_string() == f"CN={name}"
        entry = world.ledger()[0]
        assert entry["action"] == "issue" and entry["operator"].startswith("acme:noeab-")
        accounts = served.cli("acme", "accounts")["accounts"]
        assert [a["account"] for a in accounts] == [ACCOUNT] and accounts[0]["kid"].startswith("noeab-")
        assert shutil.which("acme-tiny")
    finally:
        webroot.close()
        assert served.stop() == 0, served.log.read_text()[-2000:]
