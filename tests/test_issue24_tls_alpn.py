"""Issue 24: tls-alpn-01 (RFC 8737) beside http-01 and dns-01: lego completes it against ``twcactl serve``, and
the check of the validation certificate refuses each defect (a test per RFC 8737 §3 requirement)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto.core import OctetString
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.conftest import ACCOUNT, make_ca, require
from tests.serve_support import Served, eab, free_port, start_server
from twcactl.serve.tls_alpn import ACME_IDENTIFIER_OID, certificate_problem

NAME = "alpn.example.test"
KEY_AUTH = "token-abc.thumbprint-xyz"


def test_lego_completes_tls_alpn_01(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "Example Ltd", "--quota", "5",
                    "--domain", "example.test").code == 0
    alpn_port = free_port()
    log = tmp_path / "serve.log"
    proc, port, http_port, http01_port = start_server(home, log, extra_args=("--acme-tls-alpn-port", str(alpn_port)))
    served = Served(home=home, port=port, http_port=http_port, http01_port=http01_port, proc=proc, log=log)
    try:
        kid, hmac = eab(served)
        env = dict(os.environ, LEGO_CA_CERTIFICATES=str(served.root))
        path = tmp_path / "lego"
        out = subprocess.run([require("lego"), "--server", served.directory, "--email", "ops@example.test", "--eab",
                              "--kid", kid, f"--hmac={hmac}", "--tls", "--tls.port", f"127.0.0.1:{alpn_port}",
                              "--accept-tos", "--path", str(path), "--domains", NAME, "run"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        leaf = x509.load_pem_x509_certificates((path / "certificates" / f"{NAME}.crt").read_bytes())[0]
        assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName) == [NAME]
        # the authorization was won by tls-alpn-01, the only challenge lego answered
        with sqlite3.connect(home.path / "twcactl.db") as db:
            rows = db.execute("SELECT c.type, c.status FROM acme_challenges c JOIN acme_authorizations a"
                              " ON a.id = c.authz_id WHERE a.identifier = ?", (NAME,)).fetchall()
        assert sorted(rows) == [("dns-01", "pending"), ("http-01", "pending"), ("tls-alpn-01", "valid")]
    finally:
        assert served.stop() == 0, log.read_text()[-2000:]


def _cert(*, sans: list[x509.GeneralName] | None = None, critical: bool = True, value: bytes | None = None,
          extension: bool = True) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.SubjectAlternativeName(sans if sans is not None else [x509.DNSName(NAME)]),
                              critical=False))
    if extension:
        digest = hashlib.sha256(KEY_AUTH.encode()).digest()
        raw = value if value is not None else OctetString(digest).dump()
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(ACME_IDENTIFIER_OID), raw), critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_a_valid_validation_certificate_passes() -> None:
    assert certificate_problem(_cert(), NAME, KEY_AUTH) is None


DEFECTS: dict[str, Callable[[], bytes]] = {
    "no acmeIdentifier": lambda: _cert(extension=False),
    "not critical": lambda: _cert(critical=False),
    "another digest": lambda: _cert(value=OctetString(hashlib.sha256(b"other").digest()).dump()),
    "not an OCTET STRING": lambda: _cert(value=b"\x02\x01\x01"),
    "trailing bytes": lambda: _cert(value=OctetString(hashlib.sha256(KEY_AUTH.encode()).digest()).dump() + b"\x00"),
    "the raw digest, not DER": lambda: _cert(value=hashlib.sha256(KEY_AUTH.encode()).digest()),
    "another name": lambda: _cert(sans=[x509.DNSName("other.example.test")]),
    "two names": lambda: _cert(sans=[x509.DNSName(NAME), x509.DNSName("other.example.test")]),
    "an address besides": lambda: _cert(sans=[x509.DNSName(NAME), x509.IPAddress(__import__("ipaddress")
                                                                                 .ip_address("127.0.0.1"))]),
    "not a certificate": lambda: b"\x30\x03\x02\x01\x01",
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_of_the_validation_certificate_is_refused(defect: str) -> None:
    assert certificate_problem(DEFECTS[defect](), NAME, KEY_AUTH) is not None
