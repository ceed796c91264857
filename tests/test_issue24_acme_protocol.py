"""Issue 24, the ACME protocol of ``twcactl serve`` under hostile and odd clients (one server per module):

- malformed JWS and EAB headers: every variant a 4xx problem document of RFC 8555's type, no 5xx, nothing
  written to the books;
- ``alg`` must fit the key (ES256/P-256, ES384/P-384, ES512/P-521, RS256 RSA >= 2048);
- a finalize CSR whose key is an account key is badCSR (RFC 8555 §11.1);
- ownership: a second ACME account can read, finalize, answer, deactivate, download or revoke nothing of the
  first one's (each check has a test that fails without it);
- a renewal order (``replaces``) that became invalid no longer blocks the next one;
- newOrder leniency (Caddy 2.6.2's whole order object), ACME profiles, and ``--acme-eab optional``.

The requests are built here by hand (josepy signs), so that each can carry exactly the fault it tests.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac as hmac_mod
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import josepy as jose
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from tests.conftest import ACCOUNT, make_ca
from tests.serve_support import Served, eab, start_server
from tests.test_issue15_more import ChallengeServer

OTHER = "70759028-02"
DOMAIN = "example.test"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_HASHES = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}


def sign_raw(key: Any, alg: str, data: bytes) -> bytes:
    """A JWS signature over ``data`` with ``key`` (a cryptography private key), the hash taken from ``alg``
    whatever the key (so that a mismatched alg/key pair carries a signature that verifies under it)."""
    digest = _HASHES.get(alg[-3:], hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), digest)
    raise TypeError(key)


def alg_of(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    return {256: "ES256", 384: "ES384", 521: "ES512"}[key.curve.key_size]


def public_jwk(key: Any) -> dict[str, Any]:
    return dict(jose.JWK.load(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)).to_partial_json())


def flattened(protected: Any, payload: bytes, key: Any, alg: str | None = None) -> dict[str, Any]:
    head = b64(json.dumps(protected).encode()) if not isinstance(protected, str) else protected
    body = b64(payload)
    sig = sign_raw(key, alg or (protected.get("alg") if isinstance(protected, dict) and
                                isinstance(protected.get("alg"), str) else "ES256"), f"{head}.{body}".encode())
    return {"protected": head, "payload": body, "signature": b64(sig)}


def eab_jws(kid: Any, hmac_b64: str, url: Any, account_jwk: Any, *, alg: Any = "HS256",
            mac_alg: str = "HS256", extra: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """An EAB inner JWS (RFC 8555 §7.3.4) with the given header values."""
    protected: dict[str, Any] = {"alg": alg, "kid": kid, "url": url, **(extra or {})}
    for name in drop:
        protected.pop(name, None)
    head = b64(json.dumps(protected).encode())
    body = b64(json.dumps(account_jwk).encode())
    key = base64.urlsafe_b64decode(hmac_b64 + "=" * (-len(hmac_b64) % 4))
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[mac_alg]
    mac = hmac_mod.new(key, f"{head}.{body}".encode(), digest).digest()
    return {"protected": head, "payload": body, "signature": b64(mac)}


class Acme:
    """One ACME account's view of the server: its key, its kid, raw requests."""

    def __init__(self, served: Served, key: Any = None) -> None:
        self.s = served
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.kid: str | None = None
        self.dir = json.loads(served.get(served.directory)[2])

    @property
    def jwk(self) -> dict[str, Any]:
        return public_jwk(self.key)

    @property
    def thumbprint(self) -> str:
        return b64(jose.JWK.from_json(self.jwk).thumbprint())

    def nonce(self) -> str:
        return self.s.get(self.dir["newNonce"], method="HEAD")[1]["replay-nonce"]

    def send(self, url: str, body: Any) -> tuple[int, dict[str, str], Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, headers, raw = self.s.get(url, data=data, headers={"Content-Type": "application/jose+json"})
        ctype = headers.get("content-type", "")
        return status, headers, json.loads(raw) if "json" in ctype and raw else raw

    def signed(self, url: str, payload: Any, *, use_jwk: bool = False, alg: str | None = None) -> dict[str, Any]:
        protected: dict[str, Any] = {"alg": alg or alg_of(self.key), "nonce": self.nonce(), "url": url}
        if use_jwk or self.kid is None:
            protected["jwk"] = self.jwk
        else:
            protected["kid"] = self.kid
        data = b"" if payload is None else json.dumps(payload).encode()
        return flattened(protected, data, self.key)

    def post(self, url: str, payload: Any, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.send(url, self.signed(url, payload, **kw))

    def register(self, kid: str | None = None, hmac: str | None = None) -> Any:
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if kid and hmac:
            payload["externalAccountBinding"] = eab_jws(kid, hmac, self.dir["newAccount"], self.jwk)
        status, headers, body = self.post(self.dir["newAccount"], payload, use_jwk=True)
        assert status == 201, body
        self.kid = headers["location"]
        return body

    def new_order(self, *names: str, **more: Any) -> tuple[int, dict[str, str], Any]:
        return self.post(self.dir["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in names], **more})


@dataclass
class World:
    served: Served
    web: ChallengeServer
    tmp: Path

    def accounts(self, *, other: bool = False) -> Acme:
        """A new ACME account with a fresh EAB key of ACCOUNT (or of OTHER)."""
        client = Acme(self.served)
        doc = self.served.cli("acme", "eab", OTHER if other else ACCOUNT)
        client.register(doc["kid"], doc["hmac"])
        return client

    def books(self) -> Any:
        """Everything an ACME request could change: both accounts' balances and ledgers, the certificates,
        the ACME accounts."""
        return (self.served.cli("account", "show", ACCOUNT), self.served.cli("account", "show", OTHER),
                self.served.cli("cert", "list"), self.served.cli("acme", "accounts"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("acme24")
    home = make_ca(tmp / "ca")
    for acct in (ACCOUNT, OTHER):
        assert home.run("account", "add", acct, "--org", "Example Ltd", "--domain", DOMAIN, "--quota", "20").code == 0
    for name, url in (("crl_url", "http://ca.example.test/uca.crl"), ("ocsp_url", "http://ca.example.test/ocsp")):
        assert home.run("ca", "config", name, url).code == 0
    log = tmp / "serve.log"
    proc, port, http_port, http01_port = start_server(home, log)
    served = Served(home=home, port=port, http_port=http_port, http01_port=http01_port, proc=proc, log=log)
    web = ChallengeServer(http01_port)
    try:
        yield World(served=served, web=web, tmp=tmp)
    finally:
        web.close()
        assert served.stop() == 0, log.read_text()[-2000:]
        text = log.read_text()
        assert "internal error" not in text and "Traceback" not in text, text[-3000:]


def problem(status: int, headers: dict[str, str], body: Any) -> str:
    """The short type of a problem document, after checking it is one (RFC 7807, RFC 8555 §6.7)."""
    assert headers.get("content-type", "").startswith("application/problem+json"), (status, body)
    assert isinstance(body, dict) and body["status"] == status, body
    assert body["type"].startswith("urn:ietf:params:acme:error:"), body
    return str(body["type"].rsplit(":", 1)[1])


def csr_der(names: list[str], key: Any = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.DER)


def answered(client: Acme, url: str) -> tuple[int, dict[str, Any]]:
    """POST a challenge, then poll it until its validation ended (it runs beside the request: RFC 8555 §7.5.1)."""
    status, _h, doc = client.post(url, {})
    for _ in range(150):
        if status != 200 or doc.get("status") not in ("pending", "processing"):
            break
        time.sleep(0.1)
        status, _h, doc = client.post(url, None)
    return status, doc


def ready_order(world: World, client: Acme, *names: str, **more: Any) -> dict[str, Any]:
    """A new order of ``client`` whose http-01 challenges were answered: ``{"url", "doc"}``, ready."""
    status, headers, doc = client.new_order(*names, **more)
    assert status == 201, doc
    url = headers["location"]
    for authz_url in doc["authorizations"]:
        _s, _h, authz = client.post(authz_url, None)
        chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
        world.web.tokens[chall["token"]] = f"{chall['token']}.{client.thumbprint}"
        status, done = answered(client, chall["url"])
        assert status == 200 and done["status"] == "valid", done
    status, _h, doc = client.post(url, None)
    assert doc["status"] == "ready", doc
    return {"url": url, "doc": doc}


def issued(world: World, client: Acme, *names: str, **more: Any) -> tuple[dict[str, Any], x509.Certificate]:
    order = ready_order(world, client, *names, **more)
    status, _h, done = client.post(order["doc"]["finalize"], {"csr": b64(csr_der(list(names)))})
    assert status == 200 and done["status"] == "valid", done
    status, _h, pem = client.post(done["certificate"], None)
    assert status == 200
    return {**order, "doc": done}, x509.load_pem_x509_certificates(pem)[0]


# ---------------------------------------------------------------- malformed JWS headers and bodies

Mutation = Callable[[dict[str, Any]], Any]


def _header(**changes: Any) -> Mutation:
    """Set (or, for the value ``...``, remove) protected header members."""
    def mutate(protected: dict[str, Any]) -> Any:
        for name, value in changes.items():
            if value is ...:
                protected.pop(name, None)
            else:
                protected[name] = value
        return protected
    return mutate


_EC_PRIVATE = ec.generate_private_key(ec.SECP256R1())
_RSA_1024 = rsa.generate_private_key(65537, 1024)

#: (id, header mutation, expected status, expected type); the request is a kid-signed newOrder.
HEADER_VARIANTS: list[tuple[str, Mutation, int, str]] = [
    ("alg-none", _header(alg="none"), 400, "badSignatureAlgorithm"),
    ("alg-empty", _header(alg=""), 400, "badSignatureAlgorithm"),
    ("alg-null", _header(alg=None), 400, "badSignatureAlgorithm"),
    ("alg-number", _header(alg=256), 400, "badSignatureAlgorithm"),
    ("alg-true", _header(alg=True), 400, "badSignatureAlgorithm"),
    ("alg-list", _header(alg=["ES256"]), 400, "badSignatureAlgorithm"),
    ("alg-object", _header(alg={"a": 1}), 400, "badSignatureAlgorithm"),
    ("alg-missing", _header(alg=...), 400, "badSignatureAlgorithm"),
    ("alg-HS256", _header(alg="HS256"), 400, "badSignatureAlgorithm"),
    ("alg-lowercase", _header(alg="es256"), 400, "badSignatureAlgorithm"),
    ("alg-EdDSA", _header(alg="EdDSA"), 400, "badSignatureAlgorithm"),
    ("alg-unknown", _header(alg="XS999"), 400, "badSignatureAlgorithm"),
    ("nonce-missing", _header(nonce=...), 400, "badNonce"),
    ("nonce-number", _header(nonce=12345), 400, "badNonce"),
    ("nonce-null", _header(nonce=None), 400, "badNonce"),
    ("nonce-empty", _header(nonce=""), 400, "badNonce"),
    ("nonce-not-base64url", _header(nonce="!!!+/="), 400, "badNonce"),
    ("nonce-list", _header(nonce=["abc"]), 400, "badNonce"),
    ("nonce-object", _header(nonce={"n": "abc"}), 400, "badNonce"),
    ("nonce-unknown", _header(nonce="AAAAAAAAAAAAAAAAAAAAAA"), 400, "badNonce"),
    ("url-missing", _header(url=...), 400, "malformed"),
    ("url-number", _header(url=5), 400, "malformed"),
    ("url-empty", _header(url=""), 400, "malformed"),
    ("url-null", _header(url=None), 400, "malformed"),
    ("url-list", _header(url=["x"]), 400, "malformed"),
    ("url-other-path", lambda p: {**p, "url": p["url"].replace("new-order", "revoke-cert")}, 401, "unauthorized"),
    ("url-http-scheme", lambda p: {**p, "url": p["url"].replace("https:", "http:")}, 401, "unauthorized"),
    ("jwk-and-kid", lambda p: {**p, "jwk": public_jwk(_EC_PRIVATE)}, 400, "malformed"),
    ("neither-jwk-nor-kid", _header(kid=...), 400, "malformed"),
    ("kid-number", _header(kid=7), 400, "malformed"),
    ("kid-empty", _header(kid=""), 400, "malformed"),
    ("kid-null", _header(kid=None), 400, "malformed"),
    ("kid-list", _header(kid=["x"]), 400, "malformed"),
    ("kid-unknown-account", lambda p: {**p, "kid": p["kid"].rsplit("/", 1)[0] + "/nosuch"}, 400,
     "accountDoesNotExist"),
    ("kid-foreign-server", _header(kid="https://acme.elsewhere.test/acct/1"), 400, "accountDoesNotExist"),
    ("jwk-string", _header(kid=..., jwk="not a key"), 400, "malformed"),
    ("jwk-empty-object", _header(kid=..., jwk={}), 400, "malformed"),
    ("jwk-symmetric", _header(kid=..., jwk={"kty": "oct", "k": "AAAA"}), 400, "malformed"),
    ("jwk-private", _header(kid=..., jwk=dict(jose.JWKEC(key=_EC_PRIVATE).to_partial_json())), 400, "malformed"),
    ("jwk-bad-point", _header(kid=..., jwk={"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}), 400,
     "malformed"),
    ("jwk-unknown-kty", _header(kid=..., jwk={"kty": "XYZ"}), 400, "malformed"),
    ("jwk-rsa-1024", _header(kid=..., jwk=public_jwk(_RSA_1024), alg="RS256"), 400, "badPublicKey"),
]

#: (id, body mutation of a correctly signed newOrder, expected status, expected type).
BODY_VARIANTS: list[tuple[str, Callable[[dict[str, Any]], Any], int, str]] = [
    ("protected-not-base64", lambda b: {**b, "protected": "!!not base64!!"}, 400, "malformed"),
    ("protected-not-json", lambda b: {**b, "protected": b64(b"{not json")}, 400, "malformed"),
    ("protected-a-list", lambda b: {**b, "protected": b64(b"[]")}, 400, "malformed"),
    ("protected-null", lambda b: {**b, "protected": b64(b"null")}, 400, "malformed"),
    ("protected-a-number", lambda b: {**b, "protected": 5}, 400, "malformed"),
    ("protected-empty", lambda b: {**b, "protected": ""}, 400, "malformed"),
    ("payload-not-base64", lambda b: {**b, "payload": "@@@"}, 400, "malformed"),
    ("payload-a-number", lambda b: {**b, "payload": 5}, 400, "malformed"),
    ("signature-not-base64", lambda b: {**b, "signature": "%%%"}, 400, "malformed"),
    ("signature-empty", lambda b: {**b, "signature": ""}, 400, "malformed"),
    ("signature-of-other-bytes", lambda b: {**b, "signature": b64(b"\0" * 64)}, 400, "malformed"),
    ("signature-null", lambda b: {**b, "signature": None}, 400, "malformed"),
    ("unprotected-header", lambda b: {**b, "header": {"alg": "ES256"}}, 400, "malformed"),
    ("signature-missing", lambda b: {k: v for k, v in b.items() if k != "signature"}, 400, "malformed"),
    ("general-serialization", lambda b: {"payload": b["payload"], "signatures": [
        {"protected": b["protected"], "signature": b["signature"]}]}, 400, "malformed"),
    ("a-json-list", lambda b: [b], 400, "malformed"),
    ("a-json-string", lambda b: "a.b.c", 400, "malformed"),
    ("a-json-number", lambda b: 1, 400, "malformed"),
    ("compact-serialization", lambda b: f"{b['protected']}.{b['payload']}.{b['signature']}".encode(), 400,
     "malformed"),
    ("not-json", lambda b: b"{{{{", 400, "malformed"),
    ("empty-body", lambda b: b"", 400, "malformed"),
    ("binary-body", lambda b: bytes(range(256)), 400, "malformed"),
]

#: (id, newOrder payload, expected status, expected type): a correctly signed request with a bad payload.
PAYLOAD_VARIANTS: list[tuple[str, Any, int, str]] = [
    ("payload-a-list", [{"identifiers": []}], 400, "malformed"),
    ("payload-a-string", "identifiers", 400, "malformed"),
    ("payload-a-number", 7, 400, "malformed"),
    ("payload-null", None, 400, "malformed"),  # "null" is not a JSON object (and not POST-as-GET's "")
    ("identifiers-missing", {}, 400, "malformed"),
    ("identifiers-empty", {"identifiers": []}, 400, "malformed"),
    ("identifiers-a-string", {"identifiers": "a.example.test"}, 400, "malformed"),
    ("identifiers-an-object", {"identifiers": {"type": "dns", "value": "a.example.test"}}, 400, "malformed"),
    ("identifier-a-string", {"identifiers": ["a.example.test"]}, 400, "malformed"),
    ("identifier-type-number", {"identifiers": [{"type": 5, "value": "a.example.test"}]}, 400, "malformed"),
    ("identifier-value-number", {"identifiers": [{"type": "dns", "value": 5}]}, 400, "malformed"),
    ("identifier-value-missing", {"identifiers": [{"type": "dns"}]}, 400, "malformed"),
    ("identifier-type-ip", {"identifiers": [{"type": "ip", "value": "192.0.2.1"}]}, 400, "unsupportedIdentifier"),
    ("identifier-outside-domains", {"identifiers": [{"type": "dns", "value": "a.elsewhere.test"}]}, 400,
     "rejectedIdentifier"),
    ("replaces-number", {"identifiers": [{"type": "dns", "value": "a.example.test"}], "replaces": 5}, 400,
     "malformed"),
    ("replaces-not-a-cert-id", {"identifiers": [{"type": "dns", "value": "a.example.test"}], "replaces": "xyz"},
     400, "malformed"),
    ("profile-number", {"identifiers": [{"type": "dns", "value": "a.example.test"}], "profile": 1}, 400, "malformed"),
    ("profile-unknown", {"identifiers": [{"type": "dns", "value": "a.example.test"}], "profile": "nosuch"}, 400,
     "invalidProfile"),
    ("notAfter-a-date", {"identifiers": [{"type": "dns", "value": "a.example.test"}],
                         "notAfter": "2030-01-01T00:00:00Z"}, 400, "malformed"),
    ("notBefore-number", {"identifiers": [{"type": "dns", "value": "a.example.test"}], "notBefore": 0}, 400,
     "malformed"),
]


@pytest.fixture(scope="module")
def alice(world: World) -> Acme:
    return world.accounts()


@pytest.mark.parametrize(("name", "mutate", "status", "kind"), HEADER_VARIANTS, ids=[v[0] for v in HEADER_VARIANTS])
def test_a_malformed_protected_header_is_a_4xx_problem(world: World, alice: Acme, name: str, mutate: Mutation,
                                                       status: int, kind: str) -> None:
    url = alice.dir["newOrder"]
    protected = mutate({"alg": "ES256", "nonce": alice.nonce(), "url": url, "kid": alice.kid})
    key = _RSA_1024 if name == "jwk-rsa-1024" else alice.key
    alg = protected.get("alg") if isinstance(protected.get("alg"), str) and protected["alg"][:2] in ("ES", "RS") \
        else "ES256"
    body = flattened(protected, json.dumps({"identifiers": [{"type": "dns", "value": "a.example.test"}]}).encode(),
                     key, alg)
    got = alice.send(url, body)
    assert got[0] == status and problem(*got) == kind, got
    assert got[1].get("replay-nonce"), "a problem document carries a fresh nonce (RFC 8555 §6.5)"


@pytest.mark.parametrize(("name", "mutate", "status", "kind"), BODY_VARIANTS, ids=[v[0] for v in BODY_VARIANTS])
def test_a_malformed_jws_body_is_a_4xx_problem(world: World, alice: Acme, name: str, mutate: Any, status: int,
                                               kind: str) -> None:
    url = alice.dir["newOrder"]
    body = mutate(alice.signed(url, {"identifiers": [{"type": "dns", "value": "a.example.test"}]}))
    got = alice.send(url, body)
    assert got[0] == status and problem(*got) == kind, got


@pytest.mark.parametrize(("name", "payload", "status", "kind"), PAYLOAD_VARIANTS,
                         ids=[v[0] for v in PAYLOAD_VARIANTS])
def test_a_malformed_new_order_payload_is_a_4xx_problem(world: World, alice: Acme, name: str, payload: Any,
                                                        status: int, kind: str) -> None:
    url = alice.dir["newOrder"]
    protected = {"alg": "ES256", "nonce": alice.nonce(), "url": url, "kid": alice.kid}
    body = flattened(protected, json.dumps(payload).encode(), alice.key)
    got = alice.send(url, body)
    assert got[0] == status and problem(*got) == kind, got


# ---------------------------------------------------------------- EAB inner JWS

#: (id, builder(kid, hmac, url, account jwk, other jwk) -> the externalAccountBinding value, status, type)
EAB_VARIANTS: list[tuple[str, Callable[..., Any], int, str]] = [
    ("eab-alg-none", lambda k, h, u, j, o: eab_jws(k, h, u, j, alg="none"), 400, "badSignatureAlgorithm"),
    ("eab-alg-empty", lambda k, h, u, j, o: eab_jws(k, h, u, j, alg=""), 400, "badSignatureAlgorithm"),
    ("eab-alg-null", lambda k, h, u, j, o: eab_jws(k, h, u, j, alg=None), 400, "badSignatureAlgorithm"),
    ("eab-alg-number", lambda k, h, u, j, o: eab_jws(k, h, u, j, alg=256), 400, "badSignatureAlgorithm"),
    ("eab-alg-ES256", lambda k, h, u, j, o: eab_jws(k, h, u, j, alg="ES256"), 400, "badSignatureAlgorithm"),
    ("eab-alg-missing", lambda k, h, u, j, o: eab_jws(k, h, u, j, drop=("alg",)), 400, "badSignatureAlgorithm"),
    ("eab-alg-list", lambda k, h, u, j, o: eab_jws(k, h, u, j, alg=["HS256"]), 400, "badSignatureAlgorithm"),
    ("eab-alg-HS512-mac-HS256", lambda k, h, u, j, o: eab_jws(k, h, u, j, alg="HS512"), 403, "unauthorized"),
    ("eab-kid-missing", lambda k, h, u, j, o: eab_jws(k, h, u, j, drop=("kid",)), 400, "malformed"),
    ("eab-kid-number", lambda k, h, u, j, o: eab_jws(5, h, u, j), 400, "malformed"),
    ("eab-kid-unknown", lambda k, h, u, j, o: eab_jws("kid-nosuch", h, u, j), 403, "unauthorized"),
    ("eab-nonce-present", lambda k, h, u, j, o: eab_jws(k, h, u, j, extra={"nonce": "abc"}), 400, "malformed"),
    ("eab-jwk-in-header", lambda k, h, u, j, o: eab_jws(k, h, u, j, extra={"jwk": j}), 400, "malformed"),
    ("eab-url-other", lambda k, h, u, j, o: eab_jws(k, h, u.replace("new-account", "new-order"), j), 400,
     "malformed"),
    ("eab-url-missing", lambda k, h, u, j, o: eab_jws(k, h, u, j, drop=("url",)), 400, "malformed"),
    ("eab-payload-not-a-key", lambda k, h, u, j, o: eab_jws(k, h, u, {"hello": "world"}), 400, "malformed"),
    ("eab-payload-another-key", lambda k, h, u, j, o: eab_jws(k, h, u, o), 403, "unauthorized"),
    ("eab-wrong-hmac-key", lambda k, h, u, j, o: eab_jws(k, b64(b"x" * 32), u, j), 403, "unauthorized"),
    ("eab-a-string", lambda k, h, u, j, o: "not a jws", 400, "malformed"),
    ("eab-a-number", lambda k, h, u, j, o: 42, 400, "malformed"),
    ("eab-a-list", lambda k, h, u, j, o: [eab_jws(k, h, u, j)], 400, "malformed"),
    ("eab-protected-not-base64", lambda k, h, u, j, o: {**eab_jws(k, h, u, j), "protected": "!!"}, 400,
     "malformed"),
    ("eab-extra-member", lambda k, h, u, j, o: {**eab_jws(k, h, u, j), "header": {}}, 400, "malformed"),
    ("eab-signature-not-base64", lambda k, h, u, j, o: {**eab_jws(k, h, u, j), "signature": "%%"}, 400,
     "malformed"),
]


@pytest.fixture(scope="module")
def spare_eab(world: World) -> tuple[str, str]:
    """One EAB key for every failing variant: a refused binding does not use it up."""
    return eab(world.served)


@pytest.mark.parametrize(("name", "build", "status", "kind"), EAB_VARIANTS, ids=[v[0] for v in EAB_VARIANTS])
def test_a_malformed_eab_is_a_4xx_problem(world: World, spare_eab: tuple[str, str], name: str, build: Any,
                                          status: int, kind: str) -> None:
    client = Acme(world.served)
    kid, hmac = spare_eab
    other = public_jwk(ec.generate_private_key(ec.SECP256R1()))
    binding = build(kid, hmac, client.dir["newAccount"], client.jwk, other)
    got = client.post(client.dir["newAccount"], {"termsOfServiceAgreed": True, "externalAccountBinding": binding},
                      use_jwk=True)
    assert got[0] == status and problem(*got) == kind, got


def test_the_variants_changed_nothing_and_the_eab_key_still_works(world: World, spare_eab: tuple[str, str]) -> None:
    variants = len(HEADER_VARIANTS) + len(BODY_VARIANTS) + len(PAYLOAD_VARIANTS) + len(EAB_VARIANTS)
    assert variants >= 60
    keys = {k["kid"]: k["state"] for k in world.served.cli("acme", "accounts")["eab_keys"]}
    assert keys[spare_eab[0]] == "issued"
    Acme(world.served).register(*spare_eab)
    assert {k["kid"]: k["state"] for k in world.served.cli("acme", "accounts")["eab_keys"]}[spare_eab[0]] == "bound"


# ---------------------------------------------------------------- alg must fit the key

@pytest.mark.parametrize(("curve", "good", "bad"), [(ec.SECP256R1(), "ES256", "ES384"), (ec.SECP384R1(), "ES384",
                                                                                          "ES256"),
                                                     (ec.SECP521R1(), "ES512", "ES256"), ("rsa", "RS256", "ES256")],
                         ids=["P-256", "P-384", "P-521", "RSA-2048"])
def test_alg_must_fit_the_account_key(world: World, curve: Any, good: str, bad: str) -> None:
    key = rsa.generate_private_key(65537, 2048) if curve == "rsa" else ec.generate_private_key(curve)
    client = Acme(world.served, key)
    kid, hmac = eab(world.served)
    payload = {"termsOfServiceAgreed": True,
               "externalAccountBinding": eab_jws(kid, hmac, client.dir["newAccount"], client.jwk)}
    url = client.dir["newAccount"]
    # signed correctly with the hash of the wrong alg: refused before the signature is looked at
    wrong = flattened({"alg": bad, "nonce": client.nonce(), "url": url, "jwk": client.jwk},
                      json.dumps(payload).encode(), key, bad)
    got = client.send(url, wrong)
    assert got[0] == 400 and problem(*got) == "badSignatureAlgorithm", got
    client.register(kid, hmac)
    got = client.post(client.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "a.example.test"}]},
                      alg=bad)
    assert got[0] == 400 and problem(*got) == "badSignatureAlgorithm", got
    status, _h, doc = client.new_order("a.example.test")
    assert status == 201, doc


# ---------------------------------------------------------------- finalize with an account key

def test_a_csr_with_an_account_key_is_bad_csr(world: World) -> None:
    client = world.accounts()
    other = world.accounts(other=True)
    order = ready_order(world, client, "keys.example.test")
    before = world.books()
    for key in (client.key, other.key):
        got = client.post(order["doc"]["finalize"], {"csr": b64(csr_der(["keys.example.test"], key))})
        assert got[0] == 400 and problem(*got) == "badCSR" and "11.1" in got[2]["detail"], got
    assert client.post(order["url"], None)[2]["status"] == "ready"
    assert world.books() == before
    status, _h, done = client.post(order["doc"]["finalize"], {"csr": b64(csr_der(["keys.example.test"]))})
    assert status == 200 and done["status"] == "valid", done


# ---------------------------------------------------------------- ownership

def test_another_account_reaches_nothing_of_an_order(world: World) -> None:
    owner = world.accounts()
    # a stranger under another twcactl account, and a sibling under the same one (another EAB key)
    strangers = [world.accounts(other=True), world.accounts()]
    status, headers, doc = owner.new_order("own.example.test")
    assert status == 201
    order_url = headers["location"]
    authz_url = doc["authorizations"][0]
    _s, _h, authz = owner.post(authz_url, None)
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    # the stranger's key authorization is served too: without the ownership check its answer would validate
    for s in strangers:
        world.web.tokens[chall["token"]] = f"{chall['token']}.{s.thumbprint}"
    before = world.books()

    def refused(got: tuple[int, dict[str, str], Any]) -> None:
        assert got[0] in (403, 404), got
        problem(*got)

    for s in strangers:
        refused(s.post(order_url, None))  # POST-as-GET of the order
        refused(s.post(authz_url, None))
        refused(s.post(authz_url, {"status": "deactivated"}))
        refused(s.post(chall["url"], {}))
        refused(s.post(owner.kid or "", None))  # the owner's account object
    _s, _h, authz = owner.post(authz_url, None)
    assert authz["status"] == "pending" and all(c["status"] == "pending" for c in authz["challenges"]), authz

    world.web.tokens[chall["token"]] = f"{chall['token']}.{owner.thumbprint}"
    status, done = answered(owner, chall["url"])
    assert status == 200 and done["status"] == "valid", done
    assert owner.post(order_url, None)[2]["status"] == "ready"
    for s in strangers:
        refused(s.post(doc["finalize"], {"csr": b64(csr_der(["own.example.test"]))}))
    assert owner.post(order_url, None)[2]["status"] == "ready"
    assert world.books() == before

    status, _h, done = owner.post(doc["finalize"], {"csr": b64(csr_der(["own.example.test"]))})
    assert status == 200 and done["status"] == "valid"
    after_issue = world.books()
    for s in strangers:
        refused(s.post(done["certificate"], None))
        refused(s.post(authz_url, {"status": "deactivated"}))
    assert owner.post(authz_url, None)[2]["status"] == "valid"
    status, _h, pem = owner.post(done["certificate"], None)
    assert status == 200
    cert = x509.load_pem_x509_certificates(pem)[0]
    # revocation by an account of another twcactl account: refused, the certificate stays valid
    der = b64(cert.public_bytes(serialization.Encoding.DER))
    refused(strangers[0].post(strangers[0].dir["revokeCert"], {"certificate": der, "reason": 4}))
    assert world.books() == after_issue
    serial = format(cert.serial_number, "x")
    assert world.served.cli("cert", "show", serial)["certificate"]["status"] == "valid"
    status, _h, _b = owner.post(owner.dir["revokeCert"], {"certificate": der, "reason": 4})
    assert status == 200
    assert world.served.cli("cert", "show", serial)["certificate"]["status"] == "revoked"


# ---------------------------------------------------------------- a renewal order that failed

def _cert_id(cert: x509.Certificate) -> str:
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki is not None
    serial = cert.serial_number
    return f"{b64(aki)}.{b64(serial.to_bytes((serial.bit_length() + 8) // 8, 'big'))}"


def test_a_failed_replacing_order_no_longer_blocks_the_renewal(world: World) -> None:
    client = world.accounts()
    _order, cert = issued(world, client, "renew.example.test")
    cert_id = _cert_id(cert)
    status, _h, first = client.new_order("renew.example.test", replaces=cert_id)
    assert status == 201 and first["replaces"] == cert_id
    got = client.new_order("renew.example.test", replaces=cert_id)
    assert got[0] == 409 and problem(*got) == "alreadyReplaced", got
    # the first renewal's challenge fails (nothing answers its token): it is invalid, and no longer blocks
    _s, _h, authz = client.post(first["authorizations"][0], None)
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    status, failed = answered(client, chall["url"])
    assert status == 200 and failed["status"] == "invalid", failed
    done, renewed = issued(world, client, "renew.example.test", replaces=cert_id)
    assert done["doc"]["replaces"] == cert_id
    assert world.served.cli("cert", "show", format(cert.serial_number, "x"))["certificate"]["renewed_by"] == \
        format(renewed.serial_number, "x")


# ---------------------------------------------------------------- leniency, profiles

def test_a_caddy_new_order_with_extra_members_is_read(world: World, alice: Acme) -> None:
    # Caddy 2.6.2 (acmez) posts its whole order object, unset members as empty strings or Go's zero time
    status, _h, doc = alice.post(alice.dir["newOrder"], {
        "status": "", "expires": "0001-01-01T00:00:00Z", "identifiers": [{"type": "dns", "value": "c.example.test"}],
        "notBefore": "0001-01-01T00:00:00Z", "notAfter": "", "authorizations": None, "finalize": "",
        "certificate": "", "replaces": "", "profile": "", "error": None, "x-unknown": {"a": [1]}})
    assert status == 201, doc
    assert doc["status"] == "pending" and doc["profile"] == "tlsserver"


def _has_revocation_urls(cert: x509.Certificate) -> tuple[bool, bool]:
    try:
        cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        crl = True
    except x509.ExtensionNotFound:
        crl = False
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        ocsp_url = any(d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP for d in aia)
    except x509.ExtensionNotFound:
        ocsp_url = False
    return crl, ocsp_url


def test_profiles_in_the_directory_and_orders(world: World, alice: Acme) -> None:
    profiles = alice.dir["meta"]["profiles"]
    assert set(profiles) >= {"tlsserver", "shortlived"} and all(isinstance(v, str) and v for v in profiles.values())
    short, short_cert = issued(world, alice, "short.example.test", profile="shortlived")
    assert short["doc"]["profile"] == "shortlived"
    lifetime = short_cert.not_valid_after_utc - short_cert.not_valid_before_utc
    assert dt.timedelta(days=1) < lifetime <= dt.timedelta(days=7)
    assert _has_revocation_urls(short_cert) == (False, False)
    default, default_cert = issued(world, alice, "long.example.test", profile="tlsserver")
    assert default["doc"]["profile"] == "tlsserver"
    assert default_cert.not_valid_after_utc - default_cert.not_valid_before_utc > dt.timedelta(days=360)
    assert _has_revocation_urls(default_cert) == (True, True)


# ---------------------------------------------------------------- --acme-eab optional

def test_eab_optional_mode_binds_accounts_to_the_default_account(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "Example Ltd", "--domain", DOMAIN, "--quota", "5").code == 0
    # the option pair is checked before anything starts
    bad = home.run("serve", "--acme-eab", "optional")
    assert bad.code == 2 and "--acme-default-account" in bad.stderr
    log = tmp_path / "serve.log"
    proc, port, http_port, http01_port = start_server(
        home, log, extra_args=("--acme-eab", "optional", "--acme-default-account", ACCOUNT))
    served = Served(home=home, port=port, http_port=http_port, http01_port=http01_port, proc=proc, log=log)
    web = ChallengeServer(http01_port)
    try:
        world = World(served=served, web=web, tmp=tmp_path)
        client = Acme(served)
        assert client.dir["meta"]["externalAccountRequired"] is False
        account = client.register()
        assert account["twcactlAccount"] == ACCOUNT
        _order, cert = issued(world, client, "noeab.example.test")
        shown = served.cli("account", "show", ACCOUNT)
        assert shown["balance"] == 4
        assert shown["ledger"][0]["operator"].startswith("acme:noeab-")
        assert shown["ledger"][0]["serial"] == format(cert.serial_number, "x")
        # outside the default account's agreed domains: refused as for any account of it
        got = client.new_order("www.elsewhere.test")
        assert got[0] == 400 and problem(*got) == "rejectedIdentifier"
        # EAB still works beside it
        kid, hmac = eab(served)
        assert Acme(served).register(kid, hmac)["externalAccountBinding"]["kid"] == kid
        assert served.home.run("--json", "ca", "check").json()["ok"] is True
    finally:
        web.close()
        assert served.stop() == 0, log.read_text()[-2000:]
    # an unknown default account: refused at start
    out = home.run("serve", "--listen", "127.0.0.1:0", "--acme-eab", "optional", "--acme-default-account", "nosuch")
    assert out.code == 5, out.stderr


# ---------------------------------------------------------------- odd payloads on every JWS endpoint

ODD_PAYLOADS: list[Any] = [[], "x", 5, True, {"status": 5}, {"status": ["deactivated"]}, {"status": "valid"},
                           {"csr": 5}, {"csr": "!!"}, {"csr": b64(b"not a csr")}, {"certificate": 5},
                           {"certificate": b64(b"not a cert")}, {"certificate": b64(b"x"), "reason": "4"},
                           {"contact": "mailto:x"}, {"contact": [5]}, {"oldKey": 5, "account": []},
                           {"protected": 5, "payload": "", "signature": ""}]


def test_odd_payloads_on_every_endpoint_are_never_a_server_error(world: World) -> None:
    client = world.accounts()
    status, headers, doc = client.new_order("odd.example.test")
    assert status == 201
    _s, _h, authz = client.post(doc["authorizations"][0], None)
    urls = [client.kid or "", headers["location"], doc["finalize"], doc["authorizations"][0],
            authz["challenges"][0]["url"], client.dir["revokeCert"], client.dir["keyChange"], client.dir["newOrder"]]
    for url in urls:
        for payload in ODD_PAYLOADS:
            got = client.post(url, payload)
            assert got[0] < 500, (url, payload, got)
            if got[0] >= 400:
                problem(*got)
    assert client.post(client.kid or "", None)[2]["status"] == "valid"  # nothing deactivated the account


def test_an_order_is_invalid_once_expired_or_an_authorization_failed() -> None:
    from twcactl.authority.acme import _current_status
    from twcactl.store.acme import AcmeAuthz, AcmeOrder

    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

    def order(status: str, expires: dt.datetime) -> AcmeOrder:
        return AcmeOrder(id="o", acme_account="a", status=status, identifiers=("a.example.test",), expires=expires,
                         replaces="01", serial=None, error=None)

    def authz(status: str) -> AcmeAuthz:
        return AcmeAuthz(id="z", order_id="o", acme_account="a", identifier="a.example.test", status=status,
                         expires=now, wildcard=False)

    later, earlier = now + dt.timedelta(days=1), now - dt.timedelta(seconds=1)
    assert _current_status(order("pending", later), [authz("pending")], now) == "pending"
    assert _current_status(order("pending", later), [authz("valid")], now) == "ready"
    assert _current_status(order("pending", later), [authz("invalid")], now) == "invalid"
    assert _current_status(order("pending", earlier), [authz("pending")], now) == "invalid"
    assert _current_status(order("ready", earlier), [authz("valid")], now) == "invalid"
    assert _current_status(order("ready", later), [authz("valid")], now) == "ready"
    for final in ("processing", "valid", "invalid"):
        assert _current_status(order(final, earlier), [authz("valid")], now) == final


@pytest.mark.parametrize("store_engine", ["postgresql"], indirect=True)
def test_an_order_keeps_its_profile_on_postgresql(store_engine: str, tmp_path: Path) -> None:
    """The order's profile column (schema version 6) on the PostgreSQL engine: a shortlived order there."""
    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "Example Ltd", "--domain", DOMAIN, "--quota", "5").code == 0
    log = tmp_path / "serve.log"
    proc, port, http_port, http01_port = start_server(home, log)
    served = Served(home=home, port=port, http_port=http_port, http01_port=http01_port, proc=proc, log=log)
    web = ChallengeServer(http01_port)
    try:
        world = World(served=served, web=web, tmp=tmp_path)
        client = Acme(served)
        client.register(*eab(served))
        order, cert = issued(world, client, "pg.example.test", profile="shortlived")
        assert client.post(order["url"], None)[2]["profile"] == "shortlived"
        assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=7)
        got = client.new_order("pg.example.test", profile="nosuch")
        assert got[0] == 400 and problem(*got) == "invalidProfile"
    finally:
        web.close()
        assert served.stop() == 0, log.read_text()[-2000:]
