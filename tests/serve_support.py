"""Starting ``twcactl serve`` as a subprocess on free loopback ports with a fresh home (issue 15 tests)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import ACCOUNT, CaHome, make_ca


def free_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768-60999), so that no client socket of this
    or another process is handed the same number between this check and the server's bind."""
    for _ in range(200):
        port = random.randrange(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port between 20000 and 32000")


@dataclass
class Served:
    """A running server: its home, URLs and process."""

    home: CaHome
    port: int
    http_port: int
    http01_port: int
    proc: subprocess.Popen[bytes]
    log: Path
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/acme/directory"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def root(self) -> Path:
        return self.home.path / "ca" / "root.cer"

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root))

    def get(self, url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
            method: str | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
        ctx = self.tls() if url.startswith("https") else None
        try:
            with urllib.request.urlopen(request, timeout=30, context=ctx) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()

    def cli(self, *args: str) -> Any:
        result = self.home.run("--json", *args)
        assert result.code == 0, result.stderr
        return result.json()

    def stop(self) -> int:
        codes = []
        for proc in [self.proc, *self.extra]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes.append(proc.wait(timeout=20))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(-9)
        return codes[0]


def start_server(home: CaHome, log: Path, *, port: int | None = None, http_port: int | None = None,
                 http01_port: int | None = None, extra_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], int,
                                                                                           int, int]:
    port = port or free_port()
    http_port = http_port or free_port()
    http01_port = http01_port or free_port()
    env = dict(os.environ, TWCACTL_OPERATOR="alice", TW_TEST_CA_PASS=home.passphrase or "")
    env.pop("TWCACTL_CA_PASSPHRASE_SOURCE", None)
    args = [sys.executable, "-m", "twcactl", "--home", str(home.path), "serve", "--listen", f"127.0.0.1:{port}",
            "--http-listen", f"127.0.0.1:{http_port}", "--acme-resolve", "*=127.0.0.1",
            "--acme-http01-port", str(http01_port), *extra_args]
    if home.passphrase:
        args += ["--ca-passphrase", "env:TW_TEST_CA_PASS"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "ab"))  # noqa: SIM115
    wait_healthy(proc, http_port, log)
    return proc, port, http_port, http01_port


def wait_healthy(proc: subprocess.Popen[bytes], http_port: int, log: Path, *, seconds: float = 30) -> None:
    """Wait until the ``serve`` process ``proc`` answers ``/health`` with ``ok`` on ``http_port``; a process
    that exits or stays silent fails the test with its log (``proc`` killed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=2) as response:
                if json.loads(response.read())["status"] == "ok":
                    return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("twcactl serve did not start: " + log.read_text())


def serve_home(tmp_path: Path, *, quota: int = 10, domains: tuple[str, ...] = ("example.test",),
               org: str = "Example Ltd") -> Served:
    home = make_ca(tmp_path / "ca")
    args = ["account", "add", ACCOUNT, "--org", org, "--quota", str(quota)]
    for d in domains:
        args += ["--domain", d]
    assert home.run(*args).code == 0
    log = tmp_path / "serve.log"
    proc, port, http_port, http01_port = start_server(home, log)
    return Served(home=home, port=port, http_port=http_port, http01_port=http01_port, proc=proc, log=log)


def eab(served: Served) -> tuple[str, str]:
    doc = served.cli("acme", "eab", ACCOUNT)
    return doc["kid"], doc["hmac"]


class LoopbackDns:
    """A UDP DNS server on 127.0.0.1 (dnspython) whose answers :meth:`answer` decides; ``queries`` counts them."""

    def __init__(self) -> None:
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def answer(self, question: Any, name: str, response: Any) -> None:
        """Fill ``response`` for ``question`` (``name``: its owner name, lower case, no final dot)."""
        raise NotImplementedError

    def _run(self) -> None:
        import dns.message

        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            self.queries += 1
            self.answer(question, question.name.to_text(omit_final_dot=True).lower(), response)
            self.sock.sendto(response.to_wire(), addr)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


class TokenServer:
    """An HTTP server on ``(host, port)`` answering ``GET .../TOKEN`` with :meth:`body_for` (404 when empty, as
    an http-01 or http-file target would); ``hits`` counts the requests."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                outer.hits += 1
                body = outer.body_for(self.path.rsplit("/", 1)[-1])
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def body_for(self, token: str) -> bytes:
        """The answer for ``token`` (empty: 404)."""
        raise NotImplementedError

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def serving(path: Path, *, quota: int) -> Iterator[Served]:
    """A fresh CA home at ``path`` with the test account (twca.com.tw, ``quota`` years) and its own ``serve``,
    stopped afterwards."""
    home = make_ca(path)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota",
                    str(quota)).code == 0
    log = path.parent / f"{path.name}-serve.log"
    proc, port, http_port, http01_port = start_server(home, log)
    server = Served(home=home, port=port, http_port=http_port, http01_port=http01_port, proc=proc, log=log)
    try:
        yield server
    finally:
        server.stop()


def verified_ocsp(der: bytes, signer: Any) -> Any:
    """The OCSP response ``der`` parsed, asserted SUCCESSFUL and its signature checked with ``signer``'s EC key
    (an ``x509.Certificate``): the answers twcactl's responders give (RFC 6960 §4.2.1)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import ocsp

    response = ocsp.load_der_ocsp_response(der)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    key = signer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and response.signature_hash_algorithm is not None
    key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(response.signature_hash_algorithm))
    return response

