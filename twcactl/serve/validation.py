"""Challenge validation against the outside world: http-01 and dns-01 (RFC 8555 §8.3, §8.4), and what every
check shares (the deadline, name lookup, the address rule, connecting); tls-alpn-01 (RFC 8737) is
:mod:`twcactl.serve.tls_alpn`, and :mod:`twcactl.serve.challenges` picks the check for a challenge type.

One deadline bounds a whole validation (name lookup, connect, TLS, headers,
body: ``--acme-validation-timeout``, 10 s by default), not each read: a target
that sends one byte a second is cut off when the deadline passes.  Names are
resolved through ``--acme-resolve NAME=ADDRESS`` first (``*`` for every name;
tests and closed networks, like Pebble's), else with dnspython (A, then AAAA;
``--acme-dns-resolver`` or the system's servers).  An address that is not
public (:mod:`twcactl.serve.addresses`) is refused unless ``--acme-resolve``
named it or ``--acme-allow-private`` is on.  http-01 connects to
``--acme-http01-port`` (80), sends the identifier as Host and follows no
redirect.

A failure is a problem document whose detail names its class only
(:data:`FAILURE_CLASSES`): never the address, status, body or certificate that
answered, so that validation cannot be used to look around the CA's network.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from twcactl.authority.acme import AcmeProblem
from twcactl.serve.addresses import forbidden_class

#: Seconds one validation may take in all (connect, TLS, headers and body together).
TIMEOUT = 10.0
MAX_BODY = 8192

#: The failure classes a problem document names, with the RFC 8555 §6.7 error type each is reported as.
FAILURE_CLASSES = {
    "timeout": "connection",
    "refused": "connection",
    "no address": "dns",
    "forbidden address": "rejectedIdentifier",
    "wrong content": "incorrectResponse",
    "tls": "tls",
}


class Failure(Exception):
    """A validation failed; ``kind`` is one of :data:`FAILURE_CLASSES`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail

    def problem(self, challenge: str) -> AcmeProblem:
        """The problem document recorded on the challenge (no detail of what answered); every dns-01 failure is
        of type ``dns`` (RFC 8555 §6.7: a problem with the DNS query or answer)."""
        acme_type = "dns" if challenge == "dns-01" else FAILURE_CLASSES[self.kind]
        return AcmeProblem(acme_type, f"{challenge}: {self.kind}: {self.detail}")


class Deadline:
    """The end of one validation, on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left.

        Raises:
            Failure: ``timeout`` when none are.
        """
        left = self.end - time.monotonic()
        if left <= 0:
            raise Failure("timeout", f"the validation did not finish within {self.seconds:g} s.")
        return left


@dataclass(frozen=True)
class Settings:
    """How validations reach their targets (``twcactl serve --acme-*``)."""

    resolve: dict[str, str] = field(default_factory=dict)
    allow_private: bool = False
    http01_port: int = 80
    tls_alpn_port: int = 443
    dns_server: tuple[str, int] | None = None
    timeout: float = TIMEOUT


class DeadlineSocket(socket.socket):
    """A TCP socket whose every blocking call waits at most until the validation's deadline."""

    deadline: Deadline

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self.settimeout(self.deadline.left())
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.settimeout(self.deadline.left())
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.settimeout(self.deadline.left())
        super().sendall(data, flags)


def _resolver(settings: Settings, deadline: Deadline) -> Any:
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=settings.dns_server is None)
    if settings.dns_server is not None:
        resolver.nameservers = [settings.dns_server[0]]
        resolver.port = settings.dns_server[1]
    resolver.lifetime = deadline.left()
    return resolver


def addresses(name: str, settings: Settings, deadline: Deadline) -> list[str]:
    """The addresses a validation of ``name`` may connect to, in the order to try them.

    Raises:
        Failure: ``no address`` (no A or AAAA record), ``forbidden address`` (every address is not public),
            ``timeout``.
    """
    named = settings.resolve.get(name, settings.resolve.get("*"))
    if named is not None:
        return [named]  # the operator named it: any address goes
    import dns.exception
    import dns.resolver

    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            found += [r.address for r in _resolver(settings, deadline).resolve(name, rdtype)]
        except dns.exception.Timeout as exc:
            raise Failure("timeout", f"the name lookup did not finish within {deadline.seconds:g} s.") from exc
        except dns.exception.DNSException:
            continue
    if not found:
        raise Failure("no address", "the name has no A or AAAA record.")
    if settings.allow_private:
        return found
    public = [a for a in found if forbidden_class(a) is None]
    if not public:
        raise Failure("forbidden address", "the name resolves to an address that is not public.")
    return public


def connect(name: str, port: int, settings: Settings, deadline: Deadline) -> DeadlineSocket:
    """A TCP connection to the first address of ``name`` that answers, bounded by ``deadline``.

    Raises:
        Failure: as :func:`addresses`; ``refused`` (no address accepted the connection), ``timeout``.
    """
    for address in addresses(name, settings, deadline):
        ip = ipaddress.ip_address(address)
        sock = DeadlineSocket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        sock.deadline = deadline
        try:
            sock.settimeout(deadline.left())
            sock.connect((address, port))
            return sock
        except TimeoutError as exc:
            sock.close()
            raise Failure("timeout", f"no connection within {deadline.seconds:g} s.") from exc
        except OSError:
            sock.close()
        except Failure:
            sock.close()
            raise
    raise Failure("refused", "the connection was refused or could not be made.")


def check_http01(name: str, token: str, key_authorization: str, settings: Settings, deadline: Deadline) -> None:
    """``http://NAME:PORT/.well-known/acme-challenge/TOKEN`` answers 200 with the key authorization.

    Raises:
        Failure: every class of :data:`FAILURE_CLASSES`.
    """
    sock = connect(name, settings.http01_port, settings, deadline)
    conn = http.client.HTTPConnection(name, settings.http01_port)
    conn.sock = sock
    try:
        conn.request("GET", f"/.well-known/acme-challenge/{token}", headers={"Host": name})
        response = conn.getresponse()
        body = response.read(MAX_BODY)
    except TimeoutError as exc:
        raise Failure("timeout", f"no whole answer within {deadline.seconds:g} s.") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise Failure("refused", "the connection failed or the answer is not HTTP.") from exc
    finally:
        conn.close()
    if response.status != 200 or body.strip() != key_authorization.encode("ascii"):
        raise Failure("wrong content", "the answer is not HTTP 200 with the key authorization.")


def check_dns01(name: str, key_authorization: str, settings: Settings, deadline: Deadline) -> None:
    """``_acme-challenge.NAME`` has a TXT record with base64url(SHA-256(key authorization)).

    Raises:
        Failure: ``timeout``, ``wrong content`` (no such record).
    """
    import dns.exception

    expected = base64.urlsafe_b64encode(hashlib.sha256(key_authorization.encode("ascii")).digest()).rstrip(b"=")
    try:
        answer = _resolver(settings, deadline).resolve(f"_acme-challenge.{name}", "TXT")
    except dns.exception.Timeout as exc:
        raise Failure("timeout", f"the TXT lookup did not finish within {deadline.seconds:g} s.") from exc
    except dns.exception.DNSException as exc:
        raise Failure("wrong content", f"no TXT record at _acme-challenge.{name}.") from exc
    if not any(b"".join(record.strings) == expected for record in answer):
        raise Failure("wrong content", f"no TXT record at _acme-challenge.{name} holds the expected value.")
