"""Issue 28, ``twcactl trust``: the CA's root in an NSS database (certutil), a Java keystore (keytool) and the
Debian system store (update-ca-certificates), each read back with its own tool.

The system store: the test never changes the machine's own store.  ``trust install --system --root DIR``
builds the Debian store under the test's directory DIR (DIR/usr/local/share/ca-certificates,
DIR/etc/ssl/certs with its ca-certificates.crt).  curl and Python then run in a private mount namespace
(``unshare -m``, as a container would) where DIR/etc/ssl/certs is bind-mounted over /etc/ssl/certs: they
use their default trust (no --cacert, no SSL_CERT_FILE) and must trust the server certificate the CA
issued; outside that namespace (the machine's own store) the same connection is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCOUNT, CaHome, invoke, make_ca, openssl_csr, require
from tests.serve_support import free_port


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA home, its root, and a server certificate for www.twca.com.tw exported with its chain and key."""
    base = tmp_path_factory.mktemp("trust")
    home = make_ca(base / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    csr = openssl_csr(base, name="www")
    serial = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT).json()["certificates"][0]["serial"]
    assert home.run("cert", "export", serial, "--out-dir", base / "www").code == 0
    return {"home": home, "base": base, "bundle": base / "www", "key": base / "www.key"}


def _trust(home: CaHome, *args: str | Path) -> tuple[int, dict[str, Any]]:
    result = home.run("--json", "trust", *args)
    return result.code, json.loads(result.stdout)


def test_nss_install_then_certutil_lists_the_root_trusted(issued: dict[str, Any], tmp_path: Path) -> None:
    certutil = require("certutil")
    db = tmp_path / "nssdb"
    db.mkdir()
    assert subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=False).returncode == 0
    code, doc = _trust(issued["home"], "install", "--nss", db, "--dry-run")
    assert code == 0 and doc["stores"][0]["changed"] is False
    name = doc["stores"][0]["name"]

    def flags() -> str | None:
        out = subprocess.run([certutil, "-L", "-d", f"sql:{db}"], capture_output=True, text=True, check=True).stdout
        rows = [line.rsplit(None, 1) for line in out.splitlines() if line.startswith(name)]
        return rows[0][1] if rows else None

    assert flags() is None  # the dry run changed nothing
    code, doc = _trust(issued["home"], "install", "--nss", db)
    assert code == 0 and doc["stores"][0]["changed"] and doc["stores"][0]["trusted"]
    ssl_flags = (flags() or "").split(",")[0]
    assert "C" in ssl_flags  # a trusted CA for TLS servers (certutil's "C" in the SSL field)
    # and NSS itself verifies a server certificate through it (certutil -V, the intermediate imported untrusted)
    subprocess.run([certutil, "-A", "-d", f"sql:{db}", "-t", ",,", "-n", "uca", "-a", "-i",
                    str(issued["bundle"] / "uca.cer")], check=True)
    subprocess.run([certutil, "-A", "-d", f"sql:{db}", "-t", ",,", "-n", "www", "-a", "-i",
                    str(issued["bundle"] / "server.cer")], check=True)
    verified = subprocess.run([certutil, "-V", "-d", f"sql:{db}", "-n", "www", "-u", "V"], capture_output=True,
                              text=True, check=False)
    assert verified.returncode == 0 and "certificate is valid" in verified.stdout, verified.stdout + verified.stderr
    assert _trust(issued["home"], "status", "--nss", db)[0] == 0
    code, doc = _trust(issued["home"], "uninstall", "--nss", db)
    assert code == 0 and not doc["stores"][0]["trusted"] and flags() is None
    assert _trust(issued["home"], "status", "--nss", db)[0] == 1


def test_java_install_then_keytool_lists_it(issued: dict[str, Any], tmp_path: Path) -> None:
    keytool = require("keytool")
    keystore = tmp_path / "cacerts"
    (tmp_path / "sp").write_text("Store-pass-28\n")
    storepass = ["--java-storepass", f"file:{tmp_path / 'sp'}"]
    code, doc = _trust(issued["home"], "install", "--java", keystore, *storepass)
    assert code == 0 and doc["stores"][0]["trusted"], doc
    name = doc["stores"][0]["name"]
    listed = subprocess.run([keytool, "-list", "-v", "-keystore", str(keystore), "-storepass", "Store-pass-28",
                             "-alias", name], capture_output=True, text=True, check=False)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    fields = dict(line.split(": ", 1) for line in listed.stdout.splitlines() if ": " in line)
    assert fields["Entry type"] == "trustedCertEntry"
    assert fields["Owner"].startswith("CN=twcactl Local Root CA,") and fields["Issuer"] == fields["Owner"]
    assert "Store-pass-28" not in json.dumps(doc)  # the password never reaches argv or the output
    assert _trust(issued["home"], "status", "--java", keystore, *storepass)[0] == 0
    assert _trust(issued["home"], "uninstall", "--java", keystore, *storepass)[0] == 0
    gone = subprocess.run([keytool, "-list", "-keystore", str(keystore), "-storepass", "Store-pass-28", "-alias",
                           name], capture_output=True, text=True, check=False)
    assert gone.returncode != 0


@pytest.fixture
def tls_server(issued: dict[str, Any]) -> Iterator[int]:
    """``openssl s_server`` on 127.0.0.1 with the issued certificate and its intermediate."""
    port = free_port()
    b = issued["bundle"]
    proc = subprocess.Popen([require("openssl"), "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                             str(b / "server.cer"), "-key", str(issued["key"]), "-cert_chain", str(b / "uca.cer"),
                             "-www", "-quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import socket

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _debian_root(root: Path) -> Path:
    """A root directory with the Debian store's layout holding one other CA (as a machine's store holds many),
    listed in etc/ca-certificates.conf the way the ca-certificates package lists its own."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Some Other Root")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now)
             .not_valid_after(now + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(key, hashes.SHA256()))
    shared = root / "usr/share/ca-certificates/other"
    shared.mkdir(parents=True)
    (shared / "Some_Other_Root.crt").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ca-certificates.conf").write_text("other/Some_Other_Root.crt\n")
    return root


_PY_CLIENT = ("import socket, ssl, sys; ctx = ssl.create_default_context(); "
              "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10), "
              "server_hostname='www.twca.com.tw'); print(s.version()); s.close()")


def _clients(port: int, certs_dir: Path | None) -> tuple[int, int]:
    """Exit codes of curl and of a Python ssl client with their default trust; with ``certs_dir`` inside a
    private mount namespace where it is /etc/ssl/certs."""
    curl = [require("curl"), "-sS", "-o", "/dev/null", "--resolve", f"www.twca.com.tw:{port}:127.0.0.1",
            f"https://www.twca.com.tw:{port}/"]
    python = [sys.executable, "-c", _PY_CLIENT, str(port)]
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")}
    codes = []
    for command in (curl, python):
        if certs_dir is not None:
            command = [require("unshare"), "-m", "sh", "-c", 'mount --bind "$0" /etc/ssl/certs && exec "$@"',
                       str(certs_dir), *command]
        codes.append(subprocess.run(command, env=env, capture_output=True, timeout=60, check=False).returncode)
    return codes[0], codes[1]


def test_system_install_then_curl_and_python_trust_the_server(issued: dict[str, Any], tmp_path: Path,
                                                               tls_server: int) -> None:
    root = _debian_root(tmp_path / "fsroot")
    code, doc = _trust(issued["home"], "install", "--system", "--root", root)
    assert code == 0 and doc["stores"][0]["trusted"], doc
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    assert len(bundle.read_text().split("BEGIN CERTIFICATE")) == 3  # the other CA and ours
    assert _clients(tls_server, None) == (60, 1)  # the machine's own store does not trust the CA
    assert _clients(tls_server, root / "etc/ssl/certs") == (0, 0)  # the installed store does, by default
    assert _trust(issued["home"], "status", "--root", root)[0] == 0
    code, doc = _trust(issued["home"], "uninstall", "--system", "--root", root)
    assert code == 0 and not doc["stores"][0]["trusted"]
    assert _clients(tls_server, root / "etc/ssl/certs")[0] == 60  # removed: curl refuses again


def test_dry_run_and_refusal_without_rights(issued: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "fsroot"
    code, doc = _trust(issued["home"], "install", "--root", root, "--dry-run")
    assert code == 0 and not root.exists()  # nothing written
    assert any("update-ca-certificates" in s for s in doc["stores"][0]["steps"])
    # a store this user may not write (here: its tree mounted read-only, in a private mount namespace) is refused
    root.mkdir()
    command = [require("unshare"), "-m", "sh", "-c",
               'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"', str(root),
               sys.executable, "-m", "twcactl", "--home", str(issued["home"].path), "--json", "trust", "install",
               "--root", str(root)]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    error = json.loads(refused.stdout)["error"]
    assert error["kind"] == "state" and "no right to change" in error["message"]
    assert not any(root.rglob("*"))


def test_a_leaf_certificate_is_refused(issued: dict[str, Any]) -> None:
    result = invoke("--json", "trust", "install", "--cert", issued["bundle"] / "server.cer", "--dry-run")
    assert result.code == 2 and "not a CA certificate" in result.json()["error"]["message"]


def test_nss_all_finds_the_home_databases(issued: dict[str, Any], tmp_path: Path) -> None:
    certutil = require("certutil")
    home_dir = tmp_path / "user"
    dbs = [home_dir / ".pki" / "nssdb", home_dir / ".mozilla" / "firefox" / "ab12cd.default-release"]
    for db in dbs:
        db.mkdir(parents=True)
        subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True)
    (home_dir / ".mozilla" / "firefox" / "not-a-profile").mkdir()
    result = issued["home"].run("--json", "trust", "install", "--nss-all", env={"HOME": str(home_dir)})
    assert result.code == 0, result.stdout + result.stderr
    stores = result.json()["stores"]
    assert sorted(s["location"] for s in stores) == sorted(str(d) for d in dbs) and all(s["trusted"] for s in stores)
    for db in dbs:
        listed = subprocess.run([certutil, "-L", "-d", f"sql:{db}"], capture_output=True, text=True, check=True)
        assert any(line.startswith(stores[0]["name"]) and line.split()[-1].startswith("C")
                   for line in listed.stdout.splitlines())
    empty = issued["home"].run("--json", "trust", "install", "--nss-all", env={"HOME": str(tmp_path / "nobody")})
    assert empty.code == 2
