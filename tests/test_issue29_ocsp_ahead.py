"""Issue 29: OCSP answers produced ahead and served as stored bytes; the OCSP-only listener.

* In-process (:class:`twcactl.authority.ocsp_answers.OcspAnswers`): the answers of every live certificate are
  signed at start and a repeated request gets the very same bytes (same producedAt); what they say is what
  ``responder.ocsp_answer`` says; a revoke, hold and release committed by the CLI (another process) is
  answered on the next request; a nonce is echoed by an answer signed for that request; bytes that are not
  a request are refused (InputError: malformedRequest).
* The listener (:mod:`twcactl.serve.ocsp_listener`) in-process with short limits: keep-alive and pipelined
  requests, every refusal a 4xx (or malformedRequest) and never a 5xx, a client that sends its request too
  slowly or not at all is cut off in bounded time while others are answered, the per-client cap.
* ``twcactl serve --ocsp-listen``: a revoke, hold and release is visible on the next request through the
  existing listener and the new one; ``openssl ocsp`` (with its nonce) verifies the new listener's answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import http.client
import random
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from tests.conftest import ACCOUNT, CA_PASSPHRASE, CaHome, make_ca, openssl_csr, require
from tests.serve_support import Served, free_port, start_server, verified_ocsp
from twcactl.authority import ocsp_answers, responder
from twcactl.errors import InputError
from twcactl.serve import ocsp_listener
from twcactl.serve.startup import bind
from twcactl.store import Store


def _request(issuer: x509.Certificate, cert: x509.Certificate, *, nonce: bytes | None = None,
             algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.fixture
def issued(tmp_path: Path) -> Iterator[tuple[CaHome, x509.Certificate, x509.Certificate]]:
    yield _issued(tmp_path)


@pytest.fixture
def issued_on_each_engine(store_engine: str, tmp_path: Path) -> Iterator[tuple[CaHome, x509.Certificate,
                                                                               x509.Certificate]]:
    yield _issued(tmp_path)  # SQLite, then PostgreSQL (no data_version there: the log is read every time)


def _issued(tmp_path: Path) -> tuple[CaHome, x509.Certificate, x509.Certificate]:
    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    for name in ("www", "mail"):
        out = home.run("--json", "cert", "issue", openssl_csr(tmp_path, name=name), "--account", ACCOUNT,
                       "--out", tmp_path / f"{name}.cer")
        assert out.code == 0, out.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "www.cer").read_bytes())
    issuer = x509.load_pem_x509_certificate((home.path / "ca" / "uca.cer").read_bytes())
    return home, cert, issuer


def _status(der: bytes, signer: x509.Certificate) -> tuple[ocsp.OCSPCertStatus, x509.ReasonFlags | None]:
    response = verified_ocsp(der, signer)
    return response.certificate_status, response.revocation_reason


# ---------------------------------------------------------------- the answers, in-process

def test_answers_are_produced_ahead_served_as_bytes_and_follow_every_change(
        issued_on_each_engine: tuple[CaHome, x509.Certificate, x509.Certificate]) -> None:
    home, cert, issuer = issued_on_each_engine
    serial = format(cert.serial_number, "x")
    store = Store.open(home.path)
    try:
        signers = responder.Signers.unlock(store, lambda: CA_PASSPHRASE, signer="delegated", operator="alice")
        signer = signers.delegated["uca"][0]
        answers = ocsp_answers.OcspAnswers(signers)
        produced = answers.preproduce(store)
        assert produced >= 3  # www, mail and the delegated signer's own certificate: every live one of uca
        assert answers.counts["produced"] == produced and len(answers) == produced

        request = _request(issuer, cert)
        first = answers.reply(store, request)
        second = answers.reply(store, request)
        assert answers.counts["produced"] == produced  # nothing signed for the requests: served as stored
        assert answers.counts["served"] == 2 and answers.counts["live"] == 0
        assert second.der == first.der  # byte for byte, so the same producedAt
        response = verified_ocsp(first.der, signer)
        assert response.produced_at_utc == ocsp.load_der_ocsp_response(second.der).produced_at_utc
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == cert.serial_number
        # the same content as the answer signed live for the same question (status, times policy, signer)
        live = ocsp.load_der_ocsp_response(responder.ocsp_answer(store, request, signers)[0])
        for attr in ("certificate_status", "serial_number", "issuer_key_hash", "issuer_name_hash", "responder_key_hash",
                     "revocation_reason", "revocation_time_utc"):
            assert getattr(response, attr) == getattr(live, attr), attr
        assert response.certificates == live.certificates == [signer]
        assert response.next_update_utc is not None and live.next_update_utc is not None
        assert (response.next_update_utc - response.this_update_utc
                == live.next_update_utc - live.this_update_utc)
        assert first.next_update - first.this_update == response.next_update_utc - response.this_update_utc

        # revoke, hold, release by the CLI (another process): the very next request says so
        steps: list[tuple[tuple[str, ...], ocsp.OCSPCertStatus, x509.ReasonFlags | None]] = [
            (("cert", "hold", serial), ocsp.OCSPCertStatus.REVOKED, x509.ReasonFlags.certificate_hold),
            (("cert", "release", serial), ocsp.OCSPCertStatus.GOOD, None),
            (("cert", "revoke", serial, "--reason", "superseded"), ocsp.OCSPCertStatus.REVOKED,
             x509.ReasonFlags.superseded),
        ]
        for args, status, reason in steps:
            assert home.run(*args).code == 0, args
            answer = answers.reply(store, request)
            assert _status(answer.der, signer) == (status, reason), args
            assert answers.reply(store, request).der == answer.der  # and stored again
        record = store.certificates.get(serial)
        assert verified_ocsp(answer.der, signer).revocation_time_utc.isoformat().startswith(record.revoked_at[:19])

        # a certificate issued while serving: its answer is signed when the change is seen, before it is asked
        out = home.run("--json", "cert", "issue", openssl_csr(home.path.parent, name="new"), "--account", ACCOUNT,
                       "--out", home.path.parent / "new.cer")
        assert out.code == 0, out.stderr
        fresh = x509.load_pem_x509_certificate((home.path.parent / "new.cer").read_bytes())
        answers.sync(store)
        signed = answers.counts["produced"]
        new_answer = answers.reply(store, _request(issuer, fresh))
        assert answers.counts["produced"] == signed
        assert _status(new_answer.der, signer) == (ocsp.OCSPCertStatus.GOOD, None)

        # a nonce: signed for that request, echoed, never stored
        for nonce in (b"a" * 16, b"b" * 16):
            der = answers.reply(store, _request(issuer, cert, nonce=nonce)).der
            echoed = verified_ocsp(der, signer).extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            assert echoed == nonce
        assert answers.counts["live"] == 2

        # a SHA-256 CertID: signed on first request, then stored
        sha256 = _request(issuer, cert, algorithm=hashes.SHA256())
        one = answers.reply(store, sha256)
        assert answers.reply(store, sha256).der == one.der
        assert _status(one.der, signer) == (ocsp.OCSPCertStatus.REVOKED, x509.ReasonFlags.superseded)

        with pytest.raises(InputError):
            answers.reply(store, b"not an OCSP request")
    finally:
        store.close()


def test_mangled_requests_are_refused_or_answered(issued: tuple[CaHome, x509.Certificate, x509.Certificate]) -> None:
    home, cert, issuer = issued
    store = Store.open(home.path)
    try:
        signers = responder.Signers.unlock(store, lambda: CA_PASSPHRASE, signer="delegated", operator="alice")
        answers = ocsp_answers.OcspAnswers(signers)
        answers.preproduce(store)
        rng = random.Random(2929)
        seeds = [_request(issuer, cert), _request(issuer, cert, nonce=b"n" * 16),
                 _request(issuer, cert, algorithm=hashes.SHA256())]
        kinds: set[object] = set()
        for case in range(300):  # bounded: DER with bytes flipped, cut or inserted; InputError or an answer
            der = bytearray(seeds[case % len(seeds)])
            for _ in range(rng.randrange(1, 3)):
                at = rng.randrange(len(der))
                if rng.randrange(2):
                    der[at] = rng.randrange(256)
                else:
                    del der[at:at + rng.randrange(1, 4)]
            try:
                answer = answers.reply(store, bytes(der))
            except InputError:
                kinds.add("refused")
                continue
            kinds.add(ocsp.load_der_ocsp_response(answer.der).response_status)
        assert "refused" in kinds and ocsp.OCSPResponseStatus.SUCCESSFUL in kinds
    finally:
        store.close()


def test_answers_past_half_their_reuse_time_are_signed_again(
        issued: tuple[CaHome, x509.Certificate, x509.Certificate]) -> None:
    home, cert, issuer = issued
    store = Store.open(home.path)
    try:
        signers = responder.Signers.unlock(store, lambda: CA_PASSPHRASE, signer="delegated", operator="alice")
        answers = ocsp_answers.OcspAnswers(signers)
        produced = answers.preproduce(store)
        request = _request(issuer, cert)
        before = answers.reply(store, request)
        assert not answers.due() and answers.refresh_due(store) == 0  # all young
        for answer in answers._entries.values():  # as if produced 40 minutes ago (reuse: 1 hour)
            answer.fresh_until -= 40 * 60
        answers._due = type(answers._due)((a.fresh_until, k) for k, a in answers._entries.items())
        assert answers.due()
        assert answers.refresh_due(store, budget=produced) == produced
        assert not answers.due()
        after = answers.reply(store, request)
        assert after is not before and after.fresh_until > before.fresh_until - 40 * 60
        assert _status(after.der, signers.delegated["uca"][0]) == (ocsp.OCSPCertStatus.GOOD, None)

        # the delegated signer replaced (rotation): no answer of the old one is served, all are signed again
        old_cert = signers.delegated["uca"][0]
        key = ec.generate_private_key(ec.SECP256R1())
        ca_cert, ca_key = signers.cas["uca"][1], signers.cas["uca"][2]
        now = dt.datetime.now(dt.UTC)
        new_cert = (x509.CertificateBuilder().subject_name(old_cert.subject).issuer_name(ca_cert.subject)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
                    .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
                    .sign(ca_key, hashes.SHA256()))
        signers.delegated["uca"] = (new_cert, key)
        assert answers.due()
        assert answers.refresh_due(store, budget=produced) == produced
        rotated = answers.reply(store, request)
        assert _status(rotated.der, new_cert) == (ocsp.OCSPCertStatus.GOOD, None)
        assert ocsp.load_der_ocsp_response(rotated.der).certificates == [new_cert]
        assert answers.refresh_due(store, budget=produced) == 0
    finally:
        store.close()


# ---------------------------------------------------------------- the listener, in-process

class _Running:
    """The listener on a loop in its own thread (with the store opened there), stopped at exit."""

    def __init__(self, home: Path, limits: ocsp_listener.Limits) -> None:
        self.sock = bind("127.0.0.1", 0, option="--ocsp-listen")
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.home = home
        self.limits = limits
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(60), self.error

    def _run(self) -> None:
        store = Store.open(self.home)
        try:
            signers = responder.Signers.unlock(store, lambda: CA_PASSPHRASE, signer="delegated", operator="alice")
            ocsp_answers.answers_of(signers).preproduce(store)
            server = SimpleNamespace(store=lambda: store, signers=signers)
            self.ready.set()
            asyncio.run(ocsp_listener.run_beside(server, self.sock, self.stop.is_set, limits=self.limits))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            self.ready.set()
        finally:
            store.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert self.error is None, self.error


@pytest.fixture
def listening(issued: tuple[CaHome, x509.Certificate, x509.Certificate]
              ) -> Iterator[tuple[_Running, CaHome, x509.Certificate, x509.Certificate]]:
    home, cert, issuer = issued
    running = _Running(home.path, ocsp_listener.Limits(header_timeout=0.5, idle_timeout=5.0, per_client=3))
    try:
        yield running, home, cert, issuer
    finally:
        running.close()


def _exchange(sock: socket.socket, data: bytes, *, answers: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``data``, read ``answers`` HTTP responses (Content-Length bodies)."""
    sock.sendall(data)
    out = []
    buf = b""
    while len(out) < answers:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(out)} answers"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(buf) < length:
            chunk = sock.recv(65536)
            assert chunk
            buf += chunk
        out.append((int(lines[0].split()[1]), headers, buf[:length]))
        buf = buf[length:]
    return out


def _post(der: bytes, path: str = "/ocsp", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n{extra}"
            f"Content-Length: {len(der)}\r\n\r\n").encode() + der


def _get(der: bytes) -> bytes:
    return f"GET /ocsp/{urllib.parse.quote(base64.b64encode(der).decode(), safe='')} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def _closed(sock: socket.socket, within: float) -> bool:
    """True when the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_listener_keep_alive_refusals_and_no_5xx(listening: tuple[_Running, CaHome, x509.Certificate,
                                                                  x509.Certificate]) -> None:
    running, home, cert, issuer = listening
    signer = x509.load_pem_x509_certificate((home.path / "serve" / "ocsp-uca.cer").read_bytes())
    der = _request(issuer, cert)
    with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
        got = _exchange(sock, _post(der) + _get(der) + _post(der), answers=3)  # pipelined on one connection
        assert [s for s, _h, _b in got] == [200, 200, 200]
        assert len({b for _s, _h, b in got}) == 1  # the stored bytes each time
        status, headers, body = got[0]
        assert headers["content-type"] == "application/ocsp-response" and headers["etag"]
        assert "max-age=" in headers["cache-control"] and headers["last-modified"] and headers["expires"]
        assert _status(body, signer) == (ocsp.OCSPCertStatus.GOOD, None)
        # not a request: malformedRequest, and the connection stays usable
        for wire in (_post(b"junk"), b"GET /ocsp/%21%21%21 HTTP/1.1\r\nHost: x\r\n\r\n"):
            (status, _h, body), = _exchange(sock, wire)
            assert status == 200
            assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        (status, _h, _b), = _exchange(sock, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404
    refusals = {
        400: [b"NONSENSE\r\n\r\n", b"POST /ocsp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
              b"POST /ocsp HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
              b"GET /ocsp/x HTTP/1.1\r\nbad header\r\n\r\n", b"GET /ocsp/x HTTP/2.0\r\n\r\n"],
        405: [b"PUT /ocsp HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"HEAD /ocsp/x HTTP/1.1\r\n\r\n"],
        411: [b"POST /ocsp HTTP/1.1\r\nHost: x\r\n\r\n"],
        413: [_post(b"0" * (9 * 1024))],
        414: [f"GET /ocsp/{'A' * 9 * 1024} HTTP/1.1\r\n\r\n".encode()],
        431: [b"GET /ocsp/x HTTP/1.1\r\n" + b"X-Pad: " + b"a" * (70 * 1024) + b"\r\n\r\n"],
    }
    for want, wires in refusals.items():
        for wire in wires:
            with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
                (status, headers, _b), = _exchange(sock, wire)
                assert status == want, wire[:60]
                assert headers.get("connection") == "close" and _closed(sock, 10)
    # still answering
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
    conn.request("POST", "/ocsp", body=der)
    assert conn.getresponse().status == 200
    conn.close()


def test_listener_mangled_requests_never_get_a_5xx(listening: tuple[_Running, CaHome, x509.Certificate,
                                                                   x509.Certificate]) -> None:
    running, _home, cert, issuer = listening
    der = _request(issuer, cert)
    rng = random.Random(29)
    seeds = [_post(der), _get(der), _post(der, extra="Connection: close\r\n")]
    statuses: set[int] = set()
    for case in range(150):  # bounded: each a few bytes flipped, cut, or repeated, on its own connection
        wire = bytearray(seeds[case % len(seeds)])
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(wire))
            kind = rng.randrange(3)
            if kind == 0:
                wire[at] = rng.randrange(256)
            elif kind == 1:
                del wire[at:at + rng.randrange(1, 8)]
            else:
                wire[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
            sock.sendall(bytes(wire))
            sock.shutdown(socket.SHUT_WR)  # nothing more comes: an incomplete request is simply dropped
            data = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):
                    data += chunk
        if data:
            status = int(data.split(b" ", 2)[1])
            assert status < 500, (bytes(wire)[:80], data[:200])
            statuses.add(status)
    assert 200 in statuses and statuses & {400, 404, 405, 411, 413, 414}
    with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:  # still answering
        (status, _h, body), = _exchange(sock, _post(der))
        assert status == 200 and ocsp.load_der_ocsp_response(body).serial_number == cert.serial_number


def test_listener_survives_slow_and_incomplete_clients(listening: tuple[_Running, CaHome, x509.Certificate,
                                                                        x509.Certificate]) -> None:
    running, _home, cert, issuer = listening
    der = _request(issuer, cert)
    started = time.monotonic()
    # half a request line, then silence; a body that never comes; one byte every 0.1 s (never whole in time)
    silent = socket.create_connection(("127.0.0.1", running.port), timeout=30)
    silent.sendall(b"GET /ocsp/")
    short = socket.create_connection(("127.0.0.1", running.port), timeout=30)
    short.sendall(b"POST /ocsp HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
    drip = socket.create_connection(("127.0.0.1", running.port), timeout=30)
    # the per-client cap (3): a fourth connection from this address is closed at once (not after the 5 s idle)
    fourth = socket.create_connection(("127.0.0.1", running.port), timeout=30)
    assert _closed(fourth, 2.5)
    fourth.close()
    wire = _get(der)
    cut = False
    for i in range(60):  # bounded: 6 s of dripping at most
        try:
            drip.sendall(wire[i % len(wire):i % len(wire) + 1])
        except OSError:
            cut = True
            break
        if _closed(drip, 0.1):
            cut = True
            break
    assert cut, "a client dripping its request was never cut off"
    assert _closed(silent, 10) and _closed(short, 10)
    assert time.monotonic() - started < 30
    for sock in (silent, short, drip):
        sock.close()
    # the listener answers as before, and idle keep-alive connections are closed after idle_timeout
    with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
        (status, _h, _b), = _exchange(sock, _post(der))
        assert status == 200
        assert _closed(sock, 15)


# ---------------------------------------------------------------- twcactl serve --ocsp-listen

@pytest.fixture
def served_ocsp(tmp_path: Path) -> Iterator[tuple[Served, int]]:
    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    log = tmp_path / "serve.log"
    ocsp_port = free_port()
    proc, port, http_port, http01 = start_server(home, log, extra_args=("--ocsp-listen", f"127.0.0.1:{ocsp_port}"))
    served = Served(home=home, port=port, http_port=http_port, http01_port=http01, proc=proc, log=log)
    try:
        yield served, ocsp_port
    finally:
        assert served.stop() == 0, log.read_text()[-2000:]


def _ask(port: int, der: bytes) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/ocsp", body=der, headers={"Content-Type": "application/ocsp-request"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200
    return body


def test_serve_answers_changes_on_the_next_request_through_both_listeners(served_ocsp: tuple[Served, int],
                                                                         tmp_path: Path) -> None:
    served, ocsp_port = served_ocsp
    home = served.home
    out = home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="www"), "--account", ACCOUNT,
                   "--out", tmp_path / "www.cer")
    assert out.code == 0, out.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "www.cer").read_bytes())
    issuer = x509.load_pem_x509_certificate((home.path / "ca" / "uca.cer").read_bytes())
    signer = x509.load_pem_x509_certificate((home.path / "serve" / "ocsp-uca.cer").read_bytes())
    der = _request(issuer, cert)
    serial = format(cert.serial_number, "x")
    ports = (served.http_port, ocsp_port)
    for port in ports:
        first = _ask(port, der)
        assert _status(first, signer) == (ocsp.OCSPCertStatus.GOOD, None)
        assert _ask(port, der) == first  # stored bytes: the same producedAt
    steps: list[tuple[tuple[str, ...], ocsp.OCSPCertStatus, x509.ReasonFlags | None]] = [
        (("cert", "hold", serial), ocsp.OCSPCertStatus.REVOKED, x509.ReasonFlags.certificate_hold),
        (("cert", "release", serial), ocsp.OCSPCertStatus.GOOD, None),
        (("cert", "revoke", serial, "--reason", "keyCompromise"), ocsp.OCSPCertStatus.REVOKED,
         x509.ReasonFlags.key_compromise),
    ]
    for args, status, reason in steps:
        assert home.run(*args).code == 0, args
        for port in ports:
            assert _status(_ask(port, der), signer) == (status, reason), (args, port)
    # a CertID hash algorithm nobody knows (SHA-1's OID 1.3.14.3.2.26 made .27): malformedRequest, not a 5xx
    sha1_oid = bytes.fromhex("06052b0e03021a")
    assert der.count(sha1_oid) == 1
    odd = der.replace(sha1_oid, bytes.fromhex("06052b0e03021b"))
    for port in ports:
        bad = ocsp.load_der_ocsp_response(_ask(port, odd))
        assert bad.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST, port
    # a real client with a nonce against the new listener: verified, nonce echoed
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(served.root.read_bytes() + (home.path / "ca" / "uca.cer").read_bytes())
    done = subprocess.run([require("openssl"), "ocsp", "-issuer", str(home.path / "ca" / "uca.cer"), "-cert",
                           str(tmp_path / "www.cer"), "-url", f"http://127.0.0.1:{ocsp_port}/ocsp", "-CAfile",
                           str(bundle), "-resp_text"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Response verify OK" in done.stderr and "WARNING: no nonce" not in done.stdout + done.stderr
    assert "OCSP Nonce" in done.stdout and ": revoked" in done.stdout
    check = home.run("--json", "ca", "check")
    assert check.code == 0 and check.json()["ok"] is True, check.stdout
