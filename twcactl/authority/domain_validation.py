"""Domain validation records of the RA path and the ACME path (BR §3.2.2.4, §4.2.1; issue 26).

- :func:`start_validation` (``twcactl domain validate``) makes a random value for an agreed domain;
- :func:`check_validation` (``twcactl domain check``) looks for it from the primary perspective and, in
  public-trust mode, has the remote perspectives corroborate (BR §3.2.2.9), then records the method, value,
  time, operator and what was seen;
- :func:`record_acme_validation` records an ACME challenge that succeeded (http-01, dns-01, tls-alpn-01);
- :func:`domain_status` says, for ``account show``, each agreed domain's validation and when it lapses.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twcactl.errors import NotFoundError, PolicyError, StateError
from twcactl.models import Finding
from twcactl.policy.checks import normalise_domain
from twcactl.rules import public_trust as br
from twcactl.rules.times import parse_rfc3339, rfc3339, utcnow
from twcactl.store import Store
from twcactl.store.validations import ValidationRecord
from twcactl.validation import methods, perspectives
from twcactl.validation.resolver import DnsServer


@dataclass(frozen=True)
class Started:
    """A new random value: the record and where the applicant puts it (a TXT owner name or a URL)."""

    record: ValidationRecord
    where: str

    def to_json(self) -> dict[str, object]:
        """``{"validation": {...}, "where": ...}``."""
        return {"validation": self.record.to_json(), "where": self.where}


def _agreed(store: Store, account_id: str, domain: str) -> str:
    account = store.accounts.get(account_id, ledger=False)
    name = normalise_domain(domain)
    if name not in account.domains:
        raise NotFoundError(f"{name} is not an agreed domain of account {account_id}.",
                            hint=f"twcactl account set {account_id} --add-domain {name}")
    return name


def start_validation(store: Store, account_id: str, domain: str, *, method: str, operator: str) -> Started:
    """Make a random value (160 bits, BR §1.6.1) for ``domain`` of ``account_id``, valid for 30 days, logged as
    ``domain.validate``.

    Raises:
        StateError: ``operator`` is not a manager (exit 5).
        NotFoundError: no such account, or ``domain`` is not one of its agreed domains (exit 5).
        UsageError: ``method`` is not ``dns-txt`` or ``http-file`` (exit 2).
    """
    store.operators.require_manager(operator)
    methods.require_method(method)
    name = _agreed(store, account_id, domain)
    now = utcnow()
    value = methods.new_random_value()
    where = methods.where(method, name, value, http_port=store.settings().dv_http_port)
    with store.transaction():
        store.validations.add(account_id=account_id, domain=name, method=method, value=value,
                              created_at=rfc3339(now), expires_at=rfc3339(methods.random_value_expiry(now)),
                              operator=operator)
        store.log.append(operator=operator, action="domain.validate", account=account_id,
                         details={"domain": name, "method": method, "where": where,
                                  "expires_at": rfc3339(methods.random_value_expiry(now))})
    record = store.validations.pending(account_id, name)
    assert record is not None
    return Started(record, where)


def mpic_token(store: Store) -> str:
    """The bearer token of the remote perspectives (the file ``mpic_token_file`` names; "" when unset).

    Raises:
        StateError: the file cannot be read (exit 5).
    """
    path = store.settings().mpic_token_file
    if not path:
        return ""
    try:
        return Path(path).read_text("utf-8").strip()
    except OSError as exc:
        raise StateError(f"mpic_token_file {path} cannot be read: {exc.strerror}.") from exc


def corroborate(store: Store, body: dict[str, Any], now: dt.datetime,
                what: str) -> list[perspectives.PerspectiveAnswer]:
    """Ask the configured remote perspectives ``body`` and apply the count and quorum of ``now``
    (:func:`twcactl.rules.public_trust.mpic_rule`, BR §3.2.2.9).

    Returns:
        The perspectives' answers (for the record).

    Raises:
        PolicyError: fewer perspectives than the date requires (``mpic.count``) or too many not corroborating
            (``mpic.quorum``); ``details["perspectives"]`` holds every answer.
    """
    urls = perspectives.perspective_urls(store.settings().mpic_perspectives)
    answers = perspectives.ask_all(urls, mpic_token(store), body) if urls else []
    rule = br.mpic_rule(now, len(urls))
    agreeing = sum(1 for a in answers if a.passed)
    if rule.corroborated(agreeing):
        return answers
    code = "mpic.count" if len(urls) < rule.required else "mpic.quorum"
    message = (f"{what}: {agreeing} of {len(urls)} remote perspectives corroborated; on {now:%Y-%m-%d} BR 3.2.2.9 "
               f"asks at least {rule.required} perspectives with at most {rule.allowed_failures} not corroborating")
    hint = ("configure the remote perspectives: twcactl ca config mpic_perspectives http://P1:PORT,http://P2:PORT,..."
            if code == "mpic.count" else "the perspectives' answers are in the error document and the log")
    raise PolicyError(message, hint=hint, findings=[Finding(code, False, message)],
                      details={"perspectives": [a.to_json() for a in answers], "required": rule.required,
                               "allowed_failures": rule.allowed_failures, "corroborated": agreeing})


def check_validation(store: Store, account_id: str, domain: str, *, operator: str) -> ValidationRecord:
    """Look for the pending random value of ``domain`` (BR §3.2.2.4.7 TXT / §3.2.2.4.18 file) and record what was
    seen (``domain.check`` in the log).  In public-trust mode the remote perspectives must corroborate it
    (BR §3.2.2.9).

    Returns:
        The completed validation.

    Raises:
        NotFoundError: no pending value (run ``domain validate``) or not an agreed domain (exit 5).
        StateError: the random value expired (exit 5).
        PolicyError: the value was not found (``dcv.not_found``) or not corroborated (``mpic.*``) (exit 1).
    """
    store.operators.require_manager(operator)
    name = _agreed(store, account_id, domain)
    pending = store.validations.pending(account_id, name)
    if pending is None:
        raise NotFoundError(f"no pending validation of {name}.",
                            hint=f"twcactl domain validate {account_id} {name} --method dns-txt")
    now = utcnow()
    if parse_rfc3339(pending.expires_at) < now:
        raise StateError(f"the random value for {name} expired on {pending.expires_at[:10]} (BR 3.2.2.4.7: 30 days).",
                         hint=f"twcactl domain validate {account_id} {name} --method {pending.method}")
    settings = store.settings()
    seen = methods.check(pending.method, name, pending.value, server=DnsServer.parse(settings.dns_resolver),
                         http_port=settings.dv_http_port)
    record: dict[str, Any] = {"primary": seen.seen, "found": seen.found, "br_method": methods.BR_METHOD[pending.method]}
    failure: PolicyError | None = None
    if not seen.found:
        failure = PolicyError(f"{name}: dcv.not_found: the random value is not at "
                              f"{methods.where(pending.method, name, pending.value, http_port=settings.dv_http_port)}",
                              findings=[Finding("dcv.not_found", False, "the random value was not seen")],
                              details={"seen": seen.seen})
    elif settings.public_trust:
        try:
            record["perspectives"] = [a.to_json() for a in corroborate(
                store, perspectives.dcv_request(name, pending.method, pending.value), now, name)]
        except PolicyError as exc:
            record["perspectives"] = exc.details.get("perspectives", [])
            failure = exc
    with store.transaction():
        if failure is None:
            store.validations.mark_validated(pending.value, validated_at=rfc3339(now), seen=record)
        else:
            store.validations.note_seen(pending.value, record)
        store.log.append(operator=operator, action="domain.check", account=account_id,
                         details={"domain": name, "method": pending.method, "validated": failure is None,
                                  "seen": record})
    if failure is not None:
        raise failure
    done = store.validations.latest(account_id, name)
    assert done is not None
    return done


def corroborate_acme(store: Store, challenge_type: str, identifier: str, token: str,
                     key_authorization: str) -> tuple[str | None, list[dict[str, Any]]]:
    """In public-trust mode, have the remote perspectives check a successful ACME challenge again (BR §3.2.2.9):
    ``(None, answers)`` when corroborated (or not public-trust, or a type they cannot check), else
    ``(why, answers)``."""
    if not store.settings().public_trust or challenge_type not in methods.ACME_CHECKS:
        return None, []
    body = perspectives.acme_dcv_request(identifier, challenge_type, token, key_authorization)
    try:
        answers = corroborate(store, body, utcnow(), identifier)
    except PolicyError as exc:
        return exc.message, list(exc.details.get("perspectives", []))
    return None, [a.to_json() for a in answers]


def record_acme_validation(store: Store, account_id: str, identifier: str, challenge_type: str, token: str,
                           when: dt.datetime, operator: str, seen: dict[str, Any] | None = None) -> None:
    """Record an ACME challenge that succeeded as a domain validation (inside the caller's transaction).
    http-01 is BR §3.2.2.4.19, dns-01 §3.2.2.4.7, tls-alpn-01 §3.2.2.4.20."""
    method = methods.ACME_METHODS.get(challenge_type)
    if method is None:
        return
    domain = identifier.lower().removeprefix("*.")
    store.validations.add(account_id=account_id, domain=domain, method=method, value=token,
                          created_at=rfc3339(when), expires_at=rfc3339(when), operator=operator,
                          validated_at=rfc3339(when), seen={"acme_challenge": challenge_type, **(seen or {})})


def covering_validation(store: Store, account_id: str, name: str) -> ValidationRecord | None:
    """The newest validation that covers ``name``: of the name itself or of a parent domain (an Authorization
    Domain Name, BR §1.6.1), ``*.`` ignored."""
    labels = name.lower().rstrip(".").removeprefix("*.").split(".")
    best: ValidationRecord | None = None
    for i in range(len(labels) - 1):
        found = store.validations.latest(account_id, ".".join(labels[i:]))
        if found is not None and (best is None or (found.validated_at or "") > (best.validated_at or "")):
            best = found
    return best


def domain_status(store: Store, account_id: str, domains: tuple[str, ...],
                  now: dt.datetime | None = None) -> list[dict[str, object]]:
    """For ``account show``: each agreed domain's newest validation and when it lapses for issuance on ``now``
    (the reuse period of BR §4.2.1 in force then)."""
    now = now or utcnow()
    out: list[dict[str, object]] = []
    for domain in domains:
        found = store.validations.latest(account_id, domain)
        if found is None or found.validated_at is None:
            out.append({"domain": domain, "method": None, "validated_at": None, "lapses_at": None, "current": False})
            continue
        lapses = br.validation_lapses(parse_rfc3339(found.validated_at), now)
        out.append({"domain": domain, "method": found.method, "validated_at": found.validated_at,
                    "lapses_at": rfc3339(lapses), "current": now <= lapses})
    return out
