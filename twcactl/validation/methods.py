"""Domain validation methods of the registration authority (BR §3.2.2.4; issue 26).

- ``dns-txt`` (BR §3.2.2.4.7 "DNS Change"): the random value in a TXT record at ``_pki-validation.DOMAIN``
  (an underscore label under the domain).
- ``http-file`` (BR §3.2.2.4.18 "Agreed-Upon Change to Website v2"): the random value in the file
  ``http://DOMAIN:PORT/.well-known/pki-validation/<value>.txt``; the port is ``ca config dv_http_port``
  (80 in production); redirects are not followed.

The random value has 160 bits from :mod:`secrets` (BR §1.6.1: at least 112 bits) and may be used for
:data:`RANDOM_VALUE_DAYS` days (BR §3.2.2.4.7: a random value is valid for at most 30 days).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import secrets
from dataclasses import dataclass, field
from typing import Any

from twcactl.errors import UsageError
from twcactl.validation.resolver import DnsServer

METHODS = ("dns-txt", "http-file")
#: ACME challenge types recorded as validations when they succeed (RFC 8555 §8.3, §8.4; RFC 8737).
ACME_METHODS = {"http-01": "acme-http-01", "dns-01": "acme-dns-01", "tls-alpn-01": "acme-tls-alpn-01"}
#: The BR §3.2.2.4 method of each recorded method.
BR_METHOD = {"dns-txt": "3.2.2.4.7", "http-file": "3.2.2.4.18", "acme-dns-01": "3.2.2.4.7",
             "acme-http-01": "3.2.2.4.19", "acme-tls-alpn-01": "3.2.2.4.20"}
RANDOM_VALUE_BITS = 160
RANDOM_VALUE_DAYS = 30
DNS_LABEL = "_pki-validation"
HTTP_PATH = "/.well-known/pki-validation/"
MAX_BODY = 8192
TIMEOUT = 5.0


def new_random_value() -> str:
    """A fresh random value: 160 bits (BR §1.6.1 asks at least 112), base64url without padding."""
    return secrets.token_urlsafe(RANDOM_VALUE_BITS // 8)


def random_value_expiry(created: dt.datetime) -> dt.datetime:
    """Until when a random value made at ``created`` may be found (BR §3.2.2.4.7: 30 days)."""
    return created + dt.timedelta(days=RANDOM_VALUE_DAYS)


def require_method(method: str) -> str:
    """``method`` when it is ``dns-txt`` or ``http-file``.

    Raises:
        UsageError: another method (exit 2).
    """
    if method not in METHODS:
        raise UsageError(f"the validation method is one of {', '.join(METHODS)}, not {method!r}.")
    return method


def where(method: str, domain: str, value: str, *, http_port: int = 80) -> str:
    """Where the applicant puts the value: the TXT owner name or the file's URL."""
    if method == "dns-txt":
        return f"{DNS_LABEL}.{domain}"
    port = "" if http_port == 80 else f":{http_port}"
    return f"http://{domain}{port}{HTTP_PATH}{value}.txt"


@dataclass
class Observation:
    """What one perspective saw: whether the value was there, and the raw answer (TXT strings, an HTTP status
    and body head, or the error)."""

    found: bool
    seen: dict[str, Any] = field(default_factory=dict)


def check(method: str, domain: str, value: str, *, server: DnsServer, http_port: int) -> Observation:
    """Look for ``value`` by ``method`` from this perspective (its resolver ``dns``).  Never raises for the
    outside world: a DNS or HTTP failure is an observation that did not find the value."""
    if method == "dns-txt":
        return _check_txt(domain, value, server)
    return _check_file(domain, value, server, http_port)


def _check_txt(domain: str, value: str, server: DnsServer) -> Observation:
    return _txt_holds(f"{DNS_LABEL}.{domain}", value, server)


def _txt_holds(name: str, value: str, server: DnsServer) -> Observation:
    """Whether a TXT record at ``name`` is exactly ``value``, with what the lookup saw (never raises for the
    outside world: a DNS failure is a failed observation naming its class)."""
    import dns.exception

    try:
        answer = server.resolver().resolve(name, "TXT")
    except dns.exception.DNSException as exc:
        return Observation(False, {"query": name, "type": "TXT", "error": type(exc).__name__})
    strings = sorted(b"".join(r.strings).decode("ascii", "replace") for r in answer)
    return Observation(value in strings, {"query": name, "type": "TXT", "txt": strings})


def address_of(domain: str, server: DnsServer) -> str:
    """The first A (else AAAA) address of ``domain`` as this perspective's resolver answers.

    Raises:
        dns.exception.DNSException: no address.
    """
    import dns.resolver

    resolver = server.resolver()
    try:
        return str(resolver.resolve(domain, "A")[0])
    except dns.resolver.NoAnswer:
        return str(resolver.resolve(domain, "AAAA")[0])


def _get(domain: str, port: int, path: str, server: DnsServer, seen: dict[str, Any]) -> tuple[int, bytes] | None:
    """GET ``path`` from ``domain``'s address (looked up through ``server``) with ``Host: domain``: the status
    and at most :data:`MAX_BODY` bytes, or None with the failure written into ``seen`` (as is the address)."""
    import dns.exception

    try:
        seen["address"] = address = address_of(domain, server)
    except dns.exception.DNSException as exc:
        seen["error"] = f"no address: {type(exc).__name__}"
        return None
    try:
        conn = http.client.HTTPConnection(address, port, timeout=TIMEOUT)
        try:
            conn.request("GET", path, headers={"Host": domain})
            response = conn.getresponse()
            return response.status, response.read(MAX_BODY)
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        seen["error"] = type(exc).__name__
        return None


def _check_file(domain: str, value: str, server: DnsServer, port: int) -> Observation:
    seen: dict[str, Any] = {"url": where("http-file", domain, value, http_port=port)}
    got = _get(domain, port, f"{HTTP_PATH}{value}.txt", server, seen)
    if got is None:
        return Observation(False, seen)
    status, body = got
    text = body.decode("ascii", "replace").strip()
    return Observation(status == 200 and value in text.split(), {**seen, "status": status, "body": text[:200]})


#: ACME challenge types a remote perspective can check again (RFC 8555 §8.3, §8.4).
ACME_CHECKS = ("http-01", "dns-01")


def check_acme(kind: str, domain: str, token: str, key_authorization: str, *, server: DnsServer,
               http_port: int) -> Observation:
    """Check an ACME challenge again from this perspective (BR §3.2.2.9 for ACME orders): http-01 fetches
    ``/.well-known/acme-challenge/TOKEN`` (RFC 8555 §8.3), dns-01 looks for base64url(SHA-256(key
    authorization)) at ``_acme-challenge.DOMAIN`` (§8.4).  Never raises for the outside world."""
    if kind == "dns-01":
        expected = base64.urlsafe_b64encode(hashlib.sha256(key_authorization.encode("ascii")).digest()).rstrip(b"=")
        return _txt_holds(f"_acme-challenge.{domain}", expected.decode(), server)
    seen: dict[str, Any] = {"path": f"/.well-known/acme-challenge/{token}"}
    got = _get(domain, http_port, seen["path"], server, seen)
    if got is None:
        return Observation(False, seen)
    status, body = got
    return Observation(status == 200 and body.strip() == key_authorization.encode("ascii"), {**seen, "status": status})
