"""Issuing and renewing card keys at the local CA (domain.md §8 with §3-§4).

The card workflows in :mod:`twcactl.card` take a ``submit`` callable that
turns pending card keys (or renewal requests) into certificates; these are
the local CA's.  Every check that does not need the card (role, account,
policy of the subject for each profile, state, renewal window, quota, CA
passphrase) runs before the card is touched, and a signing and encryption
pair is issued or renewed in one transaction: both or neither.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.authority.home import load_ca_key
from twcactl.authority.lifecycle import (
    CsrInput,
    FilesReport,
    PassphraseProvider,
    RenewalItem,
    check_csr,
    check_renewable,
    issue_certificates,
    old_validity,
    renew_certificates,
)
from twcactl.errors import PolicyError, StateError
from twcactl.models import RequestFacts
from twcactl.pkix import names
from twcactl.pkix.cms_request import verify_renewal_request
from twcactl.policy.checks import check_request
from twcactl.rules.quota import require_balance, require_balances
from twcactl.rules.validity import Validity
from twcactl.store import Store
from twcactl.store.records import CertRecord


def _checked_passphrase(store: Store, passphrase: PassphraseProvider) -> PassphraseProvider:
    """Check the CA passphrase now, before the card is touched (the provider asks only once)."""
    if store.ca_key_encrypted:
        load_ca_key(store.cas.issuing(), passphrase())
    return passphrase


class LocalIssuer:
    """Issues pending card keys from the local CA (the ``submit`` of :func:`twcactl.card.enroll`)."""

    def __init__(self, store: Store, *, account_id: str, validity: Validity, operator: str,
                 passphrase: PassphraseProvider, contact: str | None = None) -> None:
        self.store = store
        self.contact = contact
        self.account_id = account_id
        self.validity = validity
        self.operator = operator
        self.passphrase = passphrase
        self.issued: list[tuple[x509.Certificate, CertRecord]] = []
        self.files = FilesReport()  # PEM files written after the commit, or pending for ca check

    def __call__(self, pending: Sequence[Any]) -> list[x509.Certificate]:
        """Certificates for ``pending`` keys (each with ``csr`` and ``spec.profile`` / ``spec.label``), in order.

        Raises:
            PolicyError: a rule fails, or a key is blocked (``key.blocked``: revoked for keyCompromise,
                BR §6.1.1.3) (exit 1); nothing is issued.
        """
        account = self.store.accounts.get(self.account_id, ledger=False)
        inputs = []
        for item in pending:
            csr_input = CsrInput(name=f"card key {item.spec.label}",
                                 data=item.csr.public_bytes(serialization.Encoding.DER), profile=item.spec.profile)
            check_csr(csr_input, account.policy(), item.spec.profile, store=self.store)  # key.blocked too
            inputs.append(csr_input)
        outcome = issue_certificates(self.store, inputs, account_id=self.account_id, profile=inputs[0].profile or "ssl",
                                     validity=self.validity, operator=self.operator, passphrase=self.passphrase,
                                     note="card enrolment", contact=self.contact)
        self.files.extend(outcome.files)
        certs: list[x509.Certificate] = []
        for record in outcome.issued:
            cert = x509.load_der_x509_certificate(record.der)
            self.issued.append((cert, record))
            certs.append(cert)
        return certs


def prepare_issuer(store: Store, specs: Sequence[Any], subject_pairs: Sequence[tuple[str, str]],
                   sans_for: Callable[[Any], Sequence[x509.GeneralName]], *, account_id: str, validity: Validity,
                   key_type: str, operator: str, passphrase: PassphraseProvider,
                   contact: str | None = None) -> LocalIssuer:
    """Every check that does not need the card, then a :class:`LocalIssuer`.

    Args:
        specs: the keys to enrol (each with ``profile``).
        subject_pairs: the subject as ``(short name, value)`` pairs.
        sans_for: the SAN entries for a spec.
        key_type: the card key type (``rsa2048``, ``ec-p256``...), for ``key.strength``.
        contact: the holder's e-mail address, kept with each certificate (``card enroll --contact``, issue 28).

    Raises:
        StateError: not a manager, unknown account (exit 5).  PolicyError: a rule fails (exit 1).
        QuotaError: the balance is short (exit 5).  AuthError: CA passphrase (exit 4).
    """
    store.operators.require_manager(operator)
    account = store.accounts.get(account_id, ledger=False)
    family, size = ("ec", int(key_type[-3:])) if key_type.startswith("ec") else ("rsa", int(key_type[3:]))
    subject = names.build_name(subject_pairs)
    for spec in specs:
        sans = names.general_names(sans_for(spec))
        facts = RequestFacts(subject=names.attributes(subject), sans=tuple(sans), key_type=family, key_size=size,
                             key_curve={256: "secp256r1", 384: "secp384r1"}.get(size) if family == "ec" else None)
        result = check_request(facts, account.policy(), spec.profile, max_sans=store.settings().max_sans)
        if not result.ok:
            first = result.failed[0]
            raise PolicyError(f"{spec.profile}: {first.rule}: {first.message}",
                              hint="nothing was written to the card",
                              findings=result.findings, details={"profile": spec.profile})
    require_balance(account_id, account.balance, validity.cost * len(specs))
    return LocalIssuer(store, account_id=account_id, validity=validity, operator=operator,
                       passphrase=_checked_passphrase(store, passphrase), contact=contact)


class LocalRenewer:
    """Submits card renewal requests to the local CA, as ``cert renew --request`` does
    (the ``submit`` of :func:`twcactl.card.renew`)."""

    def __init__(self, store: Store, targets: Sequence[Any], *, validity: Validity | None, early: bool,
                 operator: str, passphrase: PassphraseProvider) -> None:
        self.store = store
        self.targets = targets
        self.validity = validity
        self.early = early
        self.operator = operator
        self.passphrase = passphrase
        self.records: list[CertRecord] = []
        self.renewed: list[tuple[x509.Certificate, CertRecord, str]] = []
        self.files = FilesReport()  # PEM files written after the commit, or pending for ca check

    def precheck(self) -> None:
        """Before any key is made: every certificate is this CA's, valid and inside its renewal window
        (or ``early``), the accounts can pay for all of them, and the CA passphrase is right.

        Raises:
            StateError / QuotaError (exit 5), AuthError (exit 4).
        """
        costs: dict[str, int] = {}
        for target in self.targets:
            found = self.store.certificates.find_by_der(target.certificate.public_bytes(serialization.Encoding.DER))
            if found is None:
                raise StateError(f"certificate {target.serial} on the card was not issued by this CA.",
                                 hint="renew it at its CA with: twcactl card renew --request-out FILE")
            record = check_renewable(self.store, found.serial, early=self.early)
            if record.account:
                costs[record.account] = costs.get(record.account, 0) + (self.validity or old_validity(record)).cost
            self.records.append(record)
        require_balances(costs, lambda account_id: self.store.accounts.get(account_id, ledger=False).balance)
        self.passphrase = _checked_passphrase(self.store, self.passphrase)

    def __call__(self, made: Sequence[Any]) -> list[x509.Certificate]:
        """New certificates for the renewal requests in ``made`` (each with ``request_der``), in order."""
        items = []
        for item, record in zip(made, self.records):
            name = f"card renewal request for {record.serial}"
            request = verify_renewal_request(item.request_der, name=name)
            items.append(RenewalItem(record.serial,
                                     CsrInput(name=name, data=request.csr.public_bytes(serialization.Encoding.DER)),
                                     request.signer.public_bytes(serialization.Encoding.DER)))
        outcomes = renew_certificates(self.store, items, validity=self.validity, early=self.early,
                                      operator=self.operator, passphrase=self.passphrase)
        if outcomes:
            self.files.extend(outcomes[0].files)  # one batch: every outcome shares one report
        certs: list[x509.Certificate] = []
        for outcome in outcomes:
            cert = x509.load_der_x509_certificate(outcome.certificate.der)
            self.renewed.append((cert, outcome.certificate, outcome.renewed))
            certs.append(cert)
        return certs


@dataclass(frozen=True)
class CardRegistration:
    """What :func:`register_card` found.

    Attributes:
        records: per certificate given, in order, this CA's record of it, or None when another CA issued it.
        renewal_window_days: the home's renewal window, for the status words of the records (domain.md §4).
    """

    records: list[CertRecord | None]
    renewal_window_days: int


def register_card(store: Store, certificates: Sequence[tuple[x509.Certificate, str]], *, token_label: str,
                  token_serial: str, operator: str) -> CardRegistration:
    """Link the certificates copied off a card to this CA's records ("moving to another computer",
    domain.md §8): each one this CA issued gets a ``card.register`` log entry, all in one transaction.

    No role is needed: registering copies public certificates and changes no record; the log entry
    keeps who did it (3A audit, domain.md §3).

    Args:
        certificates: ``(certificate, file it is written to)`` pairs.
        token_label / token_serial: the card, as its token reports it (kept in the log).
        operator: who registers.

    Returns:
        The records found and the renewal window.
    """
    records = [store.certificates.find_by_der(cert.public_bytes(serialization.Encoding.DER))
               for cert, _file in certificates]
    linked = [(record, file) for record, (_cert, file) in zip(records, certificates) if record is not None]
    if linked:
        with store.transaction():
            store.log.append_many([(operator, "card.register", record.account, record.serial,
                                {"token": token_label, "token_serial": token_serial, "file": file})
                               for record, file in linked])
    return CardRegistration(records, store.settings().renewal_window_days)


def register_file_name(label: str | None, serial: str) -> str:
    """The file ``card register`` writes a card's certificate to: ``<role>-<serial>.cer`` (issue 17).

    The role is the key's label as the holder knows it: ``sign`` or ``enc`` for the signing and
    encryption pair (labels ``user-sign`` / ``user-enc``, or ``LABEL sign`` / ``LABEL enc``,
    domain.md §7), else the label itself with every character but letters, digits, ``-`` and ``_``
    replaced by ``_``; a certificate without a label is ``<serial>.cer``.  The serial keeps names unique.

    Args:
        label: the certificate object's CKA_LABEL (None or empty when it has none).
        serial: the certificate's serial as the contract prints it (lowercase hex).
    """
    text = (label or "").strip()
    lowered = text.lower()
    for role in ("sign", "enc"):
        if lowered == role or lowered.endswith((f"-{role}", f" {role}", f"_{role}")):
            return f"{role}-{serial}.cer"
    clean = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in text)[:40]
    return f"{clean}-{serial}.cer" if clean.strip("_") else f"{serial}.cer"
