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
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.authority.home import load_ca_key
from twcactl.authority.lifecycle import (
    CsrInput,
    PassphraseProvider,
    RenewalItem,
    check_csr,
    check_renewable,
    issue_certificates,
    old_validity,
    renew_certificates,
)
from twcactl.errors import PolicyError, QuotaError, StateError
from twcactl.issue import Validity
from twcactl.models import RequestFacts
from twcactl.pkix import names
from twcactl.pkix.cms_request import verify_renewal_request
from twcactl.policy.checks import check_request
from twcactl.store import Store
from twcactl.store.records import CertRecord


def _checked_passphrase(store: Store, passphrase: PassphraseProvider) -> PassphraseProvider:
    """Check the CA passphrase now, before the card is touched (the provider asks only once)."""
    if store.ca_key_encrypted:
        load_ca_key(store.issuing_ca(), passphrase())
    return passphrase


class LocalIssuer:
    """Issues pending card keys from the local CA (the ``submit`` of :func:`twcactl.card.enroll`)."""

    def __init__(self, store: Store, *, account_id: str, validity: Validity, operator: str,
                 passphrase: PassphraseProvider) -> None:
        self.store = store
        self.account_id = account_id
        self.validity = validity
        self.operator = operator
        self.passphrase = passphrase
        self.issued: list[tuple[x509.Certificate, CertRecord]] = []

    def __call__(self, pending: Sequence[Any]) -> list[x509.Certificate]:
        """Certificates for ``pending`` keys (each with ``csr`` and ``spec.profile`` / ``spec.label``), in order."""
        account = self.store.get_account(self.account_id, ledger=False)
        inputs = []
        for item in pending:
            csr_input = CsrInput(name=f"card key {item.spec.label}", data=item.csr.public_bytes(serialization.Encoding.DER),
                                 profile=item.spec.profile)
            check_csr(csr_input, account.policy(), item.spec.profile)
            inputs.append(csr_input)
        outcome = issue_certificates(self.store, inputs, account_id=self.account_id, profile=inputs[0].profile or "ssl",
                                     validity=self.validity, operator=self.operator, passphrase=self.passphrase,
                                     note="card enrolment")
        certs: list[x509.Certificate] = []
        for record in outcome.issued:
            cert = x509.load_der_x509_certificate(record.der)
            self.issued.append((cert, record))
            certs.append(cert)
        return certs


def prepare_issuer(store: Store, specs: Sequence[Any], subject_pairs: Sequence[tuple[str, str]],
                   sans_for: Callable[[Any], Sequence[x509.GeneralName]], *, account_id: str, validity: Validity,
                   key_type: str, operator: str, passphrase: PassphraseProvider) -> LocalIssuer:
    """Every check that does not need the card, then a :class:`LocalIssuer`.

    Args:
        specs: the keys to enrol (each with ``profile``).
        subject_pairs: the subject as ``(short name, value)`` pairs.
        sans_for: the SAN entries for a spec.
        key_type: the card key type (``rsa2048``, ``ec-p256``...), for ``key.strength``.

    Raises:
        StateError: not a manager, unknown account (exit 5).  PolicyError: a rule fails (exit 1).
        QuotaError: the balance is short (exit 5).  AuthError: CA passphrase (exit 4).
    """
    store.require_manager(operator)
    account = store.get_account(account_id, ledger=False)
    family, size = ("ec", int(key_type[-3:])) if key_type.startswith("ec") else ("rsa", int(key_type[3:]))
    subject = names.build_name(subject_pairs)
    for spec in specs:
        sans = names.general_names(sans_for(spec))
        facts = RequestFacts(subject=names.attributes(subject), sans=tuple(sans), key_type=family, key_size=size,
                             key_curve={256: "secp256r1", 384: "secp384r1"}.get(size) if family == "ec" else None)
        result = check_request(facts, account.policy(), spec.profile)
        if not result.ok:
            first = result.failed[0]
            raise PolicyError(f"{spec.profile}: {first.rule}: {first.message}",
                              hint="nothing was written to the card",
                              details={"findings": result.to_json()["findings"], "profile": spec.profile})
    total = validity.cost * len(specs)
    if total > account.balance:
        raise QuotaError(f"account {account_id} has {account.balance} certificate-years; "
                         f"{len(specs)} certificate(s) of {validity.cost} year(s) need {total}.",
                         hint=f"add more with: twcactl account credit {account_id} N")
    return LocalIssuer(store, account_id=account_id, validity=validity, operator=operator,
                       passphrase=_checked_passphrase(store, passphrase))


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

    def precheck(self) -> None:
        """Before any key is made: every certificate is this CA's, valid and inside its renewal window
        (or ``early``), the accounts can pay for all of them, and the CA passphrase is right.

        Raises:
            StateError / QuotaError (exit 5), AuthError (exit 4).
        """
        costs: dict[str, int] = {}
        for target in self.targets:
            found = self.store.find_certificate_by_der(target.certificate.public_bytes(serialization.Encoding.DER))
            if found is None:
                raise StateError(f"certificate {target.serial} on the card was not issued by this CA.",
                                 hint="renew it at its CA with: twcactl card renew --request-out FILE")
            record = check_renewable(self.store, found.serial, early=self.early)
            if record.account:
                costs[record.account] = costs.get(record.account, 0) + (self.validity or old_validity(record)).cost
            self.records.append(record)
        for account_id, cost in costs.items():
            balance = self.store.get_account(account_id, ledger=False).balance
            if cost > balance:
                raise QuotaError(f"account {account_id} has {balance} certificate-years; renewing needs {cost}.",
                                 hint=f"add more with: twcactl account credit {account_id} N")
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
        certs: list[x509.Certificate] = []
        for outcome in outcomes:
            cert = x509.load_der_x509_certificate(outcome.certificate.der)
            self.renewed.append((cert, outcome.certificate, outcome.renewed))
            certs.append(cert)
        return certs
