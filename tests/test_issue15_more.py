"""Issue 15, the rest of ``twcactl serve``: ACME renewal with ``replaces`` and renewalInfo (RFC 9773), a blocked
key and an oversized order refused with the rule IDs, two servers over one home and a SIGTERM that loses no order,
the delegated OCSP signing certificate (checked by ``openssl ocsp``), dns-01 against a DNS server in the test, and
a critical SAN extension for an empty subject (RFC 5280 §4.2.1.6).

The ACME client is the ``acme`` package's ``ClientV2`` (certbot 5.8 and lego 4.9 send no ``replaces``); every
test ends with ``ca check --json`` exit 0 (every certificate the server issued is logged with its record).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import josepy as jose
import pytest
from acme import client as acme_client
from acme import jws as acme_jws
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import ACCOUNT, CA_PASSPHRASE, make_ca, require
from tests.serve_support import LoopbackDns, Served, TokenServer, eab, start_server

DOMAIN = "twca.com.tw"


# ---------------------------------------------------------------- the outside world: http-01 and DNS

class ChallengeServer(TokenServer):
    """An http-01 responder on the port the server validates at; ``delay`` holds each answer (seconds)."""

    def __init__(self, port: int) -> None:
        self.tokens: dict[str, str] = {}
        self.delay = 0.0
        super().__init__(port)

    def body_for(self, token: str) -> bytes:
        time.sleep(self.delay)
        return self.tokens.get(token, "").encode()


class DnsServer(LoopbackDns):
    """Answers TXT queries from ``txt`` (NXDOMAIN otherwise)."""

    def __init__(self) -> None:
        self.txt: dict[str, str] = {}
        super().__init__()

    def answer(self, question: Any, name: str, response: Any) -> None:
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        if question.rdtype == dns.rdatatype.TXT and name in self.txt:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", f'"{self.txt[name]}"'))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)


@dataclass
class World:
    """A served home with its http-01 responder and DNS server."""

    served: Served
    web: ChallengeServer
    dns: DnsServer
    tmp: Path
    more: list[Any] = field(default_factory=list)

    def ca_check(self) -> None:
        out = self.served.home.run("--json", "ca", "check")
        assert out.code == 0, out.stdout + out.stderr
        assert out.json()["ok"] is True, out.stdout


def _start(tmp_path: Path, *, quota: int = 10, extra: tuple[str, ...] = ()) -> World:
    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", DOMAIN, "--quota", str(quota)).code == 0
    dns_server = DnsServer()
    log = tmp_path / "serve.log"
    proc, port, http_port, http01_port = start_server(
        home, log, extra_args=("--acme-dns-resolver", f"127.0.0.1:{dns_server.port}", *extra))
    served = Served(home=home, port=port, http_port=http_port, http01_port=http01_port, proc=proc, log=log)
    return World(served=served, web=ChallengeServer(http01_port), dns=dns_server, tmp=tmp_path)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    built = _start(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(built.served.root))
    try:
        yield built
    finally:
        built.web.close()
        built.dns.close()
        assert built.served.stop() == 0, built.served.log.read_text()[-2000:]


# ---------------------------------------------------------------- an ACME client from the acme package

class ReplacingOrder(messages.NewOrder):
    """newOrder with RFC 9773 §5 ``replaces`` (acme 5.9's ``NewOrder`` has no such field)."""

    replaces: str = jose.field("replaces", omitempty=True)


def register(world: World) -> acme_client.ClientV2:
    """A ClientV2 registered with a fresh EAB key (RFC 8555 §7.3.4) of the test account."""
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = acme_client.ClientNetwork(key, alg=jose.ES256, user_agent="twcactl-test")
    directory = acme_client.ClientV2.get_directory(world.served.directory, net)
    client = acme_client.ClientV2(directory, net)
    kid, hmac = eab(world.served)
    binding = messages.ExternalAccountBinding.from_data(key.public_key(), kid, hmac, directory)
    client.new_account(messages.NewRegistration.from_data(email=f"ops@{DOMAIN}", terms_of_service_agreed=True,
                                                          external_account_binding=binding))
    return client


def make_csr(names: list[str], key: ec.EllipticCurvePrivateKey | None = None
             ) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A certbot-like CSR: an empty subject, the names as DNS SANs."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM), key


def order(client: acme_client.ClientV2, csr_pem: bytes, *, replaces: str | None = None) -> messages.OrderResource:
    """newOrder for the CSR's names, with ``replaces`` when given (ClientV2.new_order otherwise)."""
    if replaces is None:
        return client.new_order(csr_pem)
    csr = x509.load_pem_x509_csr(csr_pem)
    names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    payload = ReplacingOrder(identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names],
                             replaces=replaces)
    response = client._post(client.directory["newOrder"], payload)
    body = messages.Order.from_json(response.json())
    authzs = [client._authzr_from_response(client._post_as_get(url), uri=url) for url in body.authorizations]
    return messages.OrderResource(body=body, uri=response.headers.get("Location"), authorizations=authzs,
                                  csr_pem=csr_pem)


def validate(world: World, client: acme_client.ClientV2, orderr: messages.OrderResource,
             kind: str = "http-01") -> None:
    """Answer each authorization's challenge of ``kind`` (http-01 through the responder, dns-01 through the
    DNS server) and wait until the server's validations (off the request, issue 24) have ended."""
    for authzr in orderr.authorizations:
        challb = next(c for c in authzr.body.challenges if c.chall.typ == kind)
        response, validation = challb.response_and_validation(client.net.key)
        if kind == "http-01":
            world.web.tokens[challb.chall.encode("token")] = validation
        else:
            world.dns.txt[f"_acme-challenge.{authzr.body.identifier.value}"] = validation
        client.answer_challenge(challb, response)
    for authzr in orderr.authorizations:
        for _ in range(100):
            authzr, _response = client.poll(authzr)
            if authzr.body.status != messages.STATUS_PENDING:
                break
            time.sleep(0.1)


def finalize(client: acme_client.ClientV2, orderr: messages.OrderResource) -> x509.Certificate:
    """Finalize (the server issues while the request waits) and download the chain; the leaf."""
    orderr = client.begin_finalization(orderr)
    assert orderr.body.status == messages.STATUS_VALID, orderr.body
    chain = client._post_as_get(orderr.body.certificate).text
    return x509.load_pem_x509_certificates(chain.encode())[0]


def issue(world: World, client: acme_client.ClientV2, names: list[str], *, replaces: str | None = None,
          key: ec.EllipticCurvePrivateKey | None = None, kind: str = "http-01") -> tuple[x509.Certificate, Any]:
    csr_pem, key = make_csr(names, key)
    orderr = order(client, csr_pem, replaces=replaces)
    validate(world, client, orderr, kind)
    return finalize(client, orderr), key


def raw_post(client: acme_client.ClientV2, url: str, obj: Any) -> tuple[int, dict[str, Any]]:
    """POST a JWS through the client's own signing but without its error handling: (status, JSON body), so
    that the problem document's ``rule`` (which ``acme.messages.Error`` drops) can be read."""
    net = client.net
    data = net._wrap_in_jws(obj, net._get_nonce(url, client.directory["newNonce"]), url)
    response = net._send_request("POST", url, data=data, headers={"Content-Type": "application/jose+json"})
    net._add_nonce(response)
    return response.status_code, response.json()


def ari_id(cert: x509.Certificate) -> str:
    """RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial DER content octets), built here
    independently of the server."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki is not None
    serial = cert.serial_number
    return f"{b64(aki)}.{b64(serial.to_bytes((serial.bit_length() + 8) // 8, 'big', signed=True))}"


def serial_of(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


# ---------------------------------------------------------------- 1. renewal with replaces, renewalInfo

def test_replaces_renews_under_the_cli_rules_and_renewal_info(world: World) -> None:
    served = world.served
    client = register(world)
    names = [f"www.{DOMAIN}", f"api.{DOMAIN}"]
    first, key = issue(world, client, names)
    balance0 = served.cli("account", "show", ACCOUNT)["balance"]

    # GET renewalInfo: the suggested window lies in the CA's renewal window before notAfter
    status, headers, body = served.get(f"{client.directory['renewalInfo']}/{ari_id(first)}")
    assert status == 200 and int(headers["retry-after"]) > 0
    info = messages.RenewalInfo.from_json(json.loads(body))
    window_days = served.cli("ca", "config")
    days = window_days.get("renewal_window_days") or window_days.get("settings", {}).get("renewal_window_days")
    days = int(days["value"] if isinstance(days, dict) else days)
    not_after = first.not_valid_after_utc
    start, end = info.suggested_window.start, info.suggested_window.end
    assert not_after - dt.timedelta(days=days) <= start < end < not_after
    assert abs((start - (not_after - dt.timedelta(days=days))).total_seconds()) < 5
    # the client library computes the same path and accepts the answer
    when, _retry = client.renewal_time(first.public_bytes(serialization.Encoding.PEM))
    assert when is not None and start <= when <= end
    # an ID naming another issuer's key identifier, a malformed ID: refused
    other = "AAAA." + ari_id(first).split(".")[1]
    assert served.get(f"{client.directory['renewalInfo']}/{other}")[0] == 404
    assert served.get(f"{client.directory['renewalInfo']}/not-an-id")[0] == 400

    # newOrder with replaces: a renewal (validity carried forward from the old notAfter, charged once)
    second, _key = issue(world, client, names, replaces=ari_id(first))
    assert set(second.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
               .get_values_for_type(x509.DNSName)) == set(names)
    carried = second.not_valid_after_utc - not_after
    assert dt.timedelta(days=364) <= carried <= dt.timedelta(days=367)
    assert served.cli("account", "show", ACCOUNT)["balance"] == balance0 - 1
    old = served.cli("cert", "show", serial_of(first))
    renewed_by = old["renewed_by"]
    assert renewed_by == serial_of(second) or renewed_by == [serial_of(second)] or \
        serial_of(second) in [r if isinstance(r, str) else r.get("serial") for r in renewed_by]
    assert old["certificate"]["status"] == "renewed"
    new = served.cli("cert", "show", serial_of(second))
    assert new["renewed_from"] == serial_of(first) and new["certificate"]["status"] == "valid"

    # the replaced certificate is renewed once: a second replaces is refused, nothing charged
    csr_pem, _k = make_csr(names)
    ids = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names]
    status, doc = raw_post(client, client.directory["newOrder"], ReplacingOrder(identifiers=ids,
                                                                                 replaces=ari_id(first)))
    assert status in (400, 409) and doc["type"].startswith("urn:ietf:params:acme:error:"), doc
    assert served.cli("account", "show", ACCOUNT)["balance"] == balance0 - 1
    world.ca_check()


# ---------------------------------------------------------------- 2. blocked key, 101 SANs

def test_blocked_key_and_too_many_sans_are_refused_with_rule_ids(world: World) -> None:
    served = world.served
    client = register(world)
    first, key = issue(world, client, [f"www.{DOMAIN}"])
    assert served.home.run("cert", "revoke", serial_of(first), "--reason", "keyCompromise").code == 0
    balance = served.cli("account", "show", ACCOUNT)["balance"]
    count = len(served.cli("cert", "list")["certificates"])

    csr_pem, _key = make_csr([f"mail.{DOMAIN}"], key)  # the compromised key again
    orderr = order(client, csr_pem)
    validate(world, client, orderr)
    csr_der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    status, doc = raw_post(client, orderr.body.finalize, messages.CertificateRequest(
        csr=x509.load_der_x509_csr(csr_der)))
    assert status == 400 and doc["type"] == "urn:ietf:params:acme:error:badCSR" and doc["rule"] == "key.blocked", doc
    status, doc = raw_post(client, orderr.uri, None)
    assert doc["status"] == "invalid" and doc["error"]["rule"] == "key.blocked"

    # 101 SANs: refused at newOrder, before any authorization is made
    many = [f"h{i}.{DOMAIN}" for i in range(101)]
    payload = messages.NewOrder(identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n)
                                             for n in many])
    status, doc = raw_post(client, client.directory["newOrder"], payload)
    assert status == 400 and doc["type"].endswith(":rejectedIdentifier") and doc["rule"] == "san.count", doc
    # 100 are accepted (the order is made; not validated here)
    payload = messages.NewOrder(identifiers=payload.identifiers[:100])
    status, doc = raw_post(client, client.directory["newOrder"], payload)
    assert status == 201 and len(doc["authorizations"]) == 100
    assert served.cli("account", "show", ACCOUNT)["balance"] == balance
    assert len(served.cli("cert", "list")["certificates"]) == count
    world.ca_check()


# ---------------------------------------------------------------- 3. two servers, SIGTERM

class Raw:
    """A raw JWS client whose every request goes to the server base it is given (the account and order IDs are
    the same on every server over one home; only the scheme://host:port differs)."""

    def __init__(self, served: Served) -> None:
        self.s = served
        self.key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        self.account: str | None = None

    def nonce(self, base: str) -> str:
        return self.s.get(f"{base}/acme/new-nonce", method="HEAD")[1]["replay-nonce"]

    def post(self, base: str, path: str, payload: Any, *, nonce: str | None = None) -> tuple[int, dict[str, str],
                                                                                             Any]:
        url = f"{base}{path}"
        data = b"" if payload is None else json.dumps(payload).encode()
        kid = f"{base}/acme/acct/{self.account}" if self.account else None
        signed = acme_jws.JWS.sign(data, key=self.key, alg=jose.ES256,
                                   nonce=jose.decode_b64jose(nonce or self.nonce(base)), url=url, kid=kid)
        status, headers, body = self.s.get(url, data=signed.json_dumps().encode(),
                                           headers={"Content-Type": "application/jose+json"})
        return status, headers, json.loads(body) if "json" in headers.get("content-type", "") else body

    def register(self, base: str) -> None:
        kid, hmac = eab(self.s)
        directory = messages.Directory.from_json(json.loads(self.s.get(f"{base}/acme/directory")[2]))
        binding = messages.ExternalAccountBinding.from_data(self.key.public_key(), kid, hmac, directory)
        status, headers, _body = self.post(base, "/acme/new-account", {"termsOfServiceAgreed": True,
                                                                       "externalAccountBinding": binding})
        assert status == 201
        self.account = headers["location"].rsplit("/", 1)[1]


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_two_servers_share_nonces_and_orders_and_sigterm_loses_no_order(world: World) -> None:
    served = world.served
    proc_b, port_b, _http_b, _h01 = start_server(served.home, world.tmp / "serve-b.log",
                                                 http01_port=served.http01_port,
                                                 extra_args=("--acme-dns-resolver", f"127.0.0.1:{world.dns.port}"))
    served.extra.append(proc_b)
    a, b = f"https://127.0.0.1:{served.port}", f"https://127.0.0.1:{port_b}"
    raw = Raw(served)
    raw.register(a)
    ident = {"identifiers": [{"type": "dns", "value": f"www.{DOMAIN}"}]}

    # a nonce from A is good once at B, and then at neither
    nonce = raw.nonce(a)
    status, headers, created = raw.post(b, "/acme/new-order", ident, nonce=nonce)
    assert status == 201, created
    order_path = _path(headers["location"])
    assert raw.post(a, "/acme/new-order", ident, nonce=nonce)[2]["type"].endswith(":badNonce")
    assert raw.post(b, "/acme/new-order", ident, nonce=nonce)[2]["type"].endswith(":badNonce")

    # the order made at B is answered at A; its challenge answered at A, alternately
    status, _h, seen = raw.post(a, order_path, None)
    assert status == 200 and seen["status"] == "pending" and seen["identifiers"] == created["identifiers"]
    status, _h, authz = raw.post(b, _path(seen["authorizations"][0]), None)
    challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
    world.web.tokens[challenge["token"]] = f"{challenge['token']}.{_thumb(raw.key)}"
    status, _h, answered = raw.post(a, _path(challenge["url"]), {})
    assert status == 200 and answered["status"] in ("processing", "valid"), answered
    assert _settled(raw, b, _path(challenge["url"]))["status"] == "valid"  # validated off the request (issue 24)
    # finalize at B, download at A
    csr_pem, _key = make_csr([f"www.{DOMAIN}"])
    csr_b64 = base64.urlsafe_b64encode(x509.load_pem_x509_csr(csr_pem).public_bytes(
        serialization.Encoding.DER)).rstrip(b"=").decode()
    status, _h, done = raw.post(b, _path(created["finalize"]), {"csr": csr_b64})
    assert status == 200 and done["status"] == "valid", done
    status, _h, pem = raw.post(a, _path(done["certificate"]), None)
    assert status == 200 and b"BEGIN CERTIFICATE" in pem

    # SIGTERM to A while a challenge request is in flight: the request completes, A exits 0, the order survives
    status, headers, second = raw.post(a, "/acme/new-order", {"identifiers": [{"type": "dns",
                                                                              "value": f"api.{DOMAIN}"}]})
    second_path = _path(headers["location"])
    authz = raw.post(a, _path(second["authorizations"][0]), None)[2]
    challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
    world.web.tokens[challenge["token"]] = f"{challenge['token']}.{_thumb(raw.key)}"
    world.web.delay = 1.5
    result: dict[str, Any] = {}
    nonce = raw.nonce(a)

    def answer() -> None:
        result["response"] = raw.post(a, _path(challenge["url"]), {}, nonce=nonce)
        result["done"] = time.monotonic()

    thread = threading.Thread(target=answer)
    thread.start()
    time.sleep(0.7)  # the POST has started the validation, which waits 1.5 s for the responder
    served.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    thread.join(timeout=30)
    assert served.proc.wait(timeout=20) == 0
    assert time.monotonic() - signalled > 0.3  # it let the validation in flight end before it exited
    world.web.delay = 0.0
    status, _h, answered = result["response"]
    assert status == 200 and answered["status"] in ("processing", "valid"), answered  # the request was in flight when the signal came
    # restart A (new ports) over the same home: the order is there, ready, and finalizes
    proc_a2, port_a2, _h2, _h012 = start_server(served.home, world.tmp / "serve-a2.log",
                                                http01_port=served.http01_port)
    served.extra.append(proc_a2)
    a2 = f"https://127.0.0.1:{port_a2}"
    status, _h, again = raw.post(a2, second_path, None)
    assert status == 200 and again["status"] == "ready"
    csr_pem, _key = make_csr([f"api.{DOMAIN}"])
    csr_b64 = base64.urlsafe_b64encode(x509.load_pem_x509_csr(csr_pem).public_bytes(
        serialization.Encoding.DER)).rstrip(b"=").decode()
    status, _h, done = raw.post(a2, _path(again["finalize"]), {"csr": csr_b64})
    assert status == 200 and done["status"] == "valid", done
    assert served.cli("account", "show", ACCOUNT)["balance"] == 8
    world.ca_check()


def _settled(raw: Raw, base: str, challenge_path: str) -> Any:
    """The challenge once its validation ended (a challenge POST starts it: RFC 8555 §7.5.1, issue 24)."""
    for _ in range(100):
        status, _h, doc = raw.post(base, challenge_path, None)
        if doc["status"] not in ("pending", "processing"):
            return doc
        time.sleep(0.2)
    raise AssertionError(f"the challenge is still {doc['status']}")


def _thumb(key: jose.JWK) -> str:
    return base64.urlsafe_b64encode(key.thumbprint()).rstrip(b"=").decode()


# ---------------------------------------------------------------- 4. the delegated OCSP signing certificate

def _openssl_ocsp(world: World, cert_pem: Path, *extra: str) -> tuple[str, str]:
    served = world.served
    bundle = world.tmp / "bundle.pem"
    bundle.write_bytes(served.root.read_bytes() + (served.home.path / "ca" / "uca.cer").read_bytes())
    out = subprocess.run([require("openssl"), "ocsp", "-issuer", str(served.home.path / "ca" / "uca.cer"),
                          "-cert", str(cert_pem), "-url", f"{served.http}/ocsp", "-CAfile", str(bundle),
                          "-respout", str(world.tmp / "resp.der"), *extra],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.split(": ", 1)[1].split()[0], out.stderr


def test_ocsp_is_signed_by_a_delegated_responder_openssl_verifies(world: World) -> None:
    served = world.served
    client = register(world)
    leaf, _key = issue(world, client, [f"www.{DOMAIN}"])
    pem = world.tmp / "leaf.pem"
    pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    status, err = _openssl_ocsp(world, pem)
    assert status == "good" and "Response verify OK" in err
    response = ocsp.load_der_ocsp_response((world.tmp / "resp.der").read_bytes())
    uca = x509.load_pem_x509_certificate((served.home.path / "ca" / "uca.cer").read_bytes())
    assert len(response.certificates) == 1
    delegate = response.certificates[0]
    assert delegate.issuer == uca.subject and delegate.subject != uca.subject
    assert delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.OCSP_SIGNING])
    assert delegate.extensions.get_extension_for_class(x509.OCSPNoCheck) is not None
    assert delegate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert response.responder_key_hash == delegate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    delegate.public_key().verify(response.signature, response.tbs_response_bytes,  # type: ignore[call-arg, union-attr]
                                 ec.ECDSA(response.signature_hash_algorithm))  # type: ignore[arg-type]
    uca.public_key().verify(delegate.signature, delegate.tbs_certificate_bytes,  # type: ignore[call-arg, union-attr]
                            *_verify_args(uca, delegate))
    # recorded and logged like the server's TLS certificate: cost 0, no account, and it answers good itself
    shown = served.cli("cert", "show", serial_of(delegate))
    assert shown["certificate"]["account"] is None and shown["certificate"]["profile"] == "ocsp"
    assert shown["history"][0]["action"] == "cert.issue"
    assert shown["history"][0]["details"]["internal"] == "ocsp" and shown["history"][0]["details"]["cost"] == 0
    # revoked after cert revoke through the CLI, still verified through the delegate
    assert served.home.run("cert", "revoke", serial_of(leaf), "--reason", "keyCompromise").code == 0
    status, err = _openssl_ocsp(world, pem)
    assert status == "revoked" and "Response verify OK" in err
    # a restart reuses the fresh delegate (no second issuance)
    before = len(served.cli("cert", "list")["certificates"])
    proc, _port, http_port, _h01 = start_server(served.home, world.tmp / "serve-2.log")
    served.extra.append(proc)
    assert len(served.cli("cert", "list")["certificates"]) == before
    world.ca_check()


def _verify_args(issuer: x509.Certificate, cert: x509.Certificate) -> tuple[Any, ...]:
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    if isinstance(issuer.public_key(), rsa.RSAPublicKey):
        return (padding.PKCS1v15(), cert.signature_hash_algorithm)
    return (ec.ECDSA(cert.signature_hash_algorithm),)  # type: ignore[arg-type]


def test_ocsp_signer_ca_keeps_the_ca_key(tmp_path: Path) -> None:
    built = _start(tmp_path, extra=("--ocsp-signer", "ca"))
    try:
        leaf = built.tmp / "leaf.pem"
        # a certificate of this CA: the server's own TLS certificate (first in serve/tls.cer)
        leaf.write_bytes(x509.load_pem_x509_certificates((built.served.home.path / "serve" / "tls.cer")
                                                         .read_bytes())[0].public_bytes(serialization.Encoding.PEM))
        status, err = _openssl_ocsp(built, leaf)
        assert status == "good" and "Response verify OK" in err
        response = ocsp.load_der_ocsp_response((built.tmp / "resp.der").read_bytes())
        uca = x509.load_pem_x509_certificate((built.served.home.path / "ca" / "uca.cer").read_bytes())
        assert response.certificates == [] and response.responder_key_hash == uca.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest
        assert not (built.served.home.path / "serve" / "ocsp-uca.cer").exists()
        built.ca_check()
    finally:
        built.web.close()
        built.dns.close()
        assert built.served.stop() == 0


# ---------------------------------------------------------------- 5. dns-01

def test_dns01_through_the_configured_resolver(world: World) -> None:
    client = register(world)
    leaf, _key = issue(world, client, [f"*.{DOMAIN}", f"www.{DOMAIN}"], kind="dns-01")
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert set(names) == {f"*.{DOMAIN}", f"www.{DOMAIN}"} and world.dns.queries >= 2
    # a wrong TXT value: the challenge and its order become invalid
    csr_pem, _k = make_csr([f"api.{DOMAIN}"])
    orderr = order(client, csr_pem)
    challb = next(c for c in orderr.authorizations[0].body.challenges if c.chall.typ == "dns-01")
    world.dns.txt[f"_acme-challenge.api.{DOMAIN}"] = "not-the-value"
    response, _validation = challb.response_and_validation(client.net.key)
    client.answer_challenge(challb, response)
    authzr, _ = client.poll(orderr.authorizations[0])
    for _ in range(100):  # validated off the request (issue 24): poll until it ends
        if authzr.body.status != messages.STATUS_PENDING:
            break
        time.sleep(0.2)
        authzr, _ = client.poll(authzr)
    answered = next(c for c in authzr.body.challenges if c.chall.typ == "dns-01")
    assert answered.status == messages.STATUS_INVALID
    assert answered.error is not None and answered.error.typ.endswith(":dns")
    world.ca_check()


# ---------------------------------------------------------------- 6. RFC 5280: a critical SAN for an empty subject

def test_empty_subject_makes_the_san_critical(world: World) -> None:
    client = register(world)
    leaf, _key = issue(world, client, [f"www.{DOMAIN}"])
    assert len(leaf.subject) == 0
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical is True
    # a CSR with a subject: the SAN stays non-critical
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"api.{DOMAIN}")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"api.{DOMAIN}")]), critical=False)
           .sign(key, hashes.SHA256()))
    orderr = order(client, csr.public_bytes(serialization.Encoding.PEM))
    validate(world, client, orderr)
    named = finalize(client, orderr)
    assert len(named.subject) == 1
    assert named.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical is False
    out = subprocess.run([require("openssl"), "x509", "-noout", "-ext", "subjectAltName"],
                         input=leaf.public_bytes(serialization.Encoding.PEM), capture_output=True)
    assert out.returncode == 0 and b"critical" in out.stdout
    world.ca_check()


def test_the_delegated_responder_is_kept_fresh(tmp_path: Path) -> None:
    """In process: a delegate with a third of its life left is replaced on the next response; a revoked one
    is not reused at the next start; each replacement is recorded and ``ca check`` stays clean."""
    from twcactl.authority import responder
    from twcactl.store import Store

    home = make_ca(tmp_path / "ca")
    store = Store.open(home.path)
    try:
        signers = responder.Signers.unlock(store, lambda: CA_PASSPHRASE, signer="delegated", operator="alice")
        first, first_key = signers.delegated["uca"]
        assert signers.responder_for(store, "uca") == (first, first_key)  # fresh: the same one
        # age it: a certificate of the same key with 9 of its 30 days left
        _rec, uca, uca_key = signers.cas["uca"]
        now = dt.datetime.now(dt.UTC)
        old = (x509.CertificateBuilder().subject_name(first.subject).issuer_name(uca.subject)
               .public_key(first_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=21)).not_valid_after(now + dt.timedelta(days=9))
               .sign(uca_key, hashes.SHA256()))  # type: ignore[arg-type]
        signers.delegated["uca"] = (old, first_key)
        (home.path / "serve" / "ocsp-uca.cer").write_bytes(old.public_bytes(serialization.Encoding.PEM))
        fresh, _key = signers.responder_for(store, "uca") or (None, None)
        assert fresh is not None and fresh.serial_number not in (first.serial_number, old.serial_number)
        assert fresh.not_valid_after_utc - now > dt.timedelta(days=29)
        assert store.certificates.get(format(fresh.serial_number, "x")).state == "valid"
    finally:
        store.close()
    # revoke the current delegate through the CLI: the next start issues another
    assert home.run("cert", "revoke", format(fresh.serial_number, "x"), "--reason", "superseded").code == 0
    store = Store.open(home.path)
    try:
        again = responder.Signers.unlock(store, lambda: CA_PASSPHRASE, signer="delegated", operator="alice")
        assert again.delegated["uca"][0].serial_number != fresh.serial_number
    finally:
        store.close()
    out = home.run("--json", "ca", "check")
    assert out.code == 0 and out.json()["ok"] is True, out.stdout
