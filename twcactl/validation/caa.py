"""CAA: may this CA issue for a name? (RFC 8659, RFC 8657; BR §3.2.2.8; issue 26).

- The relevant record set is found by climbing the tree (RFC 8659 §3): the CAA records at the name, else at its
  parent, and so on up to the top-level domain; an empty answer (NOERROR without records, or NXDOMAIN) climbs.
- A lookup failure (SERVFAIL, a timeout, no server) refuses (``caa.lookup``; BR §3.2.2.8 lets a CA issue
  only when the failure is outside its infrastructure *and* the zone has no DNSSEC: twcactl cannot tell, so
  it refuses).
- A record with the critical flag (128) and a tag twcactl does not know refuses (``caa.critical``, RFC 8659
  §4.1).
- ``issuewild`` records govern wildcard names (and only them); without any, ``issue`` governs wildcards too
  (RFC 8659 §4.3).  With no ``issue``/``issuewild`` record in the set, anyone may issue.
- An ``issue`` value names an issuer domain (``ca config caa_identities``); ``;`` alone names none
  (``caa.forbidden``).  RFC 8657 parameters: ``accounturi`` must equal the ACME account's URI (a request
  without one, the RA path, does not match: ``caa.accounturi``); ``validationmethods`` must list the method
  used (ACME challenge types; the RA methods are ``ca-dns-txt`` and ``ca-http-file``: ``caa.validationmethods``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twcactl.validation.resolver import DnsServer

#: Property tags twcactl understands (RFC 8659 §4.2-4.4, RFC 8657); other tags with the critical flag refuse.
KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef", "contactemail", "contactphone", "issuemail", "issuevmc"})
CRITICAL = 128


@dataclass(frozen=True)
class CaaRequest:
    """What is asked: the name (``*.`` for a wildcard), the CA's issuer domains, and for RFC 8657 the ACME
    account URI (None off the ACME path) and the validation method used (an ACME challenge type or
    ``ca-dns-txt`` / ``ca-http-file``; None when unknown)."""

    name: str
    identities: tuple[str, ...]
    account_uri: str | None = None
    method: str | None = None


@dataclass
class CaaAnswer:
    """The verdict for one name: ``allowed``; ``rule`` (``caa.forbidden``, ``caa.critical``, ``caa.lookup``,
    ``caa.accounturi``, ``caa.validationmethods``) and a reason when refused; where the relevant record set was
    found and its records (presentation format)."""

    name: str
    allowed: bool
    rule: str | None = None
    reason: str = ""
    found_at: str | None = None
    records: list[str] = field(default_factory=list)
    #: the relevant records as ``[flags, tag, value]`` (what a reuse within 8 hours judges again)
    raw: list[list[Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The answer as a JSON object (what the log and the error document hold)."""
        return {"name": self.name, "allowed": self.allowed, "rule": self.rule, "reason": self.reason,
                "found_at": self.found_at, "records": self.records}


@dataclass(frozen=True)
class Record:
    flags: int
    tag: str
    value: str


def relevant_records(name: str, server: DnsServer) -> tuple[str | None, list[Record]]:
    """The relevant CAA record set of ``name`` (RFC 8659 §3): ``(owner name, records)``; ``(None, [])`` when no
    name up to the TLD has any.

    Raises:
        dns.exception.DNSException: a lookup failed (SERVFAIL, timeout): the caller refuses.
    """
    import dns.resolver

    labels = name.lower().rstrip(".").removeprefix("*.").split(".")
    resolver = server.resolver()
    for i in range(len(labels)):
        owner = ".".join(labels[i:])
        try:
            answer = resolver.resolve(owner, "CAA")
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        records = [Record(int(r.flags), r.tag.decode("ascii", "replace").lower(),
                           r.value.decode("utf-8", "replace")) for r in answer]
        if records:
            return owner, records
    return None, []


def _parse_issue(value: str) -> tuple[str, dict[str, str]]:
    """An ``issue`` value: ``(issuer domain, {parameter: value})`` (RFC 8659 §4.2)."""
    domain, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        key, eq, val = item.strip().partition("=")
        if eq and key.strip():
            params[key.strip().lower()] = val.strip()
    return domain.strip().lower(), params


def evaluate(request: CaaRequest, owner: str | None, records: list[Record]) -> CaaAnswer:
    """The verdict of a relevant record set for ``request`` (RFC 8659 §4, RFC 8657 §3-4); pure."""
    shown = [f'{r.flags} {r.tag} "{r.value}"' for r in records]
    answer = CaaAnswer(name=request.name, allowed=True, found_at=owner, records=shown,
                       raw=[[r.flags, r.tag, r.value] for r in records])
    unknown = [r for r in records if r.flags & CRITICAL and r.tag not in KNOWN_TAGS]
    if unknown:
        answer.allowed, answer.rule = False, "caa.critical"
        answer.reason = f"{owner} has a CAA record with the critical flag and unknown tag {unknown[0].tag!r}"
        return answer
    wildcard = request.name.startswith("*.")
    issuewild = [r for r in records if r.tag == "issuewild"]
    relevant = issuewild if wildcard and issuewild else [r for r in records if r.tag == "issue"]
    if not relevant:
        return answer
    identities = {i.lower().rstrip(".") for i in request.identities}
    ours = [params for domain, params in map(_parse_issue, (r.value for r in relevant)) if domain in identities]
    tag = "issuewild" if wildcard and issuewild else "issue"
    if not ours:
        answer.allowed, answer.rule = False, "caa.forbidden"
        answer.reason = (f"the CAA {tag} records of {owner} do not name this CA "
                         f"({', '.join(sorted(identities)) or 'no caa_identities set'})")
        return answer
    refusals: list[tuple[str, str]] = []
    for params in ours:
        uri = params.get("accounturi")
        methods = params.get("validationmethods")
        if uri is not None and uri != request.account_uri:
            refusals.append(("caa.accounturi", f"the CAA {tag} record of {owner} allows only ACME account {uri}"))
            continue
        if methods is not None and request.method not in {m.strip() for m in methods.split(",")}:
            refusals.append(("caa.validationmethods",
                             f"the CAA {tag} record of {owner} allows only validation methods {methods}"))
            continue
        return answer
    answer.allowed, (answer.rule, answer.reason) = False, refusals[0]
    return answer


def check_caa(request: CaaRequest, server: DnsServer) -> CaaAnswer:
    """Look the relevant CAA records of ``request.name`` up through ``server`` and judge them (BR §3.2.2.8).
    Never raises for DNS: a failed lookup is a refusing answer (``caa.lookup``)."""
    import dns.exception

    try:
        owner, records = relevant_records(request.name, server)
    except dns.exception.DNSException as exc:
        return CaaAnswer(name=request.name, allowed=False, rule="caa.lookup",
                         reason=f"the CAA lookup for {request.name} failed ({type(exc).__name__}); "
                                "a CA issues only after a CAA answer (BR 3.2.2.8)")
    return evaluate(request, owner, records)
