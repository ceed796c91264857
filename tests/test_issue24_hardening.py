"""Issue 24: ``twcactl serve`` under hostile clients, on loopback.

- 1,000 connections that never finish their headers (from other loopback addresses than the probes'):
  /health, an OCSP GET and a CRL keep answering within 1 s; the attacker's sockets are closed within the
  header deadline, most of them at once by the per-client cap; so are one that sends its header a byte at a
  time and an idle keep-alive connection.
- 50 http-01 targets that send one byte a second: each validation ends by its deadline, /health keeps
  answering.
- Names resolving to loopback, RFC 1918 and link-local addresses are refused with a generic problem; the
  address classes one by one; ``--acme-resolve`` and ``--acme-allow-private`` lift it.
- Start-up: a garbage or huge ``--tls-cert``, ``--listen 256.1.1.1:1`` and ``pass:`` exit 2 or 3 with one line.
- The validation pool's K and M, the pending-authorization cap.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import select
import selectors
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import josepy as jose
import pytest
from acme import client as acme_client
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from tests.conftest import ACCOUNT, CaHome, make_ca
from tests.serve_support import LoopbackDns, Served, eab, free_port, wait_healthy
from tests.test_issue15_more import ChallengeServer
from twcactl.serve.addresses import CLASSES, forbidden_class
from twcactl.serve.challenges import validate
from twcactl.serve.validation import Deadline, Failure, Settings, addresses
from twcactl.serve.validation_pool import ValidationPool

DOMAIN = "example.test"


# ---------------------------------------------------------------- starting serve, an ACME client

def _serve(tmp_path: Path, *extra: str, resolve_all: bool = True, http01_port: int | None = None,
           quota: int = 5) -> Served:
    """``twcactl serve`` on free loopback ports (``--acme-resolve *=127.0.0.1`` unless ``resolve_all`` is
    False), a fresh home with the test account agreed on example.test."""
    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "Example Ltd", "--quota", str(quota),
                    "--domain", DOMAIN).code == 0
    port, http_port, h01 = free_port(), free_port(), http01_port or free_port()
    log = tmp_path / "serve.log"
    args = ["--listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http_port}", "--acme-http01-port",
            str(h01), *(["--acme-resolve", "*=127.0.0.1"] if resolve_all else []), *extra]
    proc = _launch(home, log, args)
    wait_healthy(proc, http_port, log)
    return Served(home=home, port=port, http_port=http_port, http01_port=h01, proc=proc, log=log)


def _launch(home: CaHome, log: Path, args: list[str], *, passphrase: str = "env:TW_TEST_CA_PASS"
            ) -> subprocess.Popen[bytes]:
    env = dict(os.environ, TWCACTL_OPERATOR="alice", TW_TEST_CA_PASS=home.passphrase or "")
    env.pop("TWCACTL_CA_PASSPHRASE_SOURCE", None)
    cmd = [sys.executable, "-m", "twcactl", "--home", str(home.path), "serve", *args, "--ca-passphrase", passphrase]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "ab"))  # noqa: SIM115


@pytest.fixture
def stop() -> Iterator[list[Served]]:
    servers: list[Served] = []
    yield servers
    for served in servers:
        assert served.stop() == 0, served.log.read_text()[-2000:]


def _client(served: Served, monkeypatch: pytest.MonkeyPatch) -> acme_client.ClientV2:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(served.root))
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = acme_client.ClientNetwork(key, alg=jose.ES256, user_agent="twcactl-test")
    directory = acme_client.ClientV2.get_directory(served.directory, net)
    client = acme_client.ClientV2(directory, net)
    kid, hmac = eab(served)
    binding = messages.ExternalAccountBinding.from_data(key.public_key(), kid, hmac, directory)
    client.new_account(messages.NewRegistration.from_data(email=f"ops@{DOMAIN}", terms_of_service_agreed=True,
                                                          external_account_binding=binding))
    return client


def _order(client: acme_client.ClientV2, names: list[str]) -> messages.OrderResource:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return client.new_order(csr.public_bytes(serialization.Encoding.PEM))


def _answer_http01(client: acme_client.ClientV2, orderr: messages.OrderResource) -> dict[str, str]:
    """POST every http-01 challenge; ``{token: key authorization}``."""
    tokens = {}
    for authzr in orderr.authorizations:
        challb = next(c for c in authzr.body.challenges if c.chall.typ == "http-01")
        response, validation = challb.response_and_validation(client.net.key)
        tokens[challb.chall.encode("token")] = validation
        client.answer_challenge(challb, response)
    return tokens


def _settled(client: acme_client.ClientV2, orderr: messages.OrderResource, *, within: float
             ) -> list[messages.AuthorizationResource]:
    """The order's authorizations once none is pending (polled for at most ``within`` seconds)."""
    end = time.monotonic() + within
    authzs = list(orderr.authorizations)
    while True:
        authzs = [client.poll(a)[0] for a in authzs]
        if all(a.body.status != messages.STATUS_PENDING for a in authzs) or time.monotonic() > end:
            return authzs
        time.sleep(0.2)


def _http01_error(authzr: messages.AuthorizationResource) -> Any:
    return next(c for c in authzr.body.challenges if c.chall.typ == "http-01").error


class Timed:
    """Probes /health, an OCSP GET, the CRL and a CA certificate (plain HTTP) and /health over HTTPS until
    stopped, each answer timed."""

    def __init__(self, served: Served, ocsp_path: str | None) -> None:
        self.served = served
        self.urls = [f"{served.http}/health", f"{served.http}/crl/uca.crl", f"{served.http}/ca/uca.cer",
                     f"https://127.0.0.1:{served.port}/health"]
        if ocsp_path:
            self.urls.append(f"{served.http}{ocsp_path}")
        self.times: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        ctx = self.served.tls()
        while not self._stop.is_set():
            for url in self.urls:
                start = time.monotonic()
                try:
                    with urllib.request.urlopen(url, timeout=10, context=ctx if url.startswith("https") else None
                                                ) as response:
                        response.read()
                        status = response.status
                except OSError as exc:
                    self.failures.append(f"{url}: {exc}")
                    continue
                self.times.append((time.monotonic() - start, url))
                if status != 200:
                    self.failures.append(f"{url}: HTTP {status}")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)


def _ocsp_path(served: Served) -> str:
    """``/ocsp/BASE64`` of an OCSP request for the server's own TLS certificate (issued by the CA)."""
    pem = ssl.get_server_certificate(("127.0.0.1", served.port))
    leaf = x509.load_pem_x509_certificate(pem.encode())
    issuer = x509.load_pem_x509_certificate((served.home.path / "ca" / "uca.cer").read_bytes())
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    return "/ocsp/" + base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()


def _raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard),
                                                    hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want, "raise the open-files limit to run this test"


# ---------------------------------------------------------------- 1. a thousand half-sent requests

def _connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def test_a_thousand_half_sent_requests_starve_nothing(tmp_path: Path, stop: list[Served]) -> None:
    header_timeout = 2.0
    _raise_nofile(2048)
    served = _serve(tmp_path, "--header-timeout", str(header_timeout))
    stop.append(served)
    ocsp_path = _ocsp_path(served)
    probes = Timed(served, ocsp_path)
    opened: dict[int, float] = {}
    closed: dict[int, float] = {}
    socks: dict[int, Any] = {}
    kinds: dict[int, str] = {}

    def track(sock: Any, kind: str) -> None:
        opened[sock.fileno()] = time.monotonic()
        socks[sock.fileno()] = sock
        kinds[sock.fileno()] = kind

    try:
        # 60 TLS connections (from 127.0.0.3, under the per-client cap) that send half a request header
        tls = served.tls()
        for _ in range(60):
            raw = _connect_from("127.0.0.3", served.port)
            wrapped = tls.wrap_socket(raw, server_hostname="localhost")
            wrapped.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Half: ")
            track(wrapped, "tls-half")
        # 470 to the HTTPS port that never start TLS, 470 to the plain port with half a header (127.0.0.2)
        for i in range(470):
            sock = _connect_from("127.0.0.2", served.port)
            track(sock, "tls-silent")
            sock = _connect_from("127.0.0.2", served.http_port)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            track(sock, "http-half")
            if i % 100 == 0:
                time.sleep(0.05)
        assert len(opened) == 1000
        # one more that keeps sending a byte of its header every 0.25 s: the deadline is for the whole header
        trickle = _connect_from("127.0.0.4", served.http_port)
        trickle_opened = time.monotonic()
        trickle_closed: float | None = None
        # and one keep-alive connection that asks once, then stays idle
        idle = _connect_from("127.0.0.5", served.http_port)
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        idle_since = time.monotonic()
        idle_closed: float | None = None
        text = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 100
        selector = selectors.DefaultSelector()
        for fd, sock in socks.items():
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, fd)
        end = time.monotonic() + header_timeout + 8
        sent = 0
        while (len(closed) < len(opened) or trickle_closed is None or idle_closed is None) \
                and time.monotonic() < end:
            for key, _events in selector.select(timeout=0.25):
                fd = key.data
                try:
                    data = socks[fd].recv(4096)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                except (OSError, ssl.SSLError):
                    data = b""
                if not data:
                    closed[fd] = time.monotonic()
                    selector.unregister(socks[fd])
            if idle_closed is None and select.select([idle], [], [], 0)[0]:
                try:
                    if not idle.recv(4096):
                        idle_closed = time.monotonic()
                except OSError:
                    idle_closed = time.monotonic()
            if trickle_closed is None:
                try:
                    trickle.sendall(text[sent:sent + 1])
                    sent += 1
                    ready = select.select([trickle], [], [], 0)[0]
                    if ready and not trickle.recv(4096):
                        trickle_closed = time.monotonic()
                except OSError:
                    trickle_closed = time.monotonic()
    finally:
        probes.stop()
        for sock in socks.values():
            sock.close()
    assert len(closed) == 1000, f"{1000 - len(closed)} half-sent connections still open"
    lifetimes = {fd: closed[fd] - opened[fd] for fd in opened}
    assert max(lifetimes.values()) < header_timeout + 3, max(lifetimes.values())
    # the per-client cap: 127.0.0.2 keeps at most 64 per listener; the rest are closed at once
    at_once = [fd for fd, life in lifetimes.items() if kinds[fd] != "tls-half" and life < 1.0]
    assert len(at_once) >= 940 - 2 * 64 - 10, len(at_once)
    # ... and the header deadline closed the admitted ones, TLS and plain alike, not before it
    held = [fd for fd, life in lifetimes.items() if life >= header_timeout - 0.5]
    assert {kinds[fd] for fd in held} == {"tls-half", "tls-silent", "http-half"}
    assert trickle_closed is not None and trickle_closed - trickle_opened < header_timeout + 3
    assert sent > 4  # it kept sending: a deadline per read would never have closed it
    assert idle_closed is not None and idle_closed - idle_since < header_timeout + 3  # idle keep-alive closes
    # relying parties were answered throughout, each within 1 s
    assert not probes.failures, probes.failures[:5]
    assert len(probes.times) >= 8 and {url for _t, url in probes.times} == set(probes.urls)
    slowest = max(probes.times)
    assert slowest[0] < 1.0, slowest


# ---------------------------------------------------------------- 2. fifty slow http-01 targets

class SlowTarget:
    """An http-01 target that reads the request and answers one byte a second; records how long each
    connection lasted until the validator closed it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.lasted: list[float] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._slow, args=(conn,), daemon=True).start()

    def _slow(self, conn: socket.socket) -> None:
        start = time.monotonic()
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"x" * 40
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                for i in range(len(answer)):
                    ready = select.select([conn], [], [], 1.0)[0]
                    if ready and not conn.recv(4096):
                        break  # the validator hung up
                    conn.sendall(answer[i:i + 1])
            except OSError:
                pass
        with self._lock:
            self.lasted.append(time.monotonic() - start)

    def close(self) -> None:
        self.sock.close()


def test_fifty_slow_targets_end_by_the_deadline(tmp_path: Path, stop: list[Served],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    deadline = 3.0
    port = free_port()
    target = SlowTarget(port)
    try:
        served = _serve(tmp_path, "--acme-validation-timeout", str(deadline), "--acme-validations", "50", "50",
                        http01_port=port)
        stop.append(served)
        client = _client(served, monkeypatch)
        orderr = _order(client, [f"s{i:02d}.{DOMAIN}" for i in range(50)])
        probes = Timed(served, None)
        try:
            _answer_http01(client, orderr)
            authzs = _settled(client, orderr, within=deadline + 20)
        finally:
            probes.stop()
    finally:
        target.close()
    assert len(target.lasted) == 50
    assert max(target.lasted) < deadline + 1.5, max(target.lasted)  # one deadline for the whole fetch
    for authzr in authzs:
        assert authzr.body.status == messages.STATUS_INVALID
        error = _http01_error(authzr)
        assert error.typ.endswith(":connection") and ": timeout:" in error.detail, error
    assert not probes.failures and max(probes.times)[0] < 1.0, (probes.failures[:3], max(probes.times))


# ---------------------------------------------------------------- 3. non-public targets

class AddressDns(LoopbackDns):
    """Answers A queries from ``a`` (NXDOMAIN for other names)."""

    def __init__(self, a: dict[str, str]) -> None:
        self.a = a
        super().__init__()

    def answer(self, question: Any, name: str, response: Any) -> None:
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        if question.rdtype == dns.rdatatype.A and name in self.a:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", self.a[name]))
        elif name not in self.a:
            response.set_rcode(dns.rcode.NXDOMAIN)


PRIVATE = {f"lo.{DOMAIN}": "127.0.0.1", f"ten.{DOMAIN}": "10.0.0.1", f"meta.{DOMAIN}": "169.254.169.254"}


#: An http-01 responder on 127.0.0.1 that answers every token it holds and counts what it was asked.
Responder = ChallengeServer


def test_names_on_non_public_addresses_are_refused_with_a_generic_problem(
        tmp_path: Path, stop: list[Served], monkeypatch: pytest.MonkeyPatch) -> None:
    dns_server = AddressDns(PRIVATE)
    port = free_port()
    responder = Responder(port)
    try:
        served = _serve(tmp_path, "--acme-dns-resolver", f"127.0.0.1:{dns_server.port}", resolve_all=False,
                        http01_port=port)
        stop.append(served)
        client = _client(served, monkeypatch)
        orderr = _order(client, sorted(PRIVATE))
        responder.tokens.update(_answer_http01(client, orderr))  # lo.example.test would answer rightly
        authzs = _settled(client, orderr, within=20)
    finally:
        responder.close()
        dns_server.close()
    assert responder.hits == 0  # nothing was fetched
    for authzr in authzs:
        assert authzr.body.status == messages.STATUS_INVALID, authzr.body
        error = _http01_error(authzr)
        assert error.typ == "urn:ietf:params:acme:error:rejectedIdentifier"
        assert error.detail == "http-01: forbidden address: the name resolves to an address that is not public."
        assert not any(address in json.dumps(error.to_json()) for address in PRIVATE.values())


def test_allow_private_and_named_addresses_lift_the_refusal() -> None:
    dns_server = AddressDns(PRIVATE)
    try:
        base = Settings(dns_server=("127.0.0.1", dns_server.port))
        for name, address in PRIVATE.items():
            with pytest.raises(Failure) as refused:
                addresses(name, base, Deadline(5))
            assert refused.value.kind == "forbidden address"
            assert addresses(name, Settings(dns_server=base.dns_server, allow_private=True), Deadline(5)) == [address]
            assert addresses(name, Settings(resolve={name: address}), Deadline(5)) == [address]
        with pytest.raises(Failure) as missing:
            addresses(f"nosuch.{DOMAIN}", base, Deadline(5))
        assert missing.value.kind == "no address"
        # tls-alpn-01 and http-01 go through the same rule
        for kind in ("http-01", "tls-alpn-01"):
            problem = validate(base, kind, f"lo.{DOMAIN}", "token", "token.thumb")
            assert problem is not None and problem.acme_type == "rejectedIdentifier", problem
    finally:
        dns_server.close()


# every class of the list, in its IPv4 and IPv6 forms (IPv4-mapped, 6to4, NAT64 carry an IPv4 address)
NON_PUBLIC = [
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("239.1.2.3", "multicast"), ("ff02::1", "multicast"), ("ff0e::1", "multicast"),
    ("10.0.0.1", "rfc1918"), ("172.16.5.4", "rfc1918"), ("172.31.255.255", "rfc1918"), ("192.168.1.1", "rfc1918"),
    ("100.64.0.1", "shared"), ("100.127.255.254", "shared"),
    ("fc00::1", "unique-local"), ("fd12:3456::1", "unique-local"),
    ("192.0.2.1", "reserved"), ("198.18.0.1", "reserved"), ("240.0.0.1", "reserved"), ("2001:db8::1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "rfc1918"), ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:100.64.0.1", "shared"), ("::ffff:224.0.0.1", "multicast"),
    ("2002:7f00:1::", "loopback"), ("2002:a00:1::", "rfc1918"), ("64:ff9b::a9fe:a9fe", "link-local"),
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "203.0.114.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "2002:808:808::",
          "64:ff9b::808:808", "172.32.0.1", "100.128.0.1", "11.0.0.1"]


def test_the_classes_are_all_tested() -> None:
    assert {cls for _a, cls in NON_PUBLIC} == set(CLASSES)


@pytest.mark.parametrize(("address", "cls"), NON_PUBLIC)
def test_each_non_public_address_class(address: str, cls: str) -> None:
    assert forbidden_class(address) == cls


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_class(address) is None


# ---------------------------------------------------------------- 4. start-up

def _start(tmp_path: Path, home: CaHome, *args: str, passphrase: str = "env:TW_TEST_CA_PASS"
           ) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"fail-{time.monotonic_ns()}.log"
    return _launch(home, log, ["--listen", f"127.0.0.1:{free_port()}", *args], passphrase=passphrase), log


def _refusal(started: tuple[subprocess.Popen[bytes], Path]) -> tuple[int, str]:
    proc, log = started
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("serve started instead of refusing") from None
    return code, log.read_text()


def served_cert(tmp_path: Path) -> Path:
    """A self-signed certificate of a key of its own (PEM)."""
    import datetime as dt

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    path = tmp_path / "other.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_bad_start_up_input_exits_2_or_3_with_one_line(tmp_path: Path) -> None:
    home = make_ca(tmp_path / "ca")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"A" * (20 * 1024 * 1024))
    key = tmp_path / "key.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cases = {
        "garbage --tls-cert": (["--tls-cert", str(garbage), "--tls-key", str(key)], 3, "--tls-cert"),
        "20 MB --tls-cert": (["--tls-cert", str(huge), "--tls-key", str(key)], 3, "bytes"),
        "20 MB --tls-key": (["--tls-cert", str(garbage), "--tls-key", str(huge)], 3, "--tls-key"),
        "--tls-cert /dev/zero": (["--tls-cert", "/dev/zero", "--tls-key", str(key)], 3, "regular file"),
        "a key of another certificate": (["--tls-cert", str(served_cert(tmp_path)), "--tls-key", str(key)], 3,
                                         "--tls-key"),
        "--listen 256.1.1.1:1": (["--listen", "256.1.1.1:1"], 2, "--listen 256.1.1.1:1"),
        "--http-listen on an address not here": (["--http-listen", "192.0.2.1:1"], 2, "--http-listen"),
    }
    started = {what: _start(tmp_path, home, *args) for what, (args, _want, _mention) in cases.items()}
    inline = _start(tmp_path, home, passphrase=f"pass:{home.passphrase}")
    for what, (_args, want, mention) in cases.items():
        code, err = _refusal(started[what])
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == want, (what, code, err)
        assert len(lines) == 1 and mention in lines[0] and "Traceback" not in err, (what, err)
    code, err = _refusal(inline)
    assert code == 2 and "pass:" in err and (home.passphrase or "-") not in err, err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


# ---------------------------------------------------------------- 5. validations: K and M, pending authorizations

def test_the_pool_runs_at_most_k_per_account_and_m_in_all() -> None:
    pool = ValidationPool(lambda: None, per_account=2, total=3)
    lock = threading.Lock()
    now: dict[str, int] = {}
    peak: dict[str, int] = {}
    done = threading.Semaphore(0)

    def job(account: str) -> Any:
        def run(_store: Any) -> None:
            with lock:
                now[account] = now.get(account, 0) + 1
                peak[account] = max(peak.get(account, 0), now[account])
            time.sleep(0.05)
            with lock:
                now[account] -= 1
            done.release()
        return run

    for i in range(24):
        pool.submit(f"acct{i % 3}", job(f"acct{i % 3}"))
    for _ in range(24):
        assert done.acquire(timeout=30)
    assert max(peak.values()) <= 2 and pool.peak <= 3
    assert pool.peak >= 2  # they did run side by side


def test_pending_authorizations_per_account_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from twcactl.authority import acme as core
    from twcactl.store import Store

    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "Example Ltd", "--quota", "5", "--domain", DOMAIN).code == 0
    monkeypatch.setattr(core, "MAX_PENDING_AUTHZ", 3)
    store = Store.open(home.path)
    try:
        grant = core.create_eab(store, ACCOUNT, operator="alice")
        jwk = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        account = core.new_account(store, jwk_json=jwk.json_dumps(), kid=grant.kid, contact=[],
                                   thumbprint=base64.urlsafe_b64encode(jwk.thumbprint()).rstrip(b"=").decode())
        first = core.new_order(store, account, [("dns", f"a.{DOMAIN}"), ("dns", f"b.{DOMAIN}")])
        with pytest.raises(core.AcmeProblem) as refused:
            core.new_order(store, account, [("dns", f"c.{DOMAIN}"), ("dns", f"d.{DOMAIN}")])
        assert refused.value.acme_type == "rateLimited" and refused.value.status == 429
        # a decided authorization no longer counts
        with store.transaction():
            store.acme.set_authz(first.authzs[0].id, "deactivated")
        core.new_order(store, account, [("dns", f"c.{DOMAIN}"), ("dns", f"d.{DOMAIN}")])
    finally:
        store.close()


def test_connection_caps_per_client_and_in_all() -> None:
    from twcactl.serve.guard import Limits

    limits = Limits(header_timeout=2, per_client=2, total=3)
    assert limits.acquire("a") and limits.acquire("a")
    assert not limits.acquire("a")  # the per-client cap
    assert limits.acquire("b")
    assert not limits.acquire("c")  # the cap in all, for a client that has none open
    limits.release("a")
    assert limits.acquire("c") and not limits.acquire("b")
    for client in ("a", "b", "c"):
        limits.release(client)
    assert limits.count == 0 and not limits.open and limits.refused == 3
