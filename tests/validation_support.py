"""Real DNS and web servers on loopback for the issue 26 tests: dnsmasq (TXT, CAA, A records; a SERVFAIL zone
forwarded to an upstream that answers SERVFAIL), nginx (the http-file validation files) and
``twcactl serve --perspective`` processes, each with its own dnsmasq."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import ACCOUNT, CaHome, require
from tests.serve_support import free_port

#: The CA's CAA issuer domain in the tests (``ca config caa_identities``).
CA_IDENTITY = "ca.twcactl.tw"
SERVFAIL_ZONE = "servfail.twca.com.tw"


def caa_hex(flags: int, tag: str, value: str) -> str:
    """A CAA record's RDATA (RFC 8659 §4.1) in hex, for ``dnsmasq --dns-rr=NAME,257,HEX``."""
    return (bytes([flags, len(tag)]) + tag.encode() + value.encode()).hex()


def _wait_dns(port: int) -> None:
    """Until dnsmasq answers on ``port``: its TCP socket first (a refused connect returns at once, where a UDP
    query to a closed port waits out its whole timeout), then one query."""
    import dns.exception
    import dns.resolver

    for _ in range(500):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.01)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], port, 0.5
    for _ in range(20):
        try:
            resolver.resolve("twca.com.tw", "A")
            return
        except dns.exception.DNSException:
            time.sleep(0.05)
    raise RuntimeError(f"dnsmasq on port {port} did not answer")


class ServfailUpstream:
    """A UDP responder answering SERVFAIL to everything: the broken authoritative server dnsmasq forwards
    :data:`SERVFAIL_ZONE` to (the failure dnsmasq then returns is real SERVFAIL, RFC 1035 rcode 2)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import dns.message
        import dns.rcode

        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            reply = dns.message.make_response(dns.message.from_wire(data))
            reply.set_rcode(dns.rcode.SERVFAIL)
            self.sock.sendto(reply.to_wire(), addr)


@dataclass
class Dnsmasq:
    """One dnsmasq on a loopback port; :meth:`serve` (re)starts it with a set of records."""

    port: int
    servfail_port: int
    proc: subprocess.Popen[bytes] | None = None
    records: dict[str, object] = field(default_factory=dict)

    def serve(self, *, txt: dict[str, str] | None = None, caa: dict[str, list[tuple[int, str, str]]] | None = None,
              address: str = "127.0.0.1") -> None:
        """Serve ``txt`` (name -> text), ``caa`` (name -> records) and every name under twca.com.tw and
        example.com.tw at ``address``; other names NXDOMAIN."""
        self.stop()
        args = [require("dnsmasq"), "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={self.port}", "--pid-file=",
                "--user=root", "--log-facility=/dev/null", f"--address=/twca.com.tw/{address}",
                f"--address=/example.com.tw/{address}", f"--server=/{SERVFAIL_ZONE}/127.0.0.1#{self.servfail_port}",
                "--local=/#/"]
        args += [f"--txt-record={name},{text}" for name, text in (txt or {}).items()]
        args += [f"--dns-rr={name},257,{caa_hex(*r)}" for name, rs in (caa or {}).items() for r in rs]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_dns(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Nginx:
    """nginx serving ``root`` on a loopback port (http-file validation: /.well-known/pki-validation/)."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self, work: Path) -> None:
        (self.root / ".well-known" / "pki-validation").mkdir(parents=True, exist_ok=True)
        conf = work / "nginx.conf"
        temp = work / "nginx-temp"
        temp.mkdir(exist_ok=True)
        conf.write_text(f"""
user root;
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy; fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
    server {{ listen 127.0.0.1:{self.port}; root {self.root}; location / {{ }} }}
}}
""")
        self.proc = subprocess.Popen([require("nginx"), "-c", str(conf), "-p", str(work), "-e",
                                      str(work / "nginx-error.log")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def put(self, value: str) -> None:
        """Publish the http-file validation file for ``value``."""
        (self.root / ".well-known" / "pki-validation" / f"{value}.txt").write_text(value + "\n")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@dataclass
class Perspective:
    """A ``twcactl serve --perspective`` process with its own dnsmasq."""

    dns: Dnsmasq
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class World:
    """The primary's dnsmasq, nginx and the perspectives, with the shared bearer token file."""

    primary: Dnsmasq
    web: Nginx
    perspectives: list[Perspective]
    token_file: Path
    upstream: ServfailUpstream

    def serve_all(self, *, txt: dict[str, str] | None = None,
                  caa: dict[str, list[tuple[int, str, str]]] | None = None,
                  hijacked: int = 0, hijack_caa: dict[str, list[tuple[int, str, str]]] | None = None) -> None:
        """The same records everywhere, except that the first ``hijacked`` perspectives see ``hijack_caa``
        and no TXT (a BGP hijack seen from some networks)."""
        self.primary.serve(txt=txt, caa=caa)
        for i, p in enumerate(self.perspectives):
            if i < hijacked:
                p.dns.serve(txt={}, caa=hijack_caa or {}, address="127.0.0.2")
            else:
                p.dns.serve(txt=txt, caa=caa)

    def stop(self) -> None:
        for p in self.perspectives:
            if p.proc is not None:
                p.proc.terminate()
        for p in self.perspectives:
            if p.proc is not None:
                p.proc.wait(timeout=10)
            p.dns.stop()
        self.primary.stop()
        self.web.stop()
        self.upstream.sock.close()


def start_world(work: Path, perspectives: int = 5) -> World:
    """Start everything (the perspectives in parallel) and wait until each answers."""
    upstream = ServfailUpstream()
    token_file = work / "mpic-token"
    token_file.write_text("perspective-shared-token-0123456789\n")
    primary = Dnsmasq(free_port(), upstream.port)
    primary.serve()
    web = Nginx(work / "www", free_port())
    web.root.mkdir()
    web.start(work)
    views = []
    for _ in range(perspectives):
        d = Dnsmasq(free_port(), upstream.port)
        d.serve()
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "twcactl", "serve", "--perspective", "--listen",
                                 f"127.0.0.1:{port}", "--perspective-token", f"file:{token_file}",
                                 "--perspective-dns", d.resolver, "--perspective-http-port", str(web.port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        views.append(Perspective(d, port, proc))
    for view in views:
        _wait_http(view.port)
    return World(primary, web, views, token_file, upstream)


def _wait_http(port: int) -> None:
    import urllib.error
    import urllib.request

    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"perspective on port {port} did not start")


def world_fixture(work: Path) -> Iterator[World]:
    """A module fixture's body: the world, stopped afterwards."""
    world = start_world(work)
    try:
        yield world
    finally:
        world.stop()


def settings(world: World, perspectives: list[str] | None = None) -> list[tuple[str, str]]:
    """The ``ca config`` settings pointing a home's public-trust checks at ``world``."""
    urls = perspectives if perspectives is not None else [p.url for p in world.perspectives]
    return [("dns_resolver", world.primary.resolver), ("dv_http_port", str(world.web.port)),
            ("caa_identities", CA_IDENTITY), ("mpic_token_file", str(world.token_file)),
            ("mpic_perspectives", ",".join(urls))]


def configure(home: CaHome, world: World, perspectives: list[str] | None = None) -> None:
    """Point a home's public-trust checks at ``world``: its resolver, web port, CAA identity, perspectives."""
    for key, value in settings(world, perspectives):
        result = home.run("ca", "config", key, value)
        assert result.code == 0, result.stderr


def validate_http(home: CaHome, world: World, domain: str, account: str = ACCOUNT) -> dict[str, Any]:
    """``domain validate --method http-file``, the file published on nginx, ``domain check``; the check's JSON."""
    started = home.run("--json", "domain", "validate", account, domain, "--method", "http-file")
    assert started.code == 0, started.stderr
    world.web.put(started.json()["validation"]["value"])
    checked = home.run("--json", "domain", "check", account, domain)
    assert checked.code == 0, checked.stdout + checked.stderr
    return checked.json()  # type: ignore[no-any-return]
