"""A re-key in the PKI sense for a PFX: a fresh key pair and a replacement certificate from the CA
home that issued the old one (``pfx rekey --new-key``; domain.md §4 and §7).

The PFX side (the new key, the replacement CSR, the new file) is :mod:`twcactl.pfx`; the CA side
(renewal under the ``cert renew`` rules, the quota, the optional revocation, the log) is
:mod:`twcactl.authority.lifecycle`.  This module joins them, so that neither the CLI nor a server
has to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.authority.lifecycle import (
    CsrInput,
    PassphraseProvider,
    ca_chain_for,
    renew_certificate,
    revoke_certificate,
)
from twcactl.errors import NotFoundError
from twcactl.pfx import (
    OpenedPfx,
    RepackedPfx,
    check_password,
    check_rekeyable,
    export_pfx,
    new_key_like,
    repacked,
    replacement_csr,
)
from twcactl.pkix.keys import PrivateKey
from twcactl.store import Store

__all__ = ["NewKeyOutcome", "reissue_with_new_key", "rekey_with_new_key"]


@dataclass(frozen=True)
class NewKeyOutcome:
    """What :func:`reissue_with_new_key` did.

    Attributes:
        key: the fresh private key.
        certificate: the replacement certificate.
        chain: its CA certificates, issuer first, root last.
        serial / renewed: the new and the old serial (hex).
        revoked: True when the old certificate was revoked as superseded.
        balance_before / balance_after: the account's certificate-years.
    """

    key: PrivateKey
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    serial: str
    renewed: str
    revoked: bool
    balance_before: int
    balance_after: int


def reissue_with_new_key(store: Store, cert: x509.Certificate, *, early: bool, operator: str,
                         passphrase: PassphraseProvider, revoke_old: bool) -> NewKeyOutcome:
    """A fresh key pair of the same type and size, and a replacement certificate for the same subject
    issued under the ``cert renew`` rules (domain.md §4), by the CA home that issued ``cert``; with
    ``revoke_old``, the old certificate is then revoked as ``superseded`` (RFC 5280 §5.3.1).

    Args:
        store: the open CA home.
        cert: the certificate being replaced (the PFX key's certificate).
        early: renew outside the renewal window.
        operator: who does it (a manager).
        passphrase: the CA passphrase provider (called at most once per signature; the CLI's reads once).
        revoke_old: revoke the old certificate afterwards.

    Raises:
        NotFoundError: the CA home did not issue ``cert`` (exit 5).
        everything ``lifecycle.renew_certificate`` and ``revoke_certificate`` raise.
    """
    record = store.certificates.find_by_der(cert.public_bytes(serialization.Encoding.DER))
    if record is None:
        raise NotFoundError("the PFX's certificate was not issued by this CA home.",
                            hint="run it with --home pointing at the CA that issued the certificate")
    key = new_key_like(cert.public_key())
    csr = CsrInput(name="replacement request", data=replacement_csr(key, cert))
    outcome = renew_certificate(store, record.serial, csr, validity=None, early=early, operator=operator,
                                passphrase=passphrase, note="pfx rekey --new-key")
    new_record = outcome.certificate
    new_cert = x509.load_der_x509_certificate(new_record.der)
    if revoke_old:
        revoke_certificate(store, record.serial, reason="superseded", operator=operator, passphrase=passphrase)
    chain = list(reversed(ca_chain_for(store, new_record)))
    return NewKeyOutcome(key, new_cert, chain, new_record.serial, record.serial, revoke_old,
                         outcome.balance_before, outcome.balance_after)


def rekey_with_new_key(store: Store, opened: OpenedPfx, *, old_password: str | None, new_password: Callable[[], str],
                       legacy: bool, early: bool, revoke_old: bool, operator: str, passphrase: PassphraseProvider,
                       name: str = "the PFX") -> tuple[RepackedPfx, NewKeyOutcome]:
    """A new PFX with a fresh key and a replacement certificate (:func:`reissue_with_new_key`) under a
    new password, keeping the old key certificate's friendly name.

    Args:
        opened: the old PFX, opened with ``old_password``.
        new_password: asked only after the file passed its checks; at least 6 characters.
        legacy: 3DES and a SHA-1 MAC instead of AES-256 (old Windows and Java).
        early / revoke_old / operator / passphrase: as :func:`reissue_with_new_key`.
        name: the file's name for messages.

    Returns:
        The new file (bytes and protection) and what the CA did.

    Raises:
        PolicyError: several keys, or no key with its certificate (exit 1).
        UsageError: the new password is too short (exit 2).
        everything :func:`reissue_with_new_key` raises.
    """
    check_rekeyable(opened, new_key=True, name=name)
    key_entry = opened.key_certificate
    assert key_entry is not None  # check_rekeyable refused a file without one
    password = new_password()
    check_password(password)
    outcome = reissue_with_new_key(store, key_entry.certificate, early=early, operator=operator,
                                   passphrase=passphrase, revoke_old=revoke_old)
    friendly = key_entry.friendly_name or opened.key_friendly_name
    data = export_pfx(outcome.key, outcome.certificate, outcome.chain, password=password, friendly_name=friendly,
                      legacy=legacy)
    result = repacked(opened, data, password, old_password=old_password, certificates=1 + len(outcome.chain),
                      name=name)
    return result, outcome
