"""Operations that change the local CA's records: issue, renew, revoke, hold, release, CRL, OCSP.

Each operation checks everything that can fail (role, input, account,
policy, quota, state, validity, CA passphrase) before its single
transaction, so a refusal changes nothing (domain.md §3-§5).  Derived files
(``certs/<serial>.pem``, ``crl/<ca>.crl``) are written after the commit and
can always be rebuilt from the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from twcactl import csr as csr_mod
from twcactl.authority import parallel
from twcactl.authority.audit import certificate_state
from twcactl.authority.home import load_ca_key
from twcactl.errors import BusyError, InputError, PolicyError, StateError, TwcaError
from twcactl.fsutil import write_file, write_new_file
from twcactl.issue import (
    CaUrls,
    build_leaf,
    check_within_issuer,
    leaf_sans,
    leaf_subject,
)
from twcactl.models import AccountPolicy, CheckResult, Finding, RequestFacts, SubjectAttribute
from twcactl.pkix import names
from twcactl.pkix.crl import RevokedEntry, build_crl, revoked_from_records
from twcactl.pkix.keys import PrivateKey
from twcactl.pkix.pem import load_csr
from twcactl.pkix.profiles import Profile, get_profile, public_trust_profile
from twcactl.policy.checks import check_request
from twcactl.rules import public_trust as br
from twcactl.rules import windows
from twcactl.rules.publication import CA_CRL_DAYS, leaf_urls
from twcactl.rules.quota import Refund, refund_decision, require_balance, require_balances, subscription_charge
from twcactl.rules.serials import format_serial, parse_serial
from twcactl.rules.settings import DEFAULT_MAX_SANS
from twcactl.rules.times import parse_rfc3339, rfc3339, utcnow
from twcactl.rules.validity import Validity, recorded_validity, renewal_end
from twcactl.rules.vocab import HOLD_REASON, SSL_PROFILES
from twcactl.store import CaRecord, Store
from twcactl.store.records import CertRecord
from twcactl.validation.lint import lint_before_signing

PassphraseProvider = Callable[[], "str | None"]
#: ``progress(stage, done, total)``: how far a batch is (issue 18: a progress bar on a terminal)
Progress = Callable[[str, int, int], None]

#: The most seconds a writer waits, after its commit, for another process holding the lock for derived files
#: (less when ``--lock-timeout`` is shorter); past it the files are left pending for ``ca check`` (issue 13: no
#: waiting without bound after a commit).  Other writers hold the lock only while writing a file or two.
FILES_LOCK_WAIT = 10.0


def _files_wait(store: Store) -> float:
    """Seconds to wait for the files lock after a commit: ``--lock-timeout``, at most :data:`FILES_LOCK_WAIT`."""
    return min(float(getattr(store, "lock_timeout", FILES_LOCK_WAIT)), FILES_LOCK_WAIT)


@dataclass
class FilesReport:
    """The derived files (``certs/<serial>.pem``, ``crl/<ca>.crl``) a committed change wrote, and those it
    could not write (a full disk, an unwritable directory, the files lock held elsewhere).

    A pending file never undoes or hides the committed change: ``twcactl ca check`` writes it from the
    database (architecture.md, "The store"; issue 13).
    """

    written: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, list[str]]:
        """The contract's ``files`` object: ``{"written": [paths], "pending": [paths]}``."""
        return {"written": list(self.written), "pending": list(self.pending)}

    def extend(self, other: FilesReport) -> FilesReport:
        """Add ``other``'s paths to this report; returns ``self``."""
        self.written.extend(other.written)
        self.pending.extend(other.pending)
        return self


@dataclass(frozen=True)
class CsrInput:
    """A CSR as given on the command line: its file name and bytes, and optionally its own profile
    (a card's signing and encryption pair is one batch of two profiles)."""

    name: str
    data: bytes
    profile: str | None = None
    #: An ACME request (issue 15): domain-validated, its subject at most a CN, so the subject.* rules
    #: (an OV subject the CSR supplies) do not apply and the name rules judge its CN or else its first DNS SAN.
    domain_validated: bool = False
    #: A short-lived certificate (issue 24, ACME profile ``shortlived``): no CRL Distribution Point and no
    #: OCSP URL (BR §7.1.2.11.2), honoured only when its validity is short-lived (BR §1.6.1).
    short_lived: bool = False


@dataclass
class IssueOutcome:
    """What ``issue_certificates`` did.

    Attributes:
        issued: the new records, in input order.
        failed: ``(file name, error)`` for refused requests (only with ``keep_going``).
        balance_before / balance_after: the account's certificate-years.
        files: the PEM files written and those left pending for ``ca check``.
    """

    issued: list[CertRecord] = field(default_factory=list)
    failed: list[tuple[str, TwcaError]] = field(default_factory=list)
    balance_before: int = 0
    balance_after: int = 0
    files: FilesReport = field(default_factory=FilesReport)
    #: sentences for people, e.g. a validity capped by the CA/Browser Forum (issue 16)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RenewOutcome:
    """What ``renew_certificate`` did: the new record, the old serial, the balance, and the PEM files
    written or left pending (shared by every outcome of one batch)."""

    certificate: CertRecord
    renewed: str
    balance_before: int
    balance_after: int
    files: FilesReport = field(default_factory=FilesReport)
    #: ``charged``, or ``paid_time`` for a re-issue inside a subscription's paid time (issue 16)
    charge: str = "charged"
    #: a sentence for people when the validity was capped (issue 16), else None
    note: str | None = None


@dataclass(frozen=True)
class StateOutcome:
    """What a revoke, hold or release did: the record afterwards, and the CRL file written or left pending;
    for a revocation, what it refunded and why (issue 12)."""

    certificate: CertRecord
    files: FilesReport
    refund: Refund | None = None
    #: for a revocation: the other unexpired certificates with the same key, as they stand afterwards
    #: (revoked too with ``all_with_key``; issue 12, BR §6.1.1.3)
    same_key: tuple[CertRecord, ...] = ()


@dataclass(frozen=True)
class CrlOutcome:
    """What ``generate_crl`` did: the new CRL, and its file written or left pending."""

    crl: x509.CertificateRevocationList
    files: FilesReport


@dataclass(frozen=True)
class _Signer:
    """The issuing CA, unlocked."""

    ca: CaRecord
    cert: x509.Certificate
    key: PrivateKey
    lint: bool = False  # ca config pre_issuance_lint (issue 26); always on for a public-trust certificate


def _unlock(store: Store, passphrase: PassphraseProvider, ca: CaRecord | None = None) -> _Signer:
    ca = ca or store.cas.issuing()
    encrypted = store.ca_key_encrypted
    key = load_ca_key(ca, passphrase() if encrypted else None, encrypted=encrypted)
    return _Signer(ca=ca, cert=ca.certificate(), key=key, lint=bool(store.settings().pre_issuance_lint))


def _urls(store: Store, ca_name: str) -> CaUrls:
    """The URLs a certificate of issuing CA ``ca_name`` carries: its own issuer's (issue 25,
    :func:`twcactl.rules.publication.leaf_urls`)."""
    settings = store.settings()
    found = leaf_urls(base_url=settings.base_url, crl_url=settings.crl_url, ocsp_url=settings.ocsp_url,
                      ca_issuers_url=settings.ca_issuers_url, issuer=ca_name,
                      ca_names=frozenset(ca.name for ca in store.cas.all()))
    return CaUrls(crl_url=found.crl_url, ocsp_url=found.ocsp_url, ca_issuers_url=found.ca_issuers_url,
                  cps_url=settings.cps_url or None)


def _public_trust(store: Store, profile: str) -> bool:
    """True when ``profile`` is a server profile of a public-trust CA: the BR apply (issue 16)."""
    return profile in SSL_PROFILES and bool(store.settings().public_trust)


def _refuse_capped(strict: bool, not_before: dt.datetime, wanted_end: dt.datetime, what: str) -> None:
    """``--strict``: refuse a certificate the SC-081 cap would shorten (issue 16).

    Raises:
        PolicyError: the asked-for end is past the cap of the issuance date (exit 1); nothing was changed.
    """
    if strict and br.exceeds_cap(not_before, wanted_end):
        cap = br.max_validity_days(not_before)
        raise PolicyError(
            f"{what} would run to {wanted_end:%Y-%m-%d}, past the {cap}-day maximum of a TLS certificate issued "
            f"on {not_before:%Y-%m-%d} (CA/Browser Forum ballot SC-081).",
            hint="without --strict the certificate is capped and the rest of the paid time is re-issued free",
            details={"max_days": cap, "requested_not_after": rfc3339(wanted_end)})


def check_csr(item: CsrInput, account_policy: AccountPolicy, profile: str, *,
              store: Store | None = None) -> x509.CertificateSigningRequest:
    """Parse ``item`` and apply every policy rule of ``profile`` (the same checks as ``csr check``).

    With ``store``, the home's ``max_sans`` caps the SANs (``san.count``) and a key the home has
    blocked (revoked for keyCompromise) adds a failed ``key.blocked`` finding (BR §6.1.1.3).

    Raises:
        InputError: missing or malformed CSR (exit 3).
        PolicyError: a rule failed (exit 1); ``.findings`` lists every rule.
    """
    csr = load_csr(item.data, name=item.name)
    try:
        facts = csr_mod.facts(csr)
    except csr_mod.FACTS_ERRORS as exc:
        raise InputError(f"{item.name}: the CSR's public key or requested extensions cannot be decoded.") from exc
    domain_validated = item.domain_validated or profile == "dv"  # a DV subject is its CN alone (issue 16)
    if domain_validated:
        facts = _domain_validated_facts(facts)
    result = check_request(facts, account_policy, profile,
                           max_sans=store.settings().max_sans if store is not None else DEFAULT_MAX_SANS)
    blocked = blocked_key_finding(store, csr.public_key()) if store is not None else None
    if blocked is not None:
        result = CheckResult(profile=result.profile, findings=(*result.findings, blocked))
    failed = [f for f in result.failed if not (domain_validated and f.rule.startswith("subject."))]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more rule(s))" if len(failed) > 1 else ""
        raise PolicyError(
            f"{item.name}: {first.rule}: {first.message}{more}",
            hint=f"see every rule with: twcactl csr check {item.name} --account {account_policy.id}",
            findings=result.findings, details={"profile": profile},
        )
    return csr


def _domain_validated_facts(facts: RequestFacts) -> RequestFacts:
    """An ACME CSR's facts as the name rules judge them: the CN, else the first DNS SAN, as the only subject."""
    cn = facts.cn or next((value for kind, value in facts.sans if kind == "dns"), None)
    subject = (SubjectAttribute("CN", "2.5.4.3", cn),) if cn else ()
    return dataclasses.replace(facts, subject=subject)


_EV_IDENTITY_OIDS = frozenset({NameOID.SERIAL_NUMBER, NameOID.BUSINESS_CATEGORY, NameOID.JURISDICTION_COUNTRY_NAME,
                               NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME, NameOID.JURISDICTION_LOCALITY_NAME})


def ev_subject(csr_subject: x509.Name, profile: Profile, account: AccountPolicy) -> x509.Name:
    """The EV subject: the CSR's C, ST, L, O, OU and CN, then the account's identity, never the CSR's:
    businessCategory, jurisdictionCountryName (and jurisdiction state / locality when the account
    records them) and serialNumber, the business number (CA/Browser Forum EV Guidelines
    §7.1.4.2.2-§7.1.4.2.3; domain.md §2 account IDs).  The policy rule ``subject.identity`` has
    already refused a CSR that states other values."""
    base = [a for a in leaf_subject(csr_subject, profile) if a.oid not in _EV_IDENTITY_OIDS]
    identity = [
        (NameOID.BUSINESS_CATEGORY, account.business_category),
        (NameOID.JURISDICTION_COUNTRY_NAME, account.jurisdiction_country),
        (NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME, account.jurisdiction_state),
        (NameOID.JURISDICTION_LOCALITY_NAME, account.jurisdiction_locality),
        (NameOID.SERIAL_NUMBER, account.business_number),
    ]
    return x509.Name(base + [x509.NameAttribute(oid, value) for oid, value in identity if value])


def spki_sha256(public_key: object) -> str:
    """The SHA-256 (hex) of a public key's DER SubjectPublicKeyInfo: how the CA names a key (BR §6.1.1.3)."""
    spki = public_key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def blocked_key_finding(store: Store, public_key: object) -> Finding | None:
    """A failed ``key.blocked`` finding when the home has blocked this key, else None.

    A key revoked for keyCompromise is never certified again, by issue, renewal or card
    enrolment (CA/Browser Forum Baseline Requirements §6.1.1.3; docs/lifecycle.md).
    """
    fingerprint = spki_sha256(public_key)
    entry = store.keys.blocked(fingerprint)
    if entry is None:
        return None
    return Finding("key.blocked", False, (
        f"the key (SPKI SHA-256 {fingerprint[:16]}...) was revoked for {entry.reason} with certificate "
        f"{entry.serial} on {entry.blocked_at[:10]}; a compromised key is never certified again: make a new key"))


@dataclass(frozen=True)
class _Built:
    """A signed certificate with what its record needs, computed once from the values it was built from
    (reading ``cert.subject`` or its extensions again would parse them again: a batch of 1,000 feels it)."""

    cert: x509.Certificate
    cn: str | None
    subject: str
    sans: list[str]
    #: the certificate's DER, encoded once for its record and its log entry (issue 18)
    der: bytes = b""
    #: computed ahead by a batch's worker (:func:`_finished`), which sends no certificate object back:
    #: the serial (hex), the key's SPKI SHA-256, notBefore / notAfter and the PEM file's bytes
    serial: str = ""
    spki: str = ""
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    pem: bytes = b""

    def serial_hex(self) -> str:
        """The serial as records name it (lower-case hex)."""
        return self.serial or format_serial(self.cert.serial_number)

    def end(self) -> dt.datetime:
        """notAfter (UTC)."""
        return self.not_after or self.cert.not_valid_after_utc

    def pem_bytes(self) -> bytes:
        """The certificate's PEM file content."""
        return self.pem or self.cert.public_bytes(serialization.Encoding.PEM)


def _finished(built: _Built) -> _Built:
    """``built`` as a batch's worker sends it back (issue 29): every value its record, log entry and PEM file
    need, computed here in parallel, and no certificate object (cryptography's objects do not pickle)."""
    cert = built.cert
    return dataclasses.replace(built, cert=None, serial=format_serial(cert.serial_number),  # type: ignore[arg-type]
                               spki=spki_sha256(cert.public_key()), not_before=cert.not_valid_before_utc,
                               not_after=cert.not_valid_after_utc, pem=cert.public_bytes(serialization.Encoding.PEM))


def _build(signer: _Signer, csr: x509.CertificateSigningRequest, *, profile: str, account_id: str,
           not_before: dt.datetime, not_after: dt.datetime, urls: CaUrls,
           account: AccountPolicy | None = None, public_trust: bool = False) -> _Built:
    csr_subject = csr.subject
    profile_obj = (public_trust_profile(profile, organisation=bool(
        csr_subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))) if public_trust else get_profile(profile))
    subject = (ev_subject(csr_subject, profile_obj, account or AccountPolicy(id=account_id, org=""))
               if profile == "ev" else leaf_subject(csr_subject, profile_obj))
    sans = leaf_sans(csr, profile_obj, csr_subject)
    serial = x509.random_serial_number()

    def leaf(key: PrivateKey) -> x509.Certificate:
        return build_leaf(csr, issuer_cert=signer.cert, issuer_key=key, profile=profile_obj, serial=serial,
                          not_before=not_before, not_after=not_after, urls=urls, subject=subject, sans=sans)

    if public_trust or signer.lint:  # BR 4.3.1.2 (issue 26): the same certificate, linted before the CA key signs
        lint_before_signing(leaf, signer.cert, serverauth=public_trust, name=names.common_name(subject) or "request")
    cert = leaf(signer.key)
    return _Built(cert=cert, cn=names.common_name(subject), subject=names.rfc4514(subject),
                  sans=names.sans_json(names.general_names(sans)), der=cert.public_bytes(serialization.Encoding.DER))


def _record(store: Store, built: _Built, *, ca_name: str, account_id: str, profile: str,
            validity: Validity, operator: str, contact: str | None, note: str | None,
            renewed_from: str | None, cost: int | None = None, paid_until: dt.datetime | None = None) -> str:
    """Insert the record of a new certificate (inside a transaction); returns its serial.

    ``cost`` defaults to ``validity.cost``; ``paid_until`` is the end of the subscription's paid time (issue 16).
    """
    cert = built.cert
    serial = built.serial_hex()
    store.certificates.add(
        serial=serial, ca_name=ca_name, account_id=account_id, profile=profile,
        cn=built.cn, subject=built.subject, sans=built.sans,
        not_before=built.not_before or cert.not_valid_before_utc, not_after=built.end(),
        cost=validity.cost if cost is None else cost, validity=validity.to_text(), contact=contact, note=note,
        renewed_from=renewed_from, operator=operator, der=built.der or cert.public_bytes(serialization.Encoding.DER),
        paid_until=paid_until, spki_sha256=built.spki or spki_sha256(cert.public_key()),
    )
    return serial


def _write_pems(store: Store, built: Sequence[_Built]) -> FilesReport:
    """Write the derived PEM files of freshly committed certificates (new names: no temporary file needed).

    Never raises for a file: one that cannot be written (full disk, unwritable ``certs/``, the files
    lock held elsewhere past :func:`_files_wait`) is reported pending, and a partial one is removed.
    """
    report = FilesReport()
    todo = [(store.cert_path(b.serial_hex()), b.pem_bytes()) for b in built]
    try:
        with store.files_lock(timeout=_files_wait(store)):
            for path, pem in todo:
                try:
                    write_new_file(path, pem)
                except (OSError, TwcaError):
                    _drop_partial(path, pem)
                    report.pending.append(str(path))
                else:
                    report.written.append(str(path))
    except (OSError, BusyError):
        done = set(report.written) | set(report.pending)
        report.pending.extend(str(path) for path, _pem in todo if str(path) not in done)
    return report


def _drop_partial(path: Path, data: bytes) -> None:
    """Remove what a failed write left at ``path`` unless it is already the whole ``data``."""
    try:
        if path.read_bytes() != data:
            path.unlink()
    except OSError:
        pass


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
    strict: bool = False,
    progress: Progress | None = None,
    jobs: int = 1,
) -> IssueOutcome:
    """Issue one certificate per CSR from the home's issuing CA under ``account_id``.

    Costs ``validity.cost`` certificate-years per certificate (domain.md §3).
    In public-trust mode (issue 16) a server certificate is a subscription: the validity is paid time
    (``paid_until``), served first by a certificate capped at the SC-081 maximum of today
    (:func:`twcactl.rules.public_trust.term`; ``notes`` says so), later by free re-issues; ``strict``
    refuses a validity the cap would shorten (PolicyError, exit 1) instead.
    A request's own ``profile`` overrides ``profile``.
    Without ``keep_going`` the batch is all or nothing: the first refused
    request is raised and nothing is issued.  With it, refused requests are
    reported in ``failed`` and the rest are issued.  The whole batch is one
    transaction (durable when this returns).  ``progress(stage, done, total)``, when given, is called as
    requests are checked (``"checking"``) and certificates signed (``"signing"``), or, for a batch checked
    and signed in one pass, as each comes back (``"issuing"``): the CLI's progress bar.
    ``jobs`` worker processes check and sign the requests (issue 29, :mod:`twcactl.authority.parallel`);
    this process alone records, in request order, with the same outcome as ``jobs=1``.

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

    policy = account.policy()
    unlocked, passphrase = _one_pass_signer(store, requests, profile=profile, balance=account.balance,
                                            validity=validity, jobs=jobs, passphrase=passphrase)
    if unlocked is not None:
        return _issue_one_pass(store, requests, unlocked, outcome, account_id=account_id, profile=profile,
                               validity=validity, operator=operator, contact=contact, note=note,
                               keep_going=keep_going, progress=progress, jobs=jobs, policy=policy)
    accepted: list[tuple[CsrInput, x509.CertificateSigningRequest]] = []
    for done, (item, check) in enumerate(parallel.checked(check_csr, store, requests, policy,
                                                           [r.profile or profile for r in requests], jobs=jobs), 1):
        try:
            csr = check()
            if _public_trust(store, item.profile or profile):  # issue 26: names, DCV, CAA, perspectives
                _before_signing(store, [(account_id, item.name, csr)], now=utcnow(), operator=operator)
            accepted.append((item, csr))
        except TwcaError as exc:
            if not keep_going:
                raise
            outcome.failed.append((item.name, exc))
        if progress is not None:
            progress("checking", done, len(requests))
    if not accepted:
        return outcome

    require_balance(account_id, account.balance, validity.cost * len(accepted))
    ca = store.cas.issuing()
    not_before = utcnow()
    paid_until = validity.end(not_before)
    terms = [_issue_term(store, item.profile or profile, not_before, paid_until, strict) for item, _csr in accepted]
    for t in terms:
        check_within_issuer(_term_end(t, paid_until), ca.certificate())
    signer = _unlock(store, passphrase, ca)
    urls = _urls(store, ca.name)
    built: list[tuple[_Built, CsrInput]] = []
    calls = [dict(csr=csr, profile=item.profile or profile, account_id=account_id, account=policy,
                  not_before=not_before, not_after=_term_end(t, paid_until),
                  urls=_short_lived_urls(urls) if item.short_lived and br.is_short_lived(
                      not_before, _term_end(t, paid_until)) else urls,
                  public_trust=t is not None) for (item, csr), t in zip(accepted, terms)]
    for b, (item, _csr) in zip(parallel.signed(_build, signer, calls, jobs=jobs), accepted):
        built.append((b, item))
        if progress is not None:
            progress("signing", len(built), len(accepted))
    outcome.notes.extend(sorted({n for t in terms if t and (n := t.note())}))

    with store.transaction():
        serials = [_record(store, b, ca_name=ca.name, account_id=account_id, profile=item.profile or profile,
                           validity=validity, operator=operator, contact=contact, note=note, renewed_from=None,
                           paid_until=paid_until if t else None)
                   for (b, item), t in zip(built, terms)]
        _charge_and_log(store, outcome, built, serials, [paid_until if t else None for t in terms],
                        account_id=account_id, profile=profile, validity=validity, operator=operator, note=note)
    return _finish_issue(store, outcome, built, serials)


def _charge_and_log(store: Store, outcome: IssueOutcome, built: Sequence[tuple[_Built, CsrInput]],
                    serials: Sequence[str], paid: Sequence[dt.datetime | None], *, account_id: str, profile: str,
                    validity: Validity, operator: str, note: str | None) -> None:
    """The ledger entries and ``cert.issue`` log entries of freshly recorded certificates (inside the batch's
    transaction), in request order; sets ``outcome.balance_after``."""
    outcome.balance_after = store.accounts.change_balance_many(
        account_id, [(-validity.cost, serial) for serial in serials], action="issue", operator=operator, note=note)
    last = len(serials) - 1
    store.log.append_many([
        (operator, "cert.issue", account_id, serial, {
            "cn": b.cn, "profile": item.profile or profile, "cost": validity.cost,
            "not_after": rfc3339(b.end()), "csr": item.name,
            **({"paid_until": rfc3339(until)} if until else {}),
            "balance": outcome.balance_after + validity.cost * (last - i),
            "record": _issued_state(b, account_id)})
        for i, (serial, (b, item), until) in enumerate(zip(serials, built, paid))])


def _finish_issue(store: Store, outcome: IssueOutcome, built: Sequence[tuple[_Built, CsrInput]],
                  serials: Sequence[str]) -> IssueOutcome:
    """After the commit: the PEM files (never failing the command) and the new records, in request order."""
    outcome.files = _write_pems(store, [b for b, _item in built])
    outcome.issued.extend(store.certificates.get_many(list(serials)))
    return outcome


def _one_pass_signer(store: Store, requests: Sequence[CsrInput], *, profile: str, balance: int, validity: Validity,
                     jobs: int, passphrase: PassphraseProvider) -> tuple[_Signer | None, PassphraseProvider]:
    """Whether a batch is checked and signed in one pass of one pool (issue 29), and the CA key unlocked for it.

    Only when the outcome cannot differ from checking everything first: two or more workers, no public-trust
    request (its checks read the store between checking and signing), a balance that pays for every request
    (so no refusal can come after the checks), a validity within the issuing CA's, and a key in memory.
    Otherwise ``(None, passphrase)`` and the batch takes the two-step path; an unlock that fails is handed
    on as a provider raising the same error, so the two-step path reports it where it always did (after the
    checks: a refused request is still reported first), without asking for the passphrase again.
    """
    if (parallel.workers_for(jobs, len(requests)) < 2 or balance < validity.cost * len(requests)
            or any(_public_trust(store, item.profile or profile) for item in requests)):
        return None, passphrase
    ca = store.cas.issuing()
    if ca.key_uri is not None:
        return None, passphrase
    asked: list[str | None] = []

    def once() -> str | None:  # the two-step path asks the same provider again: never a second prompt
        if not asked:
            asked.append(passphrase())
        return asked[0]
    try:
        check_within_issuer(validity.end(utcnow()), ca.certificate())
        signer = _unlock(store, once, ca)
    except TwcaError as exc:
        failure = exc

        def fails() -> str | None:
            raise failure
        return None, fails
    return (None, once) if parallel.in_one_process(signer) else (signer, once)


def _issue_one_pass(store: Store, requests: Sequence[CsrInput], signer: _Signer, outcome: IssueOutcome, *,
                    account_id: str, profile: str, validity: Validity, operator: str, contact: str | None,
                    note: str | None, keep_going: bool, progress: Progress | None, jobs: int,
                    policy: AccountPolicy) -> IssueOutcome:
    """:func:`issue_certificates` for a batch :func:`_one_pass_signer` allowed: the workers check, build and
    sign each request (:func:`twcactl.authority.parallel.checked_and_signed`) while this process records
    the results in request order, in the batch's one transaction, opened once the workers are forked.

    The outcome is the one of the two-step path: a refused request without ``keep_going`` raises it (the
    transaction rolls back, nothing is recorded); a request that fails to build or sign raises after
    every refusal was seen, as it would after the checks.  Holds the write lock while the workers sign.
    """
    not_before = utcnow()
    paid_until = validity.end(not_before)
    check_within_issuer(paid_until, signer.cert)  # checked before the unlock too; this is the date signed
    urls = _urls(store, signer.ca.name)
    profiles = [item.profile or profile for item in requests]
    calls = [dict(profile=p, account_id=account_id, account=policy, not_before=not_before, not_after=paid_until,
                  urls=_short_lived_urls(urls) if item.short_lived and br.is_short_lived(not_before, paid_until)
                  else urls) for item, p in zip(requests, profiles)]
    built: list[tuple[_Built, CsrInput]] = []
    serials: list[str] = []
    failure: TwcaError | None = None
    with contextlib.closing(parallel.checked_and_signed(check_csr, _build, _finished, store, signer, requests,
                                                        policy, profiles, calls, jobs=jobs)) as results, \
            store.transaction():
        for done, (item, result) in enumerate(zip(requests, results), 1):
            if result.refused is not None:
                if not keep_going:
                    raise result.refused
                outcome.failed.append((item.name, result.refused))
            elif result.failed is not None:
                failure = failure or result.failed
            elif failure is None:
                built.append((result.built, item))
                serials.append(_record(store, result.built, ca_name=signer.ca.name, account_id=account_id,
                                       profile=item.profile or profile, validity=validity, operator=operator,
                                       contact=contact, note=note, renewed_from=None))
            if progress is not None:
                progress("issuing", done, len(requests))
        if failure is not None:
            raise failure
        if serials:
            _charge_and_log(store, outcome, built, serials, [None] * len(serials), account_id=account_id,
                            profile=profile, validity=validity, operator=operator, note=note)
    return _finish_issue(store, outcome, built, serials)


def _before_signing(store: Store, requests: Sequence[tuple[str, str, x509.CertificateSigningRequest]], *,
                    now: dt.datetime, operator: str) -> None:
    """:func:`twcactl.authority.issuance_checks.before_signing` (issue 26) for public-trust requests; imported
    only when there are some, so a private CA's commands do not load DNS, HTTP and perspective clients
    (about 30 ms of every ``cert issue``, ``python -X importtime``; issue 29).

    Raises:
        PolicyError: as ``before_signing`` does (exit 1).
    """
    if not requests:
        return
    from twcactl.authority import issuance_checks

    issuance_checks.before_signing(store, requests, now=now, operator=operator)


def _short_lived_urls(urls: CaUrls) -> CaUrls:
    """``urls`` without the CRL Distribution Point and OCSP URL of a short-lived certificate (BR §7.1.2.11.2)."""
    return dataclasses.replace(urls, crl_url=None, ocsp_url=None)


def _issue_term(store: Store, profile: str, not_before: dt.datetime, paid_until: dt.datetime,
                strict: bool) -> br.Term | None:
    """The first certificate of a purchase in public-trust mode (issue 16), or None when the BR do not apply.

    Raises:
        PolicyError: ``strict`` and the cap would shorten it (exit 1).
    """
    if not _public_trust(store, profile):
        return None
    _refuse_capped(strict, not_before, paid_until, "the certificate")
    return br.term(not_before, paid_until)


def _term_end(term: br.Term | None, end: dt.datetime) -> dt.datetime:
    return term.not_after if term is not None else end


def _issued_state(built: _Built, account_id: str) -> dict[str, object]:
    """The state a new certificate record starts in, as its log entry states it (issue 13)."""
    der = built.der or built.cert.public_bytes(serialization.Encoding.DER)
    return certificate_state(state="valid", reason=None, revoked_at=None, not_after=built.end(),
                             account=account_id, der=der)


def old_validity(record: CertRecord) -> Validity:
    """The validity ``record`` was issued with, the default for its renewal;
    see :func:`twcactl.rules.validity.recorded_validity`."""
    return recorded_validity(record.validity, record.not_before, record.not_after)


def check_renewable(store: Store, serial: str, *, early: bool, now: dt.datetime | None = None) -> CertRecord:
    """Refuse a renewal of ``serial`` that the state alone rules out (domain.md §4).

    Only once per certificate (issue 12), only a valid certificate (not expired, revoked or
    suspended), only inside the renewal window unless ``early``, only one that belongs to an account.
    The decisions are :func:`twcactl.rules.windows.require_not_renewed`,
    :func:`twcactl.rules.windows.require_renewable_status` and
    :func:`twcactl.rules.windows.require_renewal_window`; this reads the record and the window.

    Raises:
        NotFoundError / StateError: (exit 5), naming the successor (``details["renewed_by"]``) or the
            date the window opens.
    """
    old = store.certificates.get(serial)
    now = now or utcnow()
    window = store.settings().renewal_window_days
    if old.renewed_by is not None:
        successor = store.certificates.get(old.renewed_by)
        windows.require_not_renewed(serial, old.renewed_by, successor.status(now, window))
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
    strict: bool = False,
) -> RenewOutcome:
    """Renew one certificate; see :func:`renew_certificates`."""
    return renew_certificates(store, [RenewalItem(serial, csr, signer_der)], validity=validity, early=early,
                              operator=operator, passphrase=passphrase, note=note, strict=strict)[0]


def renew_certificates(
    store: Store,
    items: Sequence[RenewalItem],
    *,
    validity: Validity | None,
    early: bool,
    operator: str,
    passphrase: PassphraseProvider,
    note: str | None = None,
    strict: bool = False,
) -> list[RenewOutcome]:
    """Renew certificates with new CSRs, all or none, in one transaction (domain.md §4).

    A certificate of a subscription (issue 16: it has a ``paid_until``, or it is a server certificate of
    a public-trust CA) renews by :func:`twcactl.rules.quota.subscription_charge`: inside the paid time
    and without ``validity`` the next certificate is re-issued at no charge, else it charges as below and
    extends the paid time.  In public-trust mode the new certificate starts now and ends at the paid time
    or at the SC-081 cap of today, whichever is first (the rest stays in the subscription); ``strict``
    refuses a renewal the cap would shorten (exit 1).

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
    plans = _plan_renewals(store, items, validity=validity, early=early, now=now, strict=strict, operator=operator)
    built, _signers = _sign_renewals(store, plans, passphrase, now)
    with store.transaction():
        results = _commit_renewals(store, plans, built, operator=operator, note=note, early=early)
    files = _write_pems(store, built)
    records = store.certificates.get_many([r[0] for r in results])
    return [RenewOutcome(certificate=rec, renewed=old_serial, balance_before=before, balance_after=after, files=files,
                         charge=plan.charge, note=plan.term.note() if plan.term else None)
            for rec, (_new, old_serial, before, after), plan in zip(records, results, plans)]


@dataclass(frozen=True)
class _RenewalPlan:
    """One checked renewal: the old record, the new request and validity, the CA that signs it."""

    item: RenewalItem
    old: CertRecord
    account_id: str
    request: x509.CertificateSigningRequest
    chosen: Validity
    not_after: dt.datetime
    ca: CaRecord
    cost: int = 0
    paid_until: dt.datetime | None = None  # the subscription's paid time after the renewal (issue 16)
    charge: str = "charged"  # or "paid_time": a free re-issue
    term: br.Term | None = None  # the public-trust certificate (capped or not)


def _subscription_plan(store: Store, old: CertRecord, validity: Validity | None, now: dt.datetime,
                       strict: bool) -> tuple[Validity, int, dt.datetime, dt.datetime | None, str, br.Term | None]:
    """``(recorded validity, cost, notAfter, paid_until, charge, term)`` of renewing ``old`` (issue 16).

    Not a subscription (no paid-until, not public trust): the old rule, the validity continuing from the old
    notAfter (domain.md §4) at its cost.  A subscription: :func:`twcactl.rules.quota.subscription_charge`,
    and in public-trust mode a certificate from now to the paid time capped by SC-081.
    """
    default = old_validity(old)
    public = _public_trust(store, old.profile)
    if old.paid_until is None and not public:
        chosen = validity or default
        return chosen, chosen.cost, renewal_end(old.not_after, chosen), None, "charged", None
    charge = subscription_charge(old_not_after=old.not_after, old_paid_until=old.paid_until, requested=validity,
                                 default=default)
    if not public:
        return charge.validity, charge.years, charge.paid_until, charge.paid_until, charge.why, None
    _refuse_capped(strict, now, charge.paid_until, f"the renewal of {old.serial}")
    term = br.term(now, charge.paid_until)
    return charge.validity, charge.years, term.not_after, charge.paid_until, charge.why, term


def _plan_renewals(store: Store, items: Sequence[RenewalItem], *, validity: Validity | None, early: bool,
                   now: dt.datetime, strict: bool = False, operator: str = "") -> list[_RenewalPlan]:
    """Every check of :func:`renew_certificates` before anything is signed (a refusal changes nothing)."""
    plans: list[_RenewalPlan] = []
    costs: dict[str, int] = {}
    seen: set[str] = set()
    for item in items:
        if item.serial in seen:  # renewal is once per certificate (issue 12), within a batch too
            raise StateError(f"certificate {item.serial} is named twice; a certificate is renewed once.")
        seen.add(item.serial)
        old = check_renewable(store, item.serial, early=early, now=now)
        if item.signer_der is not None and item.signer_der != old.der:
            raise PolicyError(f"the renewal request is not signed by certificate {item.serial}.")
        account = store.accounts.get(old.account or "", ledger=False)
        request = check_csr(item.csr, account.policy(), old.profile, store=store)
        new_cn = names.common_name(request.subject) or ""
        if new_cn.lower() != (old.cn or "").lower():
            raise PolicyError(f"the new CSR's CN {new_cn!r} differs from the certificate's CN {old.cn!r}.",
                              hint="a renewal keeps the CN; apply for a new certificate instead")
        chosen, cost, not_after, paid_until, charge, term = _subscription_plan(store, old, validity, now, strict)
        ca = store.cas.issuing()  # the active issuing CA signs renewals too (issue 25: rotation)
        check_within_issuer(not_after, ca.certificate())
        costs[account.id] = costs.get(account.id, 0) + cost
        plans.append(_RenewalPlan(item, old, account.id, request, chosen, not_after, ca, cost, paid_until, charge,
                                  term))
    require_balances(costs, lambda account_id: store.accounts.get(account_id, ledger=False).balance)
    _before_signing(store, [(p.account_id, p.item.csr.name, p.request) for p in plans if p.term is not None],
                    now=now, operator=operator)
    return plans


def _sign_renewals(store: Store, plans: Sequence[_RenewalPlan], passphrase: PassphraseProvider,
                   now: dt.datetime) -> tuple[list[_Built], dict[str, _Signer]]:
    """The new certificates of ``plans``, signed (nothing recorded yet), and the unlocked CAs by name."""
    signers: dict[str, _Signer] = {}
    urls: dict[str, CaUrls] = {}
    built = []
    for plan in plans:
        if plan.ca.name not in signers:
            signers[plan.ca.name] = _unlock(store, passphrase, plan.ca)
            urls[plan.ca.name] = _urls(store, plan.ca.name)
        built.append(_build(signers[plan.ca.name], plan.request, profile=plan.old.profile, account_id=plan.account_id,
                            account=store.accounts.get(plan.account_id, ledger=False).policy(),
                            not_before=now, not_after=plan.not_after, urls=urls[plan.ca.name],
                            public_trust=plan.term is not None))
    return built, signers


def _commit_renewals(store: Store, plans: Sequence[_RenewalPlan], built: Sequence[_Built], *, operator: str,
                     note: str | None, early: bool) -> list[tuple[str, str, int, int]]:
    """Record, charge and log each renewal (inside the caller's transaction).

    Checks again, under the write lock, that no renewal of the old certificate was committed meanwhile
    (two renewals racing: the second is refused and its transaction rolled back; issue 12).  The ledger
    entry names the step: the new serial is charged its cost and the old one's time is carried forward.

    Returns:
        ``(new serial, old serial, balance before, balance after)`` per plan.
    """
    results: list[tuple[str, str, int, int]] = []
    for b, plan in zip(built, plans):
        old, account_id, chosen, item = plan.old, plan.account_id, plan.chosen, plan.item
        windows.require_not_renewed(old.serial, store.certificates.get(old.serial).renewed_by)
        before = store.accounts.get(account_id, ledger=False).balance
        new_serial = _record(store, b, ca_name=plan.ca.name, account_id=account_id, profile=old.profile,
                             validity=chosen, operator=operator, contact=old.contact, note=note or old.note,
                             renewed_from=old.serial, cost=plan.cost, paid_until=plan.paid_until)
        why = (f"re-issues {old.serial} inside the paid time (until {plan.paid_until:%Y-%m-%d}): no charge"
               if plan.charge == "paid_time" and plan.paid_until else
               f"renews {old.serial}; its remaining time is carried forward")
        balance = store.accounts.change_balance(account_id, -plan.cost, action="renew", operator=operator,
                                                serial=new_serial, note=note or why)
        store.log.append(operator=operator, action="cert.renew", account=account_id, serial=new_serial, details={
            "renewed": old.serial, "cn": old.cn, "cost": plan.cost, "not_after": rfc3339(plan.not_after),
            "early": early, "signed_request": item.signer_der is not None,
            **({"paid_until": rfc3339(plan.paid_until), "charge": plan.charge} if plan.paid_until else {}),
            "balance": balance, "record": _issued_state(b, account_id),
        })
        results.append((new_serial, old.serial, before, balance))
    return results


@dataclass(frozen=True)
class ReplaceOutcome:
    """What :func:`renew_and_revoke` did: the renewal, and the old certificate's revocation (None without one)."""

    renewal: RenewOutcome
    revoked: StateOutcome | None


def renew_and_revoke(store: Store, serial: str, csr: CsrInput, *, early: bool, operator: str,
                     passphrase: PassphraseProvider, revoke_reason: str | None, note: str | None = None,
                     prepare: Callable[[x509.Certificate], None] | None = None) -> ReplaceOutcome:
    """Renew ``serial`` with ``csr`` and, with ``revoke_reason``, revoke the old certificate, in ONE transaction
    (``pfx rekey --new-key --revoke-old``; domain.md §4-§5, issue 12).

    Every check (:func:`renew_certificates`'s) runs and the new certificate is signed first; then
    ``prepare(new certificate)`` runs (e.g. writing the new PFX to a temporary file): when it raises,
    nothing has been recorded or charged.  Then the renewal (charged its cost, the old time carried
    forward) and the revocation (refunding nothing: the old certificate has a successor, so its time is
    not refunded) commit together, with the CRL.  Derived files are written after the commit and
    reported in the outcomes' ``files`` (pending ones are rebuilt by ``ca check``).

    Raises:
        everything :func:`renew_certificates` raises, and whatever ``prepare`` raises (nothing changed).
    """
    store.operators.require_manager(operator)
    now = utcnow()
    plans = _plan_renewals(store, [RenewalItem(serial, csr)], validity=None, early=early, now=now, operator=operator)
    built, signers = _sign_renewals(store, plans, passphrase, now)
    if prepare is not None:
        prepare(built[0].cert)
    old_ca = plans[0].old.ca_name  # the old certificate's own CA lists it on its CRL (issue 25)
    signer = signers.get(old_ca) or _unlock(store, passphrase, store.cas.by_name(old_ca))
    refund_days = store.settings().refund_window_days
    refund: Refund | None = None
    with store.transaction():
        (new_serial, old_serial, before, after), = _commit_renewals(store, plans, built, operator=operator, note=note,
                                                                  early=early)
        if revoke_reason is not None:
            refund = _revoke_renewed(store, plans[0].old, signer, now, reason=revoke_reason, operator=operator,
                                     refund_days=refund_days)
    files = _write_pems(store, built)
    renewal = RenewOutcome(store.certificates.get(new_serial), old_serial, before, after, files)
    if refund is None:
        return ReplaceOutcome(renewal, None)
    crl_files = write_current_crl(store, signer.ca.name)
    return ReplaceOutcome(renewal, StateOutcome(store.certificates.get(old_serial), crl_files, refund))


def _revoke_renewed(store: Store, record: CertRecord, signer: _Signer, now: dt.datetime, *, reason: str,
                    operator: str, refund_days: int) -> Refund:
    """Revoke ``record`` (valid, just renewed) inside the caller's transaction: state, ledger step, log, CRL.

    The same steps as :func:`revoke_certificate`'s transaction for a certificate that is not yet revoked.
    """
    refund = _refund(store.certificates.get(record.serial), now, refund_days)
    store.certificates.set_state(record.serial, "revoked", revoked_at=now, reason=reason)
    _book_refund(store, record, refund, reason=reason, operator=operator)
    store.log.append(operator=operator, action="cert.revoke", account=record.account, serial=record.serial, details={
        "reason": reason, "previous_state": record.state, "previous_reason": record.reason, "invalidity_date": None,
        "refund": refund.years, "refund_why": refund.why, "record": _revocation_state(store, record.serial),
        **({"balance": store.accounts.get(record.account, ledger=False).balance} if record.account else {}),
    })
    _regenerate_crl(store, signer, now, add=[RevokedEntry(serial=parse_serial(record.serial), revoked_at=now,
                                                          reason=reason)])
    return refund


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
    revoked_cas = store.cas.revoked_entries(signer.ca.name)  # CA certificates it revoked (issue 25)
    if entries is None or revoked_cas:
        entries = list(revoked_from_records([*store.certificates.revoked_entries(signer.ca.name), *revoked_cas]))
    number = store.crls.next_number(signer.ca.name)
    next_update = now + dt.timedelta(days=crl_days_of(store, signer.ca))
    crl = build_crl(issuer_cert=signer.cert, issuer_key=signer.key, entries=entries, number=number,
                    this_update=now, next_update=next_update)
    der = crl.public_bytes(serialization.Encoding.DER)
    store.crls.add(ca_name=signer.ca.name, number=number, this_update=now, next_update=next_update,
                  entries=len(entries), der=der)
    return crl


def sign_ca_crl(store: Store, ca: CaRecord, key: PrivateKey, now: dt.datetime) -> x509.CertificateRevocationList:
    """Build, sign and record a complete new CRL of ``ca`` with its unlocked ``key`` (inside a transaction):
    what ``ca issuer add`` and ``ca issuer revoke`` publish (issue 25)."""
    return _regenerate_crl(store, _Signer(ca=ca, cert=ca.certificate(), key=key), now, full=True)


def crl_days_of(store: Store, ca: CaRecord) -> int:
    """How many days a CRL of ``ca`` stays current: a CA that signs CA certificates (the root) publishes for
    :data:`twcactl.rules.publication.CA_CRL_DAYS` (BR §4.9.7: within 12 months; issue 25), an issuing CA for
    the ``crl_days`` setting (at most 10 days in public-trust mode, BR §4.9.7)."""
    if any(other.issuer == ca.name for other in store.cas.all()):
        return CA_CRL_DAYS
    settings = store.settings()
    return br.crl_days(settings.crl_days, bool(settings.public_trust))


def write_current_crl(store: Store, ca_name: str) -> FilesReport:
    """Write ``crl/<ca>.crl`` from the newest CRL record (under the files lock, so the newest wins).

    Never raises for the file: when it cannot be written (full disk, unwritable ``crl/``, the files
    lock held elsewhere past :func:`_files_wait`) it is reported pending for ``ca check``.
    """
    report = FilesReport()
    path = store.crl_path(ca_name)
    try:
        with store.files_lock(timeout=_files_wait(store)):
            latest = store.crls.latest(ca_name)
            if latest is not None and latest.get("der"):
                write_file(path, latest["der"], force=True)
                report.written.append(str(path))
    except (OSError, TwcaError):
        report.pending.append(str(path))
    return report


def _revocation_state(store: Store, serial: str) -> dict[str, object]:
    """The record of ``serial`` as it now stands (inside the transaction), in the log's form (issue 13)."""
    rec = store.certificates.get(serial)
    return certificate_state(state=rec.state, reason=rec.reason, revoked_at=rec.revoked_at, not_after=rec.not_after,
                             account=rec.account)


def _refund(record: CertRecord, now: dt.datetime, refund_days: int) -> Refund:
    """What revoking ``record`` now gives back; the rule is :func:`twcactl.rules.quota.refund_decision`.

    Read ``record`` inside the revoking transaction, so that a renewal committed meanwhile counts.
    """
    if record.account is None:
        return Refund(0, "not_charged")
    return refund_decision(cost=record.cost, state=record.state, issued_at=parse_rfc3339(record.issued_at), now=now,
                           refund_window_days=refund_days, renewed_by=record.renewed_by)


def _book_refund(store: Store, record: CertRecord, refund: Refund, *, reason: str, operator: str) -> None:
    """The ledger's step for a revocation (inside the transaction; issue 12, one accounting rule for time).

    A refund is a ``refund`` entry of its cost; a refund withheld because the time was carried forward to
    a successor is a ``carried`` entry of 0 naming it, so the ledger shows why nothing came back.
    """
    if record.account is None:
        return
    if refund.years:
        store.accounts.change_balance(record.account, refund.years, action="refund", operator=operator,
                                      serial=record.serial, note=f"revoked ({reason}) within the refund window")
    elif refund.why == "renewed":
        store.accounts.change_balance(record.account, 0, action="carried", operator=operator, serial=record.serial,
                                      note=f"revoked ({reason}); its time was carried forward to {refund.renewed_by}:"
                                           " nothing refunded")


def revoke_certificate(
    store: Store,
    serial: str,
    *,
    reason: str,
    operator: str,
    passphrase: PassphraseProvider,
    invalidity_date: dt.datetime | None = None,
    all_with_key: bool = False,
) -> StateOutcome:
    """Revoke ``serial`` for an RFC 5280 ``reason`` and regenerate its CA's CRL.

    keyCompromise also blocks the key (SHA-256 of its SubjectPublicKeyInfo): no issue, renewal or
    card enrolment certifies it again (CA/Browser Forum BR §6.1.1.3).  The outcome's ``same_key``
    lists the other unexpired, unrevoked certificates with the same key; ``all_with_key`` revokes
    them too, for the same reason, in the same transaction (each with its own refund step and log
    entry).

    A suspended certificate may be revoked for good; a revoked one is final,
    except that its reason may be changed to keyCompromise.  Revoking a valid
    or suspended certificate within the refund window refunds its
    certificate-years (domain.md §3, §5), unless it has been renewed: its time
    was carried forward to the successor, so nothing comes back and the ledger
    says so (issue 12; the outcome's ``refund``).  The CRL file is written after the
    commit; when it cannot be, the outcome lists it pending (issue 13).

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
    fingerprint = spki_sha256(x509.load_der_x509_certificate(record.der).public_key())
    others = same_key_certificates(store, serial, fingerprint, now)
    signers = _signers_for(store, passphrase, signer, others if all_with_key else [])
    refund_days = store.settings().refund_window_days
    with store.transaction():
        refund = _refund(store.certificates.get(serial), now, refund_days)
        revoked_at = parse_rfc3339(record.revoked_at) if record.state == "revoked" and record.revoked_at else now
        store.certificates.set_state(serial, "revoked", revoked_at=revoked_at, reason=reason,
                                    invalidity_date=invalidity_date)
        _book_refund(store, record, refund, reason=reason, operator=operator)
        store.log.append(operator=operator, action="cert.revoke", account=record.account, serial=serial, details={
            "reason": reason, "previous_state": record.state, "previous_reason": record.reason,
            "invalidity_date": rfc3339(invalidity_date) if invalidity_date else None,
            "refund": refund.years, "refund_why": refund.why, "record": _revocation_state(store, serial),
            **({"balance": store.accounts.get(record.account, ledger=False).balance} if record.account else {}),
        })
        entry = RevokedEntry(serial=parse_serial(serial), revoked_at=revoked_at, reason=reason,
                             invalidity_date=invalidity_date)
        _regenerate_crl(store, signer, now, add=[entry])
        if reason == "keyCompromise":
            store.keys.block(fingerprint, serial=serial, reason=reason, operator=operator, when=now)
        for other in others if all_with_key else []:
            _revoke_renewed(store, other, signers[other.ca_name], now, reason=reason, operator=operator,
                            refund_days=refund_days)
    files = write_current_crl(store, signer.ca.name)
    for name in signers.keys() - {signer.ca.name}:
        files.extend(write_current_crl(store, name))
    return StateOutcome(store.certificates.get(serial), files, refund,
                        tuple(store.certificates.get_many([o.serial for o in others])))


def same_key_certificates(store: Store, serial: str, fingerprint: str, now: dt.datetime) -> list[CertRecord]:
    """The certificates other than ``serial`` whose key has SPKI SHA-256 ``fingerprint`` and that are
    neither revoked nor expired at ``now`` (valid or suspended), oldest record first."""
    serials = [s for s in store.keys.serials_with_key(fingerprint) if s != serial]
    return [r for r in store.certificates.get_many(serials) if r.state != "revoked" and r.not_after > now]


def _signers_for(store: Store, passphrase: PassphraseProvider, first: _Signer,
                 records: Sequence[CertRecord]) -> dict[str, _Signer]:
    """``first`` and the unlocked CA of each of ``records``, by CA name (unlocked once each, before any write)."""
    signers = {first.ca.name: first}
    for record in records:
        if record.ca_name not in signers:
            signers[record.ca_name] = _unlock(store, passphrase, store.cas.by_name(record.ca_name))
    return signers


def hold_certificate(store: Store, serial: str, *, operator: str, passphrase: PassphraseProvider) -> StateOutcome:
    """Suspend ``serial`` (certificateHold, domain.md §5) and regenerate the CRL.

    A public-trust CA never suspends a TLS server certificate (BR §4.9.13: "the repository MUST NOT
    include entries that indicate that a Certificate is suspended"; issue 16); personal certificates
    keep their suspension (domain.md §5).

    Raises:
        StateError: not valid (already held, revoked or expired), or a server certificate of a public-trust
            CA (exit 5).
    """
    store.operators.require_manager(operator)
    record = store.certificates.get(serial)
    now = utcnow()
    if _public_trust(store, record.profile):
        raise StateError(f"certificate {serial} is a TLS server certificate of a public-trust CA; the CA/Browser "
                         "Forum Baseline Requirements (§4.9.13) forbid suspending it.",
                         hint=f"revoke it instead: twcactl cert revoke {serial} --reason REASON",
                         details={"rule": "BR 4.9.13", "profile": record.profile})
    status = record.status(now, store.settings().renewal_window_days)
    if status not in ("valid", "expiring", "renewed"):
        raise StateError(f"certificate {serial} is {status}; only a valid certificate can be suspended.")
    signer = _unlock(store, passphrase, store.cas.by_name(record.ca_name))
    with store.transaction():
        store.certificates.set_state(serial, "suspended", revoked_at=now, reason=HOLD_REASON)
        store.log.append(operator=operator, action="cert.hold", account=record.account, serial=serial,
                         details={"record": _revocation_state(store, serial)})
        _regenerate_crl(store, signer, now, add=[RevokedEntry(parse_serial(serial), now, HOLD_REASON)])
    files = write_current_crl(store, signer.ca.name)
    return StateOutcome(store.certificates.get(serial), files)


def release_certificate(store: Store, serial: str, *, operator: str, passphrase: PassphraseProvider) -> StateOutcome:
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
                         details={"held_since": record.revoked_at, "record": _revocation_state(store, serial)})
        _regenerate_crl(store, signer, now, remove=frozenset({parse_serial(serial)}))
    files = write_current_crl(store, signer.ca.name)
    return StateOutcome(store.certificates.get(serial), files)


def generate_crl(store: Store, *, operator: str, passphrase: PassphraseProvider,
                 full: bool = False, ca_name: str | None = None) -> CrlOutcome:
    """Regenerate the issuing CA's CRL on demand (``twcactl crl``); ``full`` rebuilds every entry from the records.

    ``ca_name`` (``crl --ca NAME``, issue 25) names another CA: ``root`` signs the root's CRL with the root
    key (the offline-root ceremony; ``passphrase`` is the root key's, or its token's PIN), listing the issuing
    CAs it revoked; a retired issuing CA goes on publishing its CRL.

    Returns the new CRL and its file (written, or pending for ``ca check`` when it cannot be written).

    Raises:
        StateError: not a manager (exit 5).  AuthError: CA passphrase (exit 4).
    """
    store.operators.require_manager(operator)
    signer = _unlock(store, passphrase, store.cas.by_name(ca_name) if ca_name else None)
    now = utcnow()
    with store.transaction():
        crl = _regenerate_crl(store, signer, now, full=full)
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        store.log.append(operator=operator, action="crl.generate", details={
            "ca": signer.ca.name, "number": number, "entries": len(crl), "full": full})
    return CrlOutcome(crl, write_current_crl(store, signer.ca.name))


def issuing_chain(store: Store) -> list[x509.Certificate]:
    """The CA certificates above a new certificate or a renewal, root first: the active issuing CA's chain
    (issue 25: a renewal of a certificate of a retired CA comes from the active one)."""
    return [ca.certificate() for ca in store.cas.chain(store.cas.issuing().name)]


def ca_chain_for(store: Store, record: CertRecord) -> list[x509.Certificate]:
    """The CA certificates above ``record``, root first (its own issuing CA last, by the issuer links; issue 25)."""
    return [ca.certificate() for ca in store.cas.chain(record.ca_name)]
