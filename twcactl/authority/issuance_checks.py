"""What a public-trust issuance must pass before the CA key signs (issue 26): the names (BR §7.1.2.7.12), the
RSA modulus (BR §6.1.5), a domain validation within the reuse period of the day (BR §3.2.2.4, §4.2.1), CAA for
every name (BR §3.2.2.8, RFC 8659 / 8657) corroborated by the remote perspectives (BR §3.2.2.9).

:func:`before_signing` is the one hook :mod:`twcactl.authority.lifecycle` calls for issue, batch, card and renew
(ACME finalize goes through them); :func:`acme_account` tells it the ACME account URI of an ACME order (RFC
8657 ``accounturi``).  The CAA answers and the perspectives' answers are recorded (``caa_checks``) and logged
(``caa.check``), refusals too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from twcactl.authority import domain_validation as dv
from twcactl.errors import PolicyError
from twcactl.models import Finding
from twcactl.rules import public_trust as br
from twcactl.rules.times import parse_rfc3339, rfc3339
from twcactl.store import Store
from twcactl.validation import caa, names, perspectives
from twcactl.validation.resolver import DnsServer

_ACME_ACCOUNT: ContextVar[str | None] = ContextVar("acme_account_uri", default=None)

#: The RFC 8657 ``validationmethods`` label of each recorded validation method.
CAA_METHOD = {"dns-txt": "ca-dns-txt", "http-file": "ca-http-file", "acme-http-01": "http-01",
              "acme-dns-01": "dns-01", "acme-tls-alpn-01": "tls-alpn-01"}


@contextlib.contextmanager
def acme_account(uri: str | None) -> Iterator[None]:
    """Within this block, issuance is for the ACME account ``uri`` (RFC 8657 ``accounturi``)."""
    token = _ACME_ACCOUNT.set(uri)
    try:
        yield
    finally:
        _ACME_ACCOUNT.reset(token)


def dns_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """The DNS names a certificate for ``csr`` holds: its CN and its DNS SANs, lower case, each once."""
    found = [str(a.value) for a in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found += san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    return list(dict.fromkeys(n.lower().rstrip(".") for n in found))


def name_findings(csr: x509.CertificateSigningRequest) -> list[Finding]:
    """Failed findings for internal / special-use names (``name.special_use``, ``name.tld``) and an RSA modulus
    that is not a multiple of 8 or under 2048 bits (``key.rsa_size``)."""
    found = [f for n in dns_names(csr) if (f := names.name_problem(n)) is not None]
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey) and (f := names.rsa_size_problem(key.key_size)) is not None:
        found.append(f)
    return found


def _dcv_findings(store: Store, account_id: str, hosts: list[str], now: dt.datetime) -> list[Finding]:
    days = br.dcv_reuse_days(now)
    found = []
    for host in hosts:
        record = dv.covering_validation(store, account_id, host)
        if record is None or record.validated_at is None:
            found.append(Finding("dcv.required", False, f"{host}: no domain validation (BR 3.2.2.4); "
                                 f"run twcactl domain validate {account_id} DOMAIN"))
        elif br.validation_lapses(parse_rfc3339(record.validated_at), now) < now:
            found.append(Finding("dcv.required", False, (
                f"{host}: the validation of {record.domain} on {record.validated_at[:10]} is older than the "
                f"{days}-day reuse period of {now:%Y-%m-%d} (BR 4.2.1, ballot SC-081); validate it again")))
    return found


def _caa(store: Store, account_id: str, host: str, now: dt.datetime, operator: str) -> dict[str, Any]:
    """The CAA verdict for ``host`` (reused for 8 hours, BR §3.2.2.8), corroborated when fresh.

    Raises:
        PolicyError: CAA forbids, the lookup failed, or the perspectives do not corroborate.
    """
    settings = store.settings()
    validation = dv.covering_validation(store, account_id, host)
    request = caa.CaaRequest(host, tuple(i.strip() for i in settings.caa_identities.split(",") if i.strip()),
                             _ACME_ACCOUNT.get(), CAA_METHOD.get(validation.method) if validation else None)
    wildcard = host.startswith("*.")
    since = rfc3339(now - dt.timedelta(seconds=br.CAA_REUSE_SECONDS))
    cached = store.validations.latest_caa(host, wildcard, since)
    if cached is not None and cached.allowed:
        raw = [caa.Record(int(f), str(t), str(v)) for f, t, v in cached.answer.get("raw", [])]
        verdict = caa.evaluate(request, cached.answer.get("found_at"), raw)
        if verdict.allowed:  # logged with this issuance too, naming the answer it reuses
            reused = {**verdict.to_json(), "reused_from": cached.checked_at}
            with store.transaction():
                store.log.append(operator=operator, action="caa.check", account=account_id,
                                 details={"name": host, "allowed": True, "answer": reused})
            return reused
    verdict = caa.check_caa(request, DnsServer.parse(settings.dns_resolver))
    answer: dict[str, Any] = {**verdict.to_json(), "raw": verdict.raw}
    failure: PolicyError | None = None
    if not verdict.allowed:
        failure = PolicyError(f"{host}: {verdict.rule}: {verdict.reason}",
                              findings=[Finding(verdict.rule or "caa.forbidden", False, verdict.reason)],
                              details={"caa": verdict.to_json()})
    else:
        try:
            answer["perspectives"] = [a.to_json() for a in dv.corroborate(
                store, perspectives.caa_request(request), now, f"CAA of {host}")]
        except PolicyError as exc:
            answer["perspectives"] = exc.details.get("perspectives", [])
            exc.details["caa"] = verdict.to_json()
            failure = exc
    with store.transaction():
        if verdict.rule != "caa.lookup":
            store.validations.add_caa(domain=host, wildcard=wildcard, checked_at=rfc3339(now),
                                      allowed=failure is None, answer=answer)
        store.log.append(operator=operator, action="caa.check", account=account_id,
                         details={"name": host, "allowed": failure is None, "answer": answer})
    if failure is not None:
        raise failure
    return answer


def before_signing(store: Store, requests: Sequence[tuple[str, str, x509.CertificateSigningRequest]], *,
                   now: dt.datetime, operator: str) -> dict[str, list[dict[str, Any]]]:
    """Every check of a public-trust issuance, for ``requests`` (``(account ID, CSR name, CSR)`` each), before
    anything is signed or charged.

    Returns:
        The CAA answers per CSR name (for the record).

    Raises:
        PolicyError: (exit 1, nothing changed but the CAA record and log) a name or key rule, a missing or
            lapsed validation (``dcv.required``), CAA (``caa.*``) or corroboration (``mpic.*``) refused.
    """
    answers: dict[str, list[dict[str, Any]]] = {}
    for account_id, name, csr in requests:
        hosts = dns_names(csr)
        failed = name_findings(csr) or _dcv_findings(store, account_id, hosts, now)
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise PolicyError(f"{name}: {failed[0].rule}: {failed[0].message}{more}", findings=failed)
        answers[name] = [_caa(store, account_id, host, now, operator) for host in hosts]
    return answers
