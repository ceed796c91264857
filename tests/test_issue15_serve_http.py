"""Issue 15: the OCSP responder and CRL distribution over HTTP (checked with OpenSSL), ACME driven directly
(hostile requests refused with problem documents and nothing changed; ``replaces`` making a renewal)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import josepy as jose
import pytest
from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ACCOUNT, openssl_csr, require
from tests.serve_support import Served, eab, serve_home


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = serve_home(tmp_path, quota=5, domains=("twca.com.tw",), org="TWCA")
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log.read_text()[-2000:]


def _issue_cli(served: Served, tmp: Path) -> Path:
    csr = openssl_csr(tmp)
    doc = served.cli("cert", "issue", str(csr), "--account", ACCOUNT)
    serial = doc["certificates"][0]["serial"] if "certificates" in doc else doc["serial"]
    return served.home.path / "certs" / f"{serial}.pem"


def _ocsp(served: Served, cert: Path, tmp: Path) -> str:
    bundle = tmp / "bundle.pem"
    bundle.write_bytes(served.root.read_bytes() + (served.home.path / "ca" / "uca.cer").read_bytes())
    out = subprocess.run([require("openssl"), "ocsp", "-issuer", str(served.home.path / "ca" / "uca.cer"),
                          "-cert", str(cert), "-url", f"{served.http}/ocsp", "-CAfile", str(bundle)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Response verify OK" in out.stderr
    return out.stdout.split(": ", 1)[1].split()[0]


def test_ocsp_good_revoked_unknown_and_the_crl(served: Served, tmp_path: Path) -> None:
    cert = _issue_cli(served, tmp_path)
    assert _ocsp(served, cert, tmp_path) == "good"
    serial = format(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number, "x")
    assert served.home.run("cert", "revoke", serial, "--reason", "keyCompromise").code == 0
    assert _ocsp(served, cert, tmp_path) == "revoked"
    # unknown: a certificate of this CA's name and key that the records do not hold
    other = tmp_path / "other.pem"
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    forged = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(leaf.issuer)
              .public_key(key.public_key()).serial_number(12345).not_valid_before(leaf.not_valid_before_utc)
              .not_valid_after(leaf.not_valid_after_utc).sign(key, hashes.SHA256()))
    other.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    assert _ocsp(served, other, tmp_path) == "unknown"

    # GET /ocsp/BASE64 with RFC 5019 caching headers
    req = subprocess.run([require("openssl"), "ocsp", "-issuer", str(served.home.path / "ca" / "uca.cer"), "-cert",
                          str(cert), "-reqout", str(tmp_path / "req.der"), "-no_nonce"], capture_output=True)
    assert req.returncode == 0
    b64 = base64.b64encode((tmp_path / "req.der").read_bytes()).decode()
    status, headers, body = served.get(f"{served.http}/ocsp/{b64}")
    assert status == 200 and headers["content-type"] == "application/ocsp-response"
    assert "max-age=" in headers["cache-control"] and "last-modified" in headers and "etag" in headers
    from cryptography.x509 import ocsp
    assert ocsp.load_der_ocsp_response(body).certificate_status == ocsp.OCSPCertStatus.REVOKED

    # the CRL: DER over plain HTTP, verifies with openssl crl -CAfile, lists the revoked serial
    status, headers, der = served.get(f"{served.http}/crl/uca.crl")
    assert status == 200 and headers["content-type"] == "application/pkix-crl"
    crl_file = tmp_path / "uca.crl"
    crl_file.write_bytes(der)
    out = subprocess.run([require("openssl"), "crl", "-inform", "DER", "-in", str(crl_file), "-CAfile",
                          str(served.home.path / "ca" / "uca.cer"), "-noout"], capture_output=True, text=True)
    assert out.returncode == 0 and "verify OK" in out.stderr + out.stdout
    crl = x509.load_der_x509_crl(der)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    assert served.get(f"{served.http}/crl/uca.crl", headers={"If-None-Match": headers["etag"]})[0] == 304
    status, headers, ca_der = served.get(f"{served.http}/ca/uca.cer")
    assert status == 200 and x509.load_der_x509_certificate(ca_der).subject == crl.issuer
    assert served.get(f"{served.http}/crl/nosuch.crl")[0] == 404


class Client:
    """A minimal ACME client over josepy, to send what certbot and lego never would."""

    def __init__(self, served: Served) -> None:
        self.s = served
        self.key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        self.kid: str | None = None
        status, _h, body = served.get(served.directory)
        self.dir = json.loads(body)

    def nonce(self) -> str:
        _s, headers, _b = self.s.get(self.dir["newNonce"], method="HEAD")
        return headers["replay-nonce"]

    def jws(self, url: str, payload: Any, *, nonce: str | None = None, signed_url: str | None = None,
            kid: str | None = None, key: Any = None) -> bytes:
        data = b"" if payload is None else json.dumps(payload).encode()
        use_kid = (kid or None) if kid is not None else self.kid  # kid="": sign with the jwk
        signed = acme_jws.JWS.sign(data, key=key or self.key, alg=jose.ES256,
                                   nonce=jose.decode_b64jose(nonce or self.nonce()), url=signed_url or url,
                                   kid=use_kid)
        return signed.json_dumps().encode()

    def post(self, url: str, payload: Any, **kw: Any) -> tuple[int, dict[str, str], Any]:
        status, headers, body = self.s.get(url, data=self.jws(url, payload, **kw),
                                           headers={"Content-Type": "application/jose+json"})
        ctype = headers.get("content-type", "")
        return status, headers, json.loads(body) if "json" in ctype and body else body

    def register(self, kid: str, hmac: str) -> tuple[int, Any]:
        from acme import messages

        directory = messages.Directory.from_json(dict(self.dir))
        binding = messages.ExternalAccountBinding.from_data(self.key.public_key(), kid, hmac, directory)
        status, headers, body = self.post(self.dir["newAccount"], {"termsOfServiceAgreed": True,
                                                                   "externalAccountBinding": binding}, kid="")
        if status == 201:
            self.kid = headers["location"]
        return status, body


def _state(served: Served) -> Any:
    return served.cli("account", "show", ACCOUNT), served.cli("acme", "accounts")


def test_hostile_requests_get_problem_documents_and_change_nothing(served: Served) -> None:
    client = Client(served)
    kid, hmac = eab(served)
    new_account = client.dir["newAccount"]
    # no EAB
    status, _h, body = client.post(new_account, {"termsOfServiceAgreed": True}, kid="")
    assert status == 400 and body["type"].endswith(":externalAccountRequired")
    # a wrong HMAC key
    status, body = Client(served).register(kid, base64.urlsafe_b64encode(b"x" * 32).decode().rstrip("="))
    assert status == 403 and body["type"].endswith(":unauthorized")
    before = _state(served)
    # oversized body
    status, headers, raw = served.get(client.dir["newOrder"], data=b"{" + b" " * 200_000 + b"}",
                                      headers={"Content-Type": "application/jose+json"})
    assert status == 413 and json.loads(raw)["type"].endswith(":malformed")
    # not a JWS, a JWS with an unprotected header, a bad signature
    for bad in (b"not json", b"[]", json.dumps({"protected": "e30", "payload": "", "signature": "",
                                                "header": {}}).encode()):
        status, _h, raw = served.get(client.dir["newOrder"], data=bad, headers={"Content-Type": "application/jose+json"})
        assert status == 400 and json.loads(raw)["type"].endswith(":malformed"), raw
    tampered = json.loads(client.jws(new_account, {"termsOfServiceAgreed": True}, kid=""))
    tampered["payload"] = base64.urlsafe_b64encode(b'{"onlyReturnExisting":true}').decode().rstrip("=")
    status, _h, raw = served.get(new_account, data=json.dumps(tampered).encode(),
                                 headers={"Content-Type": "application/jose+json"})
    assert status == 400 and json.loads(raw)["detail"] == "the JWS signature does not verify."
    # unknown account (a kid this server never gave)
    status, _h, body = client.post(client.dir["newOrder"], {"identifiers": []},
                                   kid=f"https://127.0.0.1:{served.port}/acme/acct/nosuch")
    assert status == 400 and body["type"].endswith(":accountDoesNotExist")
    assert _state(served) == before

    status, body = client.register(kid, hmac)
    assert status == 201 and body["twcactlAccount"] == ACCOUNT
    # the EAB key is single use
    status, body = Client(served).register(kid, hmac)
    assert status == 403
    # replayed nonce
    nonce = client.nonce()
    identifiers = {"identifiers": [{"type": "dns", "value": "www.twca.com.tw"}]}
    status, _h, body = client.post(client.dir["newOrder"], identifiers, nonce=nonce)
    assert status == 201
    status, headers, body = client.post(client.dir["newOrder"], identifiers, nonce=nonce)
    assert status == 400 and body["type"].endswith(":badNonce") and headers["replay-nonce"]
    # wrong URL in the protected header
    status, _h, body = client.post(client.dir["newOrder"], identifiers, signed_url=client.dir["revokeCert"])
    assert status == 401 and body["type"].endswith(":unauthorized")
    # an identifier outside the agreed domains: the rule ID in the problem document
    status, _h, body = client.post(client.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "a.b.twca.com.tw"}]})
    assert status == 400 and body["type"].endswith(":rejectedIdentifier") and body["rule"] == "cn.domain"
    # nothing was charged or logged for any of it
    assert _state(served)[0] == before[0]


def test_account_deactivation_and_key_change(served: Served) -> None:
    client = Client(served)
    kid, hmac = eab(served)
    assert client.register(kid, hmac)[0] == 201
    new_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    url = client.dir["keyChange"]
    inner = acme_jws.JWS.sign(json.dumps({"account": client.kid, "oldKey": client.key.public_key().to_partial_json()})
                              .encode(), key=new_key, alg=jose.ES256, nonce=None, url=url)
    status, _h, body = client.post(url, inner.to_partial_json())
    assert status == 200, body
    old_key = client.key
    client.key = new_key
    assert client.post(client.kid, None)[0] == 200
    assert client.post(client.kid, None, key=old_key)[0] == 400  # the old key no longer signs for it
    status, _h, body = client.post(client.kid, {"status": "deactivated"})
    assert status == 200 and body["status"] == "deactivated"
    status, _h, body = client.post(client.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "twca.com.tw"}]})
    assert status == 403 and body["type"].endswith(":unauthorized")
    accounts = served.cli("acme", "accounts")["accounts"]
    assert accounts[0]["status"] == "deactivated"
