"""Issue 15 performance work on ``twcactl serve``, checked for correctness (never for speed).

* The listening sockets turn Nagle's algorithm off on every accepted connection (a keep-alive request waited
  for the client's delayed ACK, about 40 ms, before the fix).
* The OCSP answer cache (``responder.OcspCache``) never hides a change of the record: a revocation committed by
  the CLI after an answer was cached is answered ``revoked`` by the very next request; a request with a nonce
  is never answered from the cache (its nonce is echoed); the answers verify with ``cryptography``.
* The served OCSP path (answered before Starlette's routing) keeps the RFC 5019 headers, answers POST and GET
  over one keep-alive connection, refuses what it refused before (413, 414, malformedRequest), and every
  response carries ``Server-Timing``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import http.client
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.conftest import ACCOUNT, CA_PASSPHRASE, CaHome, make_ca, openssl_csr
from tests.serve_support import Served, serve_home, verified_ocsp
from twcactl.authority import responder
from twcactl.serve.startup import bind
from twcactl.store import Store


def test_listening_socket_gives_connections_without_nagle() -> None:
    sock = bind("127.0.0.1", 0, option="--listen")
    assert sock.proto == socket.IPPROTO_TCP
    seen: list[int] = []

    async def main() -> None:
        accepted = asyncio.Event()

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                seen.append(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                accepted.set()

        server = await asyncio.get_running_loop().create_server(Proto, sock=sock)
        _reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        await asyncio.wait_for(accepted.wait(), 10)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert seen and seen[0] != 0


# ---------------------------------------------------------------- the cache, in-process

def _request(issuer: x509.Certificate, cert: x509.Certificate, *, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.fixture
def issued(tmp_path: Path) -> Iterator[tuple[CaHome, x509.Certificate, x509.Certificate]]:
    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    out = home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="www"), "--account", ACCOUNT,
                   "--out", tmp_path / "www.cer")
    assert out.code == 0, out.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "www.cer").read_bytes())
    issuer = x509.load_pem_x509_certificate((home.path / "ca" / "uca.cer").read_bytes())
    yield home, cert, issuer


def test_cached_answer_never_hides_a_revocation(issued: tuple[CaHome, x509.Certificate, x509.Certificate]) -> None:
    home, cert, issuer = issued
    store = Store.open(home.path)
    try:
        signers = responder.Signers.unlock(store, lambda: CA_PASSPHRASE, signer="delegated", operator="alice")
        signer_cert = signers.delegated["uca"][0]
        request = _request(issuer, cert)
        first = responder.ocsp_answer(store, request, signers)
        second = responder.ocsp_answer(store, request, signers)
        assert first[1] == second[1] == "good"
        assert second[0] == first[0] and second[2] == first[2]  # the same signed answer, thisUpdate unchanged
        assert (signers.cache.hits, signers.cache.misses) == (1, 1)
        assert verified_ocsp(second[0], signer_cert).certificate_status == ocsp.OCSPCertStatus.GOOD

        # revoked by another process (the CLI) after the answer was cached: the next request says so
        serial = format(cert.serial_number, "x")
        assert home.run("cert", "revoke", serial, "--reason", "superseded").code == 0
        third = responder.ocsp_answer(store, request, signers)
        assert third[1] == "revoked" and third[0] != first[0]
        response = verified_ocsp(third[0], signer_cert)
        assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert response.revocation_reason == x509.ReasonFlags.superseded
        assert signers.cache.hits == 1

        # a nonce is echoed, so such a request is signed afresh every time and never stored
        nonced = [responder.ocsp_answer(store, _request(issuer, cert, nonce=n), signers)[0] for n in (b"1" * 16,
                                                                                                      b"2" * 16)]
        for der, n in zip(nonced, (b"1" * 16, b"2" * 16)):
            echoed = verified_ocsp(der, signer_cert).extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            assert echoed == n
        assert signers.cache.hits == 1 and len(signers.cache._entries) == 2
    finally:
        store.close()


def test_cache_reuse_is_bounded_in_time_and_size() -> None:
    cache = responder.OcspCache(max_entries=2, reuse=dt.timedelta(minutes=10))
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for k in ("a", "b", "c"):
        cache.put((k,), (k.encode(), t0, t0 + dt.timedelta(days=7)))
    assert cache.get(("a",), t0) is None  # the least recently used went first
    assert cache.get(("c",), t0 + dt.timedelta(minutes=9)) is not None
    assert cache.get(("c",), t0 + dt.timedelta(minutes=10)) is None  # past the reuse time: signed afresh


# ---------------------------------------------------------------- the served path

@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    built = serve_home(tmp_path, domains=("twca.com.tw",), org="TWCA")
    try:
        yield built
    finally:
        assert built.stop() == 0, built.log.read_text()[-2000:]


def test_served_ocsp_keep_alive_headers_and_refusals(served: Served, tmp_path: Path) -> None:
    out = served.home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="www"), "--account", ACCOUNT,
                          "--out", tmp_path / "www.cer")
    assert out.code == 0, out.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "www.cer").read_bytes())
    issuer = x509.load_pem_x509_certificate((served.home.path / "ca" / "uca.cer").read_bytes())
    signer = x509.load_pem_x509_certificate((served.home.path / "serve" / "ocsp-uca.cer").read_bytes())
    der = _request(issuer, cert)
    conn = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=30)
    answers = []
    for i in range(4):  # one connection: POST, GET, POST, GET
        if i % 2 == 0:
            conn.request("POST", "/ocsp", body=der, headers={"Content-Type": "application/ocsp-request"})
        else:
            conn.request("GET", "/ocsp/" + urllib.parse.quote(base64.b64encode(der).decode(), safe=""))
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and resp.getheader("Content-Type") == "application/ocsp-response"
        assert "dur=" in (resp.getheader("Server-Timing") or "")
        this_update = email.utils.parsedate_to_datetime(resp.getheader("Last-Modified") or "")
        next_update = email.utils.parsedate_to_datetime(resp.getheader("Expires") or "")
        max_age = int((resp.getheader("Cache-Control") or "").split("max-age=")[1].split(",")[0])
        assert 0 < max_age <= (next_update - dt.datetime.now(dt.UTC)).total_seconds() + 1
        response = verified_ocsp(body, signer)
        assert response.serial_number == cert.serial_number
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert response.this_update_utc == this_update
        answers.append(body)
    assert len(set(answers)) == 1  # no nonce: the answer signed first is reused
    # the refusals of before: a body over the limit, a GET path over it, bytes that are not a request
    conn.request("POST", "/ocsp", body=b"0" * (9 * 1024), headers={"Content-Type": "application/ocsp-request"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 413
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=30)
    conn.request("GET", "/ocsp/" + "A" * (9 * 1024))
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 414
    conn.request("POST", "/ocsp", body=b"not a request")
    resp = conn.getresponse()
    bad = ocsp.load_der_ocsp_response(resp.read())
    assert resp.status == 200 and bad.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    conn.close()
    check = served.home.run("--json", "ca", "check")
    assert check.code == 0 and check.json()["ok"] is True, check.stdout
