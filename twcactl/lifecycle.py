"""Operations on the local CA that change its records: issuing (more to come: renew, revoke, hold).

Each operation checks everything that can fail (role, input, account,
policy, quota, validity, CA passphrase) before its single transaction, so a
refusal changes nothing; derived files (``certs/<serial>.pem``) are written
after the commit and can always be rebuilt from the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl import csr as csr_mod
from twcactl import names
from twcactl.ca import load_ca_key
from twcactl.errors import InputError, PolicyError, QuotaError, TwcaError
from twcactl.fsutil import write_file
from twcactl.issue import CaUrls, Validity, build_leaf, check_within_issuer
from twcactl.pem import load_csr
from twcactl.policy import check_request
from twcactl.profiles import get_profile
from twcactl.records import CertRecord
from twcactl.serials import format_serial
from twcactl.store import Store
from twcactl.timeutil import utcnow

PassphraseProvider = Callable[[], "str | None"]


@dataclass(frozen=True)
class CsrInput:
    """A CSR as given on the command line: its file name and bytes."""

    name: str
    data: bytes


@dataclass
class IssueOutcome:
    """What ``issue_certificates`` did.

    Attributes:
        issued: the new records, in input order.
        failed: ``(file name, error)`` for refused requests (only with ``keep_going``).
        balance_before / balance_after: the account's certificate-years.
    """

    issued: list[CertRecord] = field(default_factory=list)
    failed: list[tuple[str, TwcaError]] = field(default_factory=list)
    balance_before: int = 0
    balance_after: int = 0


def _checked_csr(item: CsrInput, account_policy: object, profile: str) -> x509.CertificateSigningRequest:
    """Parse and policy-check one CSR; raises InputError (exit 3) or PolicyError (exit 1) with findings."""
    csr = load_csr(item.data, name=item.name)
    try:
        facts = csr_mod.facts(csr)
    except Exception as exc:
        raise InputError(f"{item.name}: the CSR's requested extensions cannot be decoded.") from exc
    result = check_request(facts, account_policy, profile)  # type: ignore[arg-type]
    if not result.ok:
        first = result.failed[0]
        more = f" (and {len(result.failed) - 1} more rule(s))" if len(result.failed) > 1 else ""
        raise PolicyError(
            f"{item.name}: {first.rule}: {first.message}{more}",
            hint=f"see every rule with: twcactl csr check {item.name} --account {getattr(account_policy, 'id', '')}",
            details={"findings": result.to_json()["findings"], "profile": profile},
        )
    return csr


def issue_certificates(
    store: Store,
    requests: Sequence[CsrInput],
    *,
    account_id: str,
    profile: str,
    validity: Validity,
    operator: str,
    passphrase: PassphraseProvider,
    contact: str | None = None,
    note: str | None = None,
    keep_going: bool = False,
) -> IssueOutcome:
    """Issue one certificate per CSR from the home's issuing CA under ``account_id``.

    Costs ``validity.cost`` certificate-years per certificate (domain.md §3).
    Without ``keep_going`` the batch is all or nothing: the first refused
    request is raised and nothing is issued.  With it, refused requests are
    reported in ``failed`` and the rest are issued.  The whole batch is one
    transaction (durable when this returns).

    Raises:
        StateError: operator not a manager, unknown account (exit 5).
        InputError: a CSR is missing or malformed (exit 3).
        PolicyError: a CSR breaks the account's policy (exit 1), with ``details["findings"]``.
        QuotaError: the balance cannot pay for the batch (exit 5).
        StateError: the validity would pass the issuing CA's notAfter (exit 5).
        AuthError: the CA passphrase is wrong or missing (exit 4).
        BusyError: the home stayed locked (exit 75).
    """
    store.require_manager(operator)
    account = store.get_account(account_id, ledger=False)
    profile_obj = get_profile(profile)
    outcome = IssueOutcome(balance_before=account.balance, balance_after=account.balance)

    accepted: list[tuple[CsrInput, x509.CertificateSigningRequest]] = []
    for item in requests:
        try:
            accepted.append((item, _checked_csr(item, account.policy(), profile)))
        except TwcaError as exc:
            if not keep_going:
                raise
            outcome.failed.append((item.name, exc))
    if not accepted:
        return outcome

    total_cost = validity.cost * len(accepted)
    if total_cost > account.balance:
        raise QuotaError(
            f"account {account_id} has {account.balance} certificate-years; "
            f"{len(accepted)} certificate(s) of {validity.cost} year(s) need {total_cost}.",
            hint=f"add more with: twcactl account credit {account_id} N",
        )
    ca = store.issuing_ca()
    ca_cert = ca.certificate()
    not_before = utcnow()
    not_after = validity.end(not_before)
    check_within_issuer(not_after, ca_cert)
    ca_key = load_ca_key(ca, passphrase() if store.ca_key_encrypted else None)

    settings = store.settings()
    urls = CaUrls(
        crl_url=settings.get("crl_url") or None,
        ocsp_url=settings.get("ocsp_url") or None,
        ca_issuers_url=settings.get("ca_issuers_url") or None,
    )
    built: list[tuple[x509.Certificate, CsrInput]] = []
    for item, csr in accepted:
        cert = build_leaf(
            csr,
            issuer_cert=ca_cert,
            issuer_key=ca_key,
            profile=profile_obj,
            serial=x509.random_serial_number(),
            not_before=not_before,
            not_after=not_after,
            urls=urls,
        )
        built.append((cert, item))

    with store.transaction():
        for cert, item in built:
            serial = format_serial(cert.serial_number)
            sans = names.sans_json(names.general_names(_san_entries(cert)))
            store.add_certificate(
                serial=serial, ca_name=ca.name, account_id=account_id, profile=profile,
                cn=names.common_name(cert.subject), subject=names.rfc4514(cert.subject), sans=sans,
                not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                cost=validity.cost, contact=contact, note=note, renewed_from=None, operator=operator,
                der=cert.public_bytes(serialization.Encoding.DER),
            )
            outcome.balance_after = store.change_balance(
                account_id, -validity.cost, action="issue", operator=operator, serial=serial, note=note
            )
            store.append_log(operator=operator, action="cert.issue", account=account_id, serial=serial, details={
                "cn": names.common_name(cert.subject), "profile": profile, "cost": validity.cost,
                "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"), "csr": item.name,
            })
    for cert, _item in built:
        serial = format_serial(cert.serial_number)
        write_file(store.cert_path(serial), cert.public_bytes(serialization.Encoding.PEM), force=True)
        outcome.issued.append(store.get_certificate(serial))
    return outcome


def _san_entries(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def ca_chain_for(store: Store, record: CertRecord) -> list[x509.Certificate]:
    """The CA certificates above ``record``, root first (its issuing CA last)."""
    chain: list[x509.Certificate] = []
    for ca in store.cas():
        chain.append(ca.certificate())
        if ca.name == record.ca_name:
            break
    return chain
