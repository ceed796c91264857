"""Challenge validation (RFC 8555 §8.3 http-01, §8.4 dns-01) against the outside world.

Names are resolved through ``--acme-resolve NAME=ADDRESS`` first (``*`` for
every name; for tests and closed networks, like Pebble's), else the system
resolver; http-01 connects to ``--acme-http01-port`` (80 by default), sends
the identifier as Host and follows no redirect; dns-01 asks
``--acme-dns-resolver`` (else the system's) for the TXT record with dnspython.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket

from twcactl.authority.acme import Validator

TIMEOUT = 5.0
MAX_BODY = 8192


def _address(name: str, resolve: dict[str, str]) -> str:
    if name in resolve:
        return resolve[name]
    if "*" in resolve:
        return resolve["*"]
    return str(socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0])


def check_http01(name: str, token: str, key_authorization: str, *, resolve: dict[str, str], port: int) -> str | None:
    """None when ``http://NAME:PORT/.well-known/acme-challenge/TOKEN`` answers the key authorization."""
    try:
        conn = http.client.HTTPConnection(_address(name, resolve), port, timeout=TIMEOUT)
        try:
            conn.request("GET", f"/.well-known/acme-challenge/{token}", headers={"Host": name})
            response = conn.getresponse()
            body = response.read(MAX_BODY)
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return f"http-01: cannot fetch the challenge from {name}: {type(exc).__name__}"
    if response.status != 200:
        return f"http-01: {name} answered HTTP {response.status}"
    if body.strip() != key_authorization.encode("ascii"):
        return f"http-01: {name} answered another key authorization"
    return None


def check_dns01(name: str, key_authorization: str, *, server: tuple[str, int] | None) -> str | None:
    """None when ``_acme-challenge.NAME`` has a TXT record with base64url(SHA-256(key authorization))."""
    import dns.exception
    import dns.resolver

    expected = base64.urlsafe_b64encode(hashlib.sha256(key_authorization.encode("ascii")).digest()).rstrip(b"=")
    resolver = dns.resolver.Resolver(configure=server is None)
    if server is not None:
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
    resolver.lifetime = TIMEOUT
    try:
        answer = resolver.resolve(f"_acme-challenge.{name}", "TXT")
    except dns.exception.DNSException as exc:
        return f"dns-01: no TXT record for _acme-challenge.{name}: {type(exc).__name__}"
    for record in answer:
        if b"".join(record.strings) == expected:
            return None
    return f"dns-01: the TXT records of _acme-challenge.{name} do not hold the expected value"


def make_validator(*, resolve: dict[str, str], http01_port: int, dns_server: tuple[str, int] | None) -> Validator:
    """The :data:`twcactl.authority.acme.Validator` the server uses."""

    def validate(kind: str, name: str, token: str, key_authorization: str) -> str | None:
        if kind == "http-01":
            return check_http01(name, token, key_authorization, resolve=resolve, port=http01_port)
        if kind == "dns-01":
            return check_dns01(name, key_authorization, server=dns_server)
        return f"unsupported challenge type {kind}"

    return validate
