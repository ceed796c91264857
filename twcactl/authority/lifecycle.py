"""Operations that change the local CA's records: issue, renew, revoke, hold, release, CRL, OCSP.

Each operation checks everything that can fail (role, input, account,
policy, quota, state, validity, CA passphrase) before its single
transaction, so a refusal changes nothing (domain.md §3-§5).  Derived files
(``certs/<serial>.pem``, ``crl/<ca>.crl``) are written after the commit and
can always be rebuilt from the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from twcactl import csr as csr_mod
from twcactl.authority.home import load_ca_key
from twcactl.errors import InputError, PolicyError, StateError, TwcaError
from twcactl.fsutil import write_file, write_new_file
from twcactl.issue import (
    CaUrls,
    build_leaf,
    check_within_issuer,
    leaf_sans,
    leaf_subject,
)
from twcactl.models import AccountPolicy
from twcactl.pkix import names
from twcactl.pkix.crl import RevokedEntry, build_crl, revoked_from_records
from twcactl.pkix.keys import PrivateKey
from twcactl.pkix.pem import load_csr
from twcactl.pkix.profiles import Profile, get_profile
from twcactl.policy.checks import check_request
from twcactl.rules import windows
from twcactl.rules.quota import refund_due, require_balance, require_balances
from twcactl.rules.serials import format_serial, parse_serial
from twcactl.rules.times import parse_rfc3339, rfc3339, utcnow
from twcactl.rules.validity import Validity, recorded_validity, renewal_end
from twcactl.rules.vocab import HOLD_REASON
from twcactl.store import CaRecord, Store
from twcactl.store.records import CertRecord

PassphraseProvider = Callable[[], "str | None"]


@dataclass(frozen=True)
class CsrInput:
    """A CSR as given on the command line: its file name and bytes, and optionally its own profile
    (a card's signing and encryption pair is one batch of two profiles)."""

    name: str
    data: bytes
    profile: str | None = None


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


@dataclass(frozen=True)
class RenewOutcome:
    """What ``renew_certificate`` did: the new record, the old serial, the balance."""

    certificate: CertRecord
    renewed: str
    balance_before: int
    balance_after: int


@dataclass(frozen=True)
class _Signer:
    """The issuing CA, unlocked."""

    ca: CaRecord
    cert: x509.Certificate
    key: PrivateKey


def _unlock(store: Store, passphrase: PassphraseProvider, ca: CaRecord | None = None) -> _Signer:
    ca = ca or store.cas.issuing()
    key = load_ca_key(ca, passphrase() if store.ca_key_encrypted else None)
    return _Signer(ca=ca, cert=ca.certificate(), key=key)


def _urls(store: Store) -> CaUrls:
    settings = store.settings()
    return CaUrls(
        crl_url=settings.crl_url or None,
        ocsp_url=settings.ocsp_url or None,
        ca_issuers_url=settings.ca_issuers_url or None,
    )


def check_csr(item: CsrInput, account_policy: AccountPolicy, profile: str) -> x509.CertificateSigningRequest:
    """Parse ``item`` and apply every policy rule of ``profile`` (the same checks as ``csr check``).

    Raises:
        InputError: missing or malformed CSR (exit 3).
        PolicyError: a rule failed (exit 1); ``.findings`` lists every rule.
    """
    csr = load_csr(item.data, name=item.name)
    try:
        facts = csr_mod.facts(csr)
    except csr_mod.FACTS_ERRORS as exc:
        raise InputError(f"{item.name}: the CSR's public key or requested extensions cannot be decoded.") from exc
    result = check_request(facts, account_policy, profile)
    if not result.ok:
        first = result.failed[0]
        more = f" (and {len(result.failed) - 1} more rule(s))" if len(result.failed) > 1 else ""
        raise PolicyError(
            f"{item.name}: {first.rule}: {first.message}{more}",
            hint=f"see every rule with: twcactl csr check {item.name} --account {account_policy.id}",
            findings=result.findings, details={"profile": profile},
        )
    return csr


def ev_subject(csr_subject: x509.Name, profile: Profile, account_id: str) -> x509.Name:
    """The EV subject: the CSR's attributes plus serialNumber (the business number),
    businessCategory and jurisdictionCountryName when the CSR lacks them
    (CA/Browser Forum EV Guidelines §9.2; domain.md §2 account IDs)."""
    base = leaf_subject(csr_subject, profile)
    present = {a.oid for a in base}
    extra: list[x509.NameAttribute] = []
    if NameOID.SERIAL_NUMBER not in present:
        extra.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, account_id.split("-")[0]))
    if NameOID.BUSINESS_CATEGORY not in present:
        extra.append(x509.NameAttribute(NameOID.BUSINESS_CATEGORY, "Private Organization"))
    if NameOID.JURISDICTION_COUNTRY_NAME not in present:
        countries = base.get_attributes_for_oid(NameOID.COUNTRY_NAME)
        extra.append(x509.NameAttribute(NameOID.JURISDICTION_COUNTRY_NAME,
                                        str(countries[0].value) if countries else "TW"))
    return x509.Name(list(base) + extra)


@dataclass(frozen=True)
class _Built:
    """A signed certificate with what its record needs, computed once from the values it was built from
    (reading ``cert.subject`` or its extensions again would parse them again: a batch of 1,000 feels it)."""

    cert: x509.Certificate
    cn: str | None
    subject: str
    sans: list[str]


def _build(signer: _Signer, csr: x509.CertificateSigningRequest, *, profile: str, account_id: str,
           not_before: dt.datetime, not_after: dt.datetime, urls: CaUrls) -> _Built:
    profile_obj = get_profile(profile)
    csr_subject = csr.subject
    subject = (ev_subject(csr_subject, profile_obj, account_id) if profile == "ev"
               else leaf_subject(csr_subject, profile_obj))
    sans = leaf_sans(csr, profile_obj, csr_subject)
    cert = build_leaf(csr, issuer_cert=signer.cert, issuer_key=signer.key, profile=profile_obj,
                      serial=x509.random_serial_number(), not_before=not_before, not_after=not_after,
                      urls=urls, subject=subject, sans=sans)
    return _Built(cert=cert, cn=names.common_name(subject), subject=names.rfc4514(subject),
                  sans=names.sans_json(names.general_names(sans)))


def _record(store: Store, built: _Built, *, ca_name: str, account_id: str, profile: str,
            validity: Validity, operator: str, contact: str | None, note: str | None,
            renewed_from: str | None) -> str:
    """Insert the record of a new certificate (inside a transaction); returns its serial."""
    cert = built.cert
    serial = format_serial(cert.serial_number)
    store.certificates.add(
        serial=serial, ca_name=ca_name, account_id=account_id, profile=profile,
        cn=built.cn, subject=built.subject, sans=built.sans,
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        cost=validity.cost, validity=validity.to_text(), contact=contact, note=note, renewed_from=renewed_from,
        operator=operator, der=cert.public_bytes(serialization.Encoding.DER),
    )
    return serial


def _write_pems(store: Store, built: Sequence[_Built]) -> None:
    """Write the derived PEM files of freshly committed certificates (new names: no temporary file needed)."""
    with store.files_lock():
        for b in built:
            write_new_file(store.cert_path(format_serial(b.cert.serial_number)),
                           b.cert.public_bytes(serialization.Encoding.PEM))


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
    A request's own ``profile`` overrides ``profile``.
    Without ``keep_going`` the batch is all or nothing: the first refused
    request is raised and nothing is issued.  With it, refused requests are
    reported in ``failed`` and the rest are issued.  The whole batch is one
    transaction (durable when this returns).

    Raises:
        StateError: operator not a manager, unknown account (exit 5).
        InputError: a CSR is missing or malformed (exit 3).
        PolicyError: a CSR breaks the account's policy (exit 1), with ``.findings``.
        QuotaError: the balance cannot pay for the batch (exit 5).
        StateError: the validity would pass the issuing CA's notAfter (exit 5).
        AuthError: the CA passphrase is wrong or missing (exit 4).
        BusyError: the home stayed locked (exit 75).
    """
    store.operators.require_manager(operator)
    account = store.accounts.get(account_id, ledger=False)
    for item in requests:
        get_profile(item.profile or profile)
    outcome = IssueOutcome(balance_before=account.balance, balance_after=account.balance)

    accepted: list[tuple[CsrInput, x509.CertificateSigningRequest]] = []
    for item in requests:
        try:
            accepted.append((item, check_csr(item, account.policy(), item.profile or profile)))
        except TwcaError as exc:
            if not keep_going:
                raise
            outcome.failed.append((item.name, exc))
    if not accepted:
        return outcome

    require_balance(account_id, account.balance, validity.cost * len(accepted))
    ca = store.cas.issuing()
    not_before = utcnow()
    not_after = validity.end(not_before)
    check_within_issuer(not_after, ca.certificate())
    signer = _unlock(store, passphrase, ca)
    urls = _urls(store)
    built = [(_build(signer, csr, profile=item.profile or profile, account_id=account_id, not_before=not_before,
                     not_after=not_after, urls=urls), item) for item, csr in accepted]

    with store.transaction():
        serials = [_record(store, b, ca_name=ca.name, account_id=account_id, profile=item.profile or profile,
                           validity=validity, operator=operator, contact=contact, note=note, renewed_from=None)
                   for b, item in built]
        outcome.balance_after = store.accounts.change_balance_many(
            account_id, [(-validity.cost, serial) for serial in serials], action="issue", operator=operator, note=note)
        store.log.append_many([
            (operator, "cert.issue", account_id, serial, {
                "cn": b.cn, "profile": item.profile or profile, "cost": validity.cost,
                "not_after": rfc3339(not_after), "csr": item.name})
            for serial, (b, item) in zip(serials, built)])
    _write_pems(store, [b for b, _item in built])
    outcome.issued.extend(store.certificates.get_many([format_serial(b.cert.serial_number) for b, _item in built]))
    return outcome


def old_validity(record: CertRecord) -> Validity:
    """The validity ``record`` was issued with, the default for its renewal;
    see :func:`twcactl.rules.validity.recorded_validity`."""
    return recorded_validity(record.validity, record.not_before, record.not_after)


def check_renewable(store: Store, serial: str, *, early: bool, now: dt.datetime | None = None) -> CertRecord:
    """Refuse a renewal of ``serial`` that the state alone rules out (domain.md §4).

    Only a valid certificate (not expired, revoked or suspended), only inside
    the renewal window unless ``early``, only one that belongs to an account.
    The decisions are :func:`twcactl.rules.windows.require_renewable_status` and
    :func:`twcactl.rules.windows.require_renewal_window`; this reads the record and the window.

    Raises:
        NotFoundError / StateError: (exit 5), naming the date the window opens.
    """
    old = store.certificates.get(serial)
    now = now or utcnow()
    window = store.settings().renewal_window_days
    windows.require_renewable_status(serial, old.status(now, window))
    windows.require_renewal_window(serial, old.not_after, now, window, early=early)
    if old.account is None:
        raise StateError(f"certificate {serial} belongs to no account and cannot be renewed here.")
    return old


@dataclass(frozen=True)
class RenewalItem:
    """One certificate to renew: its serial, the new CSR, and for a CMS request the signer's DER."""

    serial: str
    csr: CsrInput
    signer_der: bytes | None = None


def renew_certificate(
    store: Store,
    serial: str,
    csr: CsrInput,
    *,
    validity: Validity | None,
    early: bool,
    operator: str,
    passphrase: PassphraseProvider,
    note: str | None = None,
    signer_der: bytes | None = None,
) -> RenewOutcome:
    """Renew one certificate; see :func:`renew_certificates`."""
    return renew_certificates(store, [RenewalItem(serial, csr, signer_der)], validity=validity, early=early,
                              operator=operator, passphrase=passphrase, note=note)[0]


def renew_certificates(
    store: Store,
    items: Sequence[RenewalItem],
    *,
    validity: Validity | None,
    early: bool,
    operator: str,
    passphrase: PassphraseProvider,
    note: str | None = None,
) -> list[RenewOutcome]:
    """Renew certificates with new CSRs, all or none, in one transaction (domain.md §4).

    For each: :func:`check_renewable`; the new CSR passes the account's
    policy and keeps the CN; the new notAfter is the old notAfter plus
    ``validity`` (default: the old certificate's validity) and its notBefore
    is now; old and new are linked; the cost is deducted like an issue.
    ``signer_der``, for a CMS renewal request, must be the old certificate.

    Raises:
        NotFoundError / StateError: unknown serial, not valid, outside the window,
            quota short, past the CA's notAfter (exit 5).
        PolicyError: another CN, a policy rule failed, or a request signed by
            another certificate (exit 1).
        InputError, AuthError, BusyError: as for issuing.
    """
    store.operators.require_manager(operator)
    now = utcnow()
    plans = []
    costs: dict[str, int] = {}
    for item in items:
        old = check_renewable(store, item.serial, early=early, now=now)
        if item.signer_der is not None and item.signer_der != old.der:
            raise PolicyError(f"the renewal request is not signed by certificate {item.serial}.")
        account = store.accounts.get(old.account or "", ledger=False)
        request = check_csr(item.csr, account.policy(), old.profile)
        new_cn = names.common_name(request.subject) or ""
        if new_cn.lower() != (old.cn or "").lower():
            raise PolicyError(f"the new CSR's CN {new_cn!r} differs from the certificate's CN {old.cn!r}.",
                              hint="a renewal keeps the CN; apply for a new certificate instead")
        chosen = validity or old_validity(old)
        not_after = renewal_end(old.not_after, chosen)
        ca = store.cas.by_name(old.ca_name)
        check_within_issuer(not_after, ca.certificate())
        costs[account.id] = costs.get(account.id, 0) + chosen.cost
        plans.append((item, old, account, request, chosen, not_after, ca))
    require_balances(costs, lambda account_id: store.accounts.get(account_id, ledger=False).balance)
    signers: dict[str, _Signer] = {}
    built = []
    for _item, old, account, request, _chosen, not_after, ca in plans:
        if ca.name not in signers:
            signers[ca.name] = _unlock(store, passphrase, ca)
        built.append(_build(signers[ca.name], request, profile=old.profile, account_id=account.id, not_before=now,
                            not_after=not_after, urls=_urls(store)))
    results: list[tuple[str, str, int, int]] = []
    with store.transaction():
        for b, (item, old, account, _request, chosen, not_after, ca) in zip(built, plans):
            before = store.accounts.get(account.id, ledger=False).balance
            new_serial = _record(store, b, ca_name=ca.name, account_id=account.id, profile=old.profile,
                                 validity=chosen, operator=operator, contact=old.contact, note=note or old.note,
                                 renewed_from=old.serial)
            balance = store.accounts.change_balance(account.id, -chosen.cost, action="renew", operator=operator,
                                           serial=new_serial, note=note)
            store.log.append(operator=operator, action="cert.renew", account=account.id, serial=new_serial, details={
                "renewed": old.serial, "cn": old.cn, "cost": chosen.cost, "not_after": rfc3339(not_after),
                "early": early, "signed_request": item.signer_der is not None,
            })
            results.append((new_serial, old.serial, before, balance))
    _write_pems(store, built)
    records = store.certificates.get_many([r[0] for r in results])
    return [RenewOutcome(certificate=rec, renewed=old_serial, balance_before=before, balance_after=after)
            for rec, (_new, old_serial, before, after) in zip(records, results)]


def _regenerate_crl(store: Store, signer: _Signer, now: dt.datetime, *, add: Sequence[RevokedEntry] = (),
                    remove: frozenset[int] = frozenset(), full: bool = False) -> x509.CertificateRevocationList:
    """Build, sign and record the next CRL of ``signer``'s CA (inside a transaction).

    By default the previous CRL's entries are taken over as cryptography
    objects, less ``remove`` and the serials in ``add``, plus ``add``: the
    change one operation makes, without rebuilding 100,000 entries (issue 7).
    When there is no previous CRL, ``full`` is set, or the result would not
    list exactly the records' revoked and held certificates, every entry is
    rebuilt from the records.
    """
    entries: list[RevokedEntry | x509.RevokedCertificate] | None = None
    previous = None if full else store.crls.latest(signer.ca.name)
    if previous is not None and previous.get("der"):
        old = x509.load_der_x509_crl(previous["der"])
        drop = remove | {e.serial for e in add}
        kept: list[RevokedEntry | x509.RevokedCertificate] = (
            [r for r in old if r.serial_number not in drop] if drop else list(old))
        kept.extend(add)
        if len(kept) == store.certificates.count_revoked(signer.ca.name):
            entries = kept
    if entries is None:
        entries = list(revoked_from_records(store.certificates.revoked_entries(signer.ca.name)))
    number = store.crls.next_number(signer.ca.name)
    next_update = now + dt.timedelta(days=store.settings().crl_days)
    crl = build_crl(issuer_cert=signer.cert, issuer_key=signer.key, entries=entries, number=number,
                    this_update=now, next_update=next_update)
    der = crl.public_bytes(serialization.Encoding.DER)
    store.crls.add(ca_name=signer.ca.name, number=number, this_update=now, next_update=next_update,
                  entries=len(entries), der=der)
    return crl


def write_current_crl(store: Store, ca_name: str) -> None:
    """Write ``crl/<ca>.crl`` from the newest CRL record (under the files lock, so the newest wins)."""
    with store.files_lock():
        latest = store.crls.latest(ca_name)
        if latest is not None and latest.get("der"):
            write_file(store.crl_path(ca_name), latest["der"], force=True)


def _refund(record: CertRecord, now: dt.datetime, refund_days: int, store: Store) -> int:
    """Certificate-years revoking ``record`` now gives back; the rule is :func:`twcactl.rules.quota.refund_due`."""
    if record.account is None:
        return 0
    return refund_due(cost=record.cost, state=record.state, issued_at=parse_rfc3339(record.issued_at), now=now,
                      refund_window_days=refund_days, renewed=bool(store.certificates.renewals_of(record.serial)))


def revoke_certificate(
    store: Store,
    serial: str,
    *,
    reason: str,
    operator: str,
    passphrase: PassphraseProvider,
    invalidity_date: dt.datetime | None = None,
) -> CertRecord:
    """Revoke ``serial`` for an RFC 5280 ``reason`` and regenerate its CA's CRL.

    A suspended certificate may be revoked for good; a revoked one is final,
    except that its reason may be changed to keyCompromise.  Revoking a valid
    or suspended certificate within the refund window refunds its
    certificate-years (domain.md §3, §5).

    Raises:
        NotFoundError / StateError: unknown, already revoked (exit 5).
        AuthError: CA passphrase (exit 4).
    """
    store.operators.require_manager(operator)
    record = store.certificates.get(serial)
    now = utcnow()
    if record.state == "revoked" and not (reason == "keyCompromise" and record.reason != "keyCompromise"):
        raise StateError(f"certificate {serial} is already revoked ({record.reason}); revocation is final.",
                         hint="only the reason may still be changed to keyCompromise")
    signer = _unlock(store, passphrase, store.cas.by_name(record.ca_name))
    refund = _refund(record, now, store.settings().refund_window_days, store)
    with store.transaction():
        revoked_at = parse_rfc3339(record.revoked_at) if record.state == "revoked" and record.revoked_at else now
        store.certificates.set_state(serial, "revoked", revoked_at=revoked_at, reason=reason,
                                    invalidity_date=invalidity_date)
        if refund and record.account:
            store.accounts.change_balance(record.account, refund, action="refund", operator=operator, serial=serial,
                                 note=f"revoked ({reason}) within the refund window")
        store.log.append(operator=operator, action="cert.revoke", account=record.account, serial=serial, details={
            "reason": reason, "previous_state": record.state, "previous_reason": record.reason,
            "invalidity_date": rfc3339(invalidity_date) if invalidity_date else None,
            "refund": refund,
        })
        entry = RevokedEntry(serial=parse_serial(serial), revoked_at=revoked_at, reason=reason,
                             invalidity_date=invalidity_date)
        _regenerate_crl(store, signer, now, add=[entry])
    write_current_crl(store, signer.ca.name)
    return store.certificates.get(serial)


def hold_certificate(store: Store, serial: str, *, operator: str, passphrase: PassphraseProvider) -> CertRecord:
    """Suspend ``serial`` (certificateHold, domain.md §5) and regenerate the CRL.

    Raises:
        StateError: not valid (already held, revoked or expired) (exit 5).
    """
    store.operators.require_manager(operator)
    record = store.certificates.get(serial)
    now = utcnow()
    status = record.status(now, store.settings().renewal_window_days)
    if status not in ("valid", "expiring"):
        raise StateError(f"certificate {serial} is {status}; only a valid certificate can be suspended.")
    signer = _unlock(store, passphrase, store.cas.by_name(record.ca_name))
    with store.transaction():
        store.certificates.set_state(serial, "suspended", revoked_at=now, reason=HOLD_REASON)
        store.log.append(operator=operator, action="cert.hold", account=record.account, serial=serial, details={})
        _regenerate_crl(store, signer, now, add=[RevokedEntry(parse_serial(serial), now, HOLD_REASON)])
    write_current_crl(store, signer.ca.name)
    return store.certificates.get(serial)


def release_certificate(store: Store, serial: str, *, operator: str, passphrase: PassphraseProvider) -> CertRecord:
    """Resume a suspended ``serial`` (domain.md §5): valid again and absent from the new CRL.

    Raises:
        StateError: not suspended, or expired meanwhile (exit 5).
    """
    store.operators.require_manager(operator)
    record = store.certificates.get(serial)
    now = utcnow()
    if record.state != "suspended":
        raise StateError(f"certificate {serial} is not suspended.")
    if record.not_after <= now:
        raise StateError(f"certificate {serial} expired on {record.not_after:%Y-%m-%d}; it cannot be resumed.")
    signer = _unlock(store, passphrase, store.cas.by_name(record.ca_name))
    with store.transaction():
        store.certificates.set_state(serial, "valid")
        store.log.append(operator=operator, action="cert.release", account=record.account, serial=serial,
                         details={"held_since": record.revoked_at})
        _regenerate_crl(store, signer, now, remove=frozenset({parse_serial(serial)}))
    write_current_crl(store, signer.ca.name)
    return store.certificates.get(serial)


def generate_crl(store: Store, *, operator: str, passphrase: PassphraseProvider,
                 full: bool = False) -> x509.CertificateRevocationList:
    """Regenerate the issuing CA's CRL on demand (``twcactl crl``); ``full`` rebuilds every entry from the records.

    Raises:
        StateError: not a manager (exit 5).  AuthError: CA passphrase (exit 4).
    """
    store.operators.require_manager(operator)
    signer = _unlock(store, passphrase)
    now = utcnow()
    with store.transaction():
        crl = _regenerate_crl(store, signer, now, full=full)
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        store.log.append(operator=operator, action="crl.generate", details={
            "ca": signer.ca.name, "number": number, "entries": len(crl), "full": full})
    write_current_crl(store, signer.ca.name)
    return crl


def ocsp_respond(store: Store, request_der: bytes, *, operator: str, passphrase: PassphraseProvider,
                 name: str = "request") -> tuple[bytes, str]:
    """A signed OCSP response (DER) for a DER request, from the records (RFC 6960).

    Returns:
        ``(response DER, status word)`` with status ``good``, ``revoked``,
        ``unknown`` or ``unauthorized`` (another issuer).

    Raises:
        InputError: not an OCSP request (exit 3).  StateError: not a manager (exit 5).
    """
    from twcactl.pkix.ocsp import OcspStatus, build_response, load_request

    store.operators.require_manager(operator)
    request = load_request(request_der, name=name)
    signer = _unlock(store, passphrase)
    now = utcnow()
    seen: dict[str, str] = {}

    def lookup(serial_number: int) -> OcspStatus:
        try:
            record = store.certificates.get(format_serial(serial_number))
        except StateError:
            seen["status"] = "unknown"
            return OcspStatus("unknown")
        if record.ca_name != signer.ca.name:
            seen["status"] = "unknown"
            return OcspStatus("unknown")
        if record.state in ("revoked", "suspended") and record.revoked_at:
            seen["status"] = "revoked"
            return OcspStatus("revoked", parse_rfc3339(record.revoked_at), record.reason)
        seen["status"] = "good"
        return OcspStatus("good")

    response = build_response(request, issuer_cert=signer.cert, issuer_key=signer.key, lookup=lookup, now=now,
                              validity=dt.timedelta(days=store.settings().crl_days))
    status = seen.get("status", "unauthorized")
    with store.transaction():
        store.log.append(operator=operator, action="ocsp.respond", serial=format_serial(request.serial_number),
                         details={"status": status})
    return response.public_bytes(serialization.Encoding.DER), status


def ca_chain_for(store: Store, record: CertRecord) -> list[x509.Certificate]:
    """The CA certificates above ``record``, root first (its issuing CA last)."""
    chain: list[x509.Certificate] = []
    for ca in store.cas.all():
        chain.append(ca.certificate())
        if ca.name == record.ca_name:
            break
    return chain
