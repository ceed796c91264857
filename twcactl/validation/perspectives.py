"""Multi-perspective issuance corroboration (BR §3.2.2.9, ballot SC-067; issue 26).

A remote network perspective (``twcactl serve --perspective``) answers one check from its own network position
with its own resolver: a domain-validation check (``dcv``: is the random value there?) or a CAA check (``caa``:
may this CA issue?).  The request and answer follow the shape of the Open MPIC API where it fits
(``check_type``, ``domain_or_ip_target``, ``dcv_check_parameters`` / ``caa_check_parameters``; the answer's
``check_passed`` and ``details``), over HTTP with a bearer token shared by the primary and its perspectives.

The primary asks every configured perspective at once and counts the ones whose answer corroborates its own;
:func:`twcactl.rules.public_trust.mpic_rule` says whether that count meets the date's count and quorum.  A
perspective that cannot be reached, refuses the token or answers nonsense does not corroborate.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from twcactl.errors import UsageError
from twcactl.validation import caa, methods
from twcactl.validation.resolver import DnsServer

TIMEOUT = 10.0
PATH = "/mpic"


@dataclass
class PerspectiveAnswer:
    """One perspective's answer: its URL, whether it was reached, whether its check passed, what it saw."""

    url: str
    reached: bool
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The answer as a JSON object (the error document and the log hold these)."""
        return {"perspective": self.url, "reached": self.reached, "check_passed": self.passed,
                "details": self.details, "error": self.error}


def dcv_request(domain: str, method: str, value: str) -> dict[str, Any]:
    """The body asking a perspective to look for ``value`` by ``method`` (``dns-txt`` / ``http-file``)."""
    return {"check_type": "dcv", "domain_or_ip_target": domain,
            "dcv_check_parameters": {"validation_method": method, "challenge_value": value}}


def acme_dcv_request(domain: str, kind: str, token: str, key_authorization: str) -> dict[str, Any]:
    """The body asking a perspective to check an ACME challenge again (``http-01`` / ``dns-01``)."""
    return {"check_type": "dcv", "domain_or_ip_target": domain,
            "dcv_check_parameters": {"validation_method": kind, "token": token,
                                     "key_authorization": key_authorization}}


def caa_request(request: caa.CaaRequest) -> dict[str, Any]:
    """The body asking a perspective whether CAA lets this CA issue for ``request.name``."""
    return {"check_type": "caa", "domain_or_ip_target": request.name,
            "caa_check_parameters": {"caa_domains": list(request.identities), "account_uri": request.account_uri,
                                     "validation_method": request.method}}


def answer_check(body: dict[str, Any], *, server: DnsServer, http_port: int) -> dict[str, Any]:
    """Do the check ``body`` asks for from this perspective (the remote side): ``{"check_passed", "details"}``.

    Raises:
        UsageError: a body that is not a dcv or caa check (the endpoint answers 400).
    """
    target = body.get("domain_or_ip_target")
    if not isinstance(target, str) or not target:
        raise UsageError("domain_or_ip_target is required.")
    if body.get("check_type") == "dcv":
        params = body.get("dcv_check_parameters") or {}
        method, value = params.get("validation_method"), params.get("challenge_value")
        token, key_authorization = params.get("token"), params.get("key_authorization")
        if method in methods.ACME_CHECKS and isinstance(token, str) and isinstance(key_authorization, str):
            seen = methods.check_acme(method, target, token, key_authorization, server=server, http_port=http_port)
            return {"check_type": "dcv", "check_passed": seen.found, "details": seen.seen}
        if method not in methods.METHODS or not isinstance(value, str):
            raise UsageError("dcv_check_parameters needs validation_method and challenge_value.")
        seen = methods.check(method, target, value, server=server, http_port=http_port)
        return {"check_type": "dcv", "check_passed": seen.found, "details": seen.seen}
    if body.get("check_type") == "caa":
        params = body.get("caa_check_parameters") or {}
        identities = params.get("caa_domains") or []
        if not isinstance(identities, list) or not all(isinstance(i, str) for i in identities):
            raise UsageError("caa_check_parameters.caa_domains is a list of names.")
        verdict = caa.check_caa(caa.CaaRequest(target, tuple(identities), params.get("account_uri"),
                                               params.get("validation_method")), server)
        return {"check_type": "caa", "check_passed": verdict.allowed, "details": verdict.to_json()}
    raise UsageError("check_type is dcv or caa.")


def token_matches(header: str | None, token: str) -> bool:
    """True when an ``Authorization: Bearer TOKEN`` header carries ``token`` (compared in constant time)."""
    if not token or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].encode(), token.encode())


def _ask(url: str, token: str, body: dict[str, Any]) -> PerspectiveAnswer:
    import urllib.error  # loaded when a perspective is asked (urllib.request loads tempfile: issue 18 start-up)
    import urllib.request

    request = urllib.request.Request(url.rstrip("/") + PATH, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (configured http(s) URL)
            doc = json.loads(response.read(65_536))
    except urllib.error.HTTPError as exc:
        return PerspectiveAnswer(url, True, False, error=f"HTTP {exc.code}")
    except (OSError, ValueError) as exc:
        return PerspectiveAnswer(url, False, False, error=f"unreachable: {type(exc).__name__}")
    if not isinstance(doc, dict) or not isinstance(doc.get("check_passed"), bool):
        return PerspectiveAnswer(url, True, False, error="an answer without check_passed")
    details = doc.get("details")
    return PerspectiveAnswer(url, True, doc["check_passed"], details if isinstance(details, dict) else {})


def ask_all(urls: list[str], token: str, body: dict[str, Any]) -> list[PerspectiveAnswer]:
    """Ask every perspective at once; one answer per URL, in order.  Never raises for a perspective."""
    if not urls:
        return []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(16, len(urls))) as pool:
        return list(pool.map(lambda u: _ask(u, token, body), urls))


def perspective_urls(setting: str) -> list[str]:
    """The ``mpic_perspectives`` setting as a list of URLs (comma-separated)."""
    return [u.strip() for u in setting.split(",") if u.strip()]
