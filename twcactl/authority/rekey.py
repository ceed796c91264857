"""A re-key in the PKI sense for a PFX: a fresh key pair and a replacement certificate from the CA
home that issued the old one (``pfx rekey --new-key``; domain.md §4 and §7).

The PFX side (the new key, the replacement CSR, the new file) is :mod:`twcactl.pfx`; the CA side
(renewal under the ``cert renew`` rules, the quota, the optional revocation, the log) is
:mod:`twcactl.authority.lifecycle`.  This module joins them, so that neither the CLI nor a server
has to.

The new key, the issue, the optional revocation and the PFX write succeed or fail together (issue 12):
everything is built and the new PFX written to a temporary file next to the target first; then the
renewal and the revocation commit in one transaction (:func:`twcactl.authority.lifecycle.renew_and_revoke`);
then the temporary file is renamed into place.  A failure before the commit changes no record and leaves
no file; a failure of the rename after it is reported as a warning naming the new serial and the
temporary file, which holds the only copy of the new key.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.authority.lifecycle import (
    CsrInput,
    PassphraseProvider,
    issuing_chain,
    renew_and_revoke,
)
from twcactl.errors import InputError, NotFoundError
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
from twcactl.rules.quota import Refund
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
        refund: what the old certificate's revocation refunded (nothing: its time was carried forward).
        file: where the new PFX is (the target, or the temporary file when it could not be moved there).
        warnings: what went wrong after the commit (the records stand; nothing to run again).
    """

    key: PrivateKey
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    serial: str
    renewed: str
    revoked: bool
    balance_before: int
    balance_after: int
    refund: Refund | None = None
    file: str | None = None
    warnings: list[str] = field(default_factory=list)


def reissue_with_new_key(store: Store, cert: x509.Certificate, *, early: bool, operator: str,
                         passphrase: PassphraseProvider, revoke_old: bool,
                         prepare: Callable[[PrivateKey, x509.Certificate, list[x509.Certificate]], None] | None = None,
                         ) -> NewKeyOutcome:
    """A fresh key pair of the same type and size, and a replacement certificate for the same subject
    issued under the ``cert renew`` rules (domain.md §4), by the CA home that issued ``cert``; with
    ``revoke_old``, the old certificate is revoked as ``superseded`` (RFC 5280 §5.3.1) in the same
    transaction, refunding nothing (its time is carried forward; issue 12).

    Args:
        store: the open CA home.
        cert: the certificate being replaced (the PFX key's certificate).
        early: renew outside the renewal window.
        operator: who does it (a manager).
        passphrase: the CA passphrase provider (called at most once per signature; the CLI's reads once).
        revoke_old: revoke the old certificate too.
        prepare: called with the new key, certificate and chain (issuer first) after every check and
            before the commit; when it raises, nothing is recorded or charged.

    Raises:
        NotFoundError: the CA home did not issue ``cert`` (exit 5).
        everything ``lifecycle.renew_and_revoke`` raises.
    """
    record = store.certificates.find_by_der(cert.public_bytes(serialization.Encoding.DER))
    if record is None:
        raise NotFoundError("the PFX's certificate was not issued by this CA home.",
                            hint="run it with --home pointing at the CA that issued the certificate")
    key = new_key_like(cert.public_key())
    csr = CsrInput(name="replacement request", data=replacement_csr(key, cert))
    chain = list(reversed(issuing_chain(store)))  # the renewal is signed by the active issuing CA (issue 25)

    def prepare_certificate(new_cert: x509.Certificate) -> None:
        if prepare is not None:
            prepare(key, new_cert, chain)

    outcome = renew_and_revoke(store, record.serial, csr, early=early, operator=operator, passphrase=passphrase,
                               revoke_reason="superseded" if revoke_old else None, note="pfx rekey --new-key",
                               prepare=prepare_certificate)
    renewal = outcome.renewal
    new_cert = x509.load_der_x509_certificate(renewal.certificate.der)
    return NewKeyOutcome(key, new_cert, chain, renewal.certificate.serial, record.serial, revoke_old,
                         renewal.balance_before, renewal.balance_after,
                         refund=outcome.revoked.refund if outcome.revoked else None)


def rekey_with_new_key(store: Store, opened: OpenedPfx, *, old_password: str | None, new_password: Callable[[], str],
                       legacy: bool, early: bool, revoke_old: bool, operator: str, passphrase: PassphraseProvider,
                       name: str = "the PFX", target: Path | None = None,
                       force: bool = False) -> tuple[RepackedPfx, NewKeyOutcome]:
    """A new PFX with a fresh key and a replacement certificate (:func:`reissue_with_new_key`) under a
    new password, keeping the old key certificate's friendly name.

    With ``target``, the file is part of the unit of work (issue 12): the new PFX is written to a
    temporary file next to ``target`` before the commit (a failure there changes nothing), and renamed
    into place after it.  When the rename fails, the records stand: the outcome's ``warnings`` name the
    new serial and the temporary file (``file``), and nothing is to be run again.

    Args:
        opened: the old PFX, opened with ``old_password``.
        new_password: asked only after the file passed its checks; at least 6 characters.
        legacy: 3DES and a SHA-1 MAC instead of AES-256 (old Windows and Java).
        early / revoke_old / operator / passphrase: as :func:`reissue_with_new_key`.
        name: the file's name for messages.
        target: where to write the new PFX (mode 0600); None: only return its bytes.
        force: replace an existing ``target``.

    Returns:
        The new file (bytes and protection) and what the CA did.

    Raises:
        PolicyError: several keys, or no key with its certificate (exit 1).
        UsageError: the new password is too short (exit 2).
        InputError: the temporary file cannot be written next to ``target`` (exit 3; nothing changed).
        everything :func:`reissue_with_new_key` raises.
    """
    check_rekeyable(opened, new_key=True, name=name)
    key_entry = opened.key_certificate
    assert key_entry is not None  # check_rekeyable refused a file without one
    password = new_password()
    check_password(password)
    friendly = key_entry.friendly_name or opened.key_friendly_name
    made: dict[str, RepackedPfx] = {}
    staged: list[Path] = []

    def prepare(key: PrivateKey, cert: x509.Certificate, chain: list[x509.Certificate]) -> None:
        data = export_pfx(key, cert, chain, password=password, friendly_name=friendly, legacy=legacy)
        made["pfx"] = repacked(opened, data, password, old_password=old_password, certificates=1 + len(chain),
                               name=name)
        if target is not None:
            staged.append(_stage(target, data))

    try:
        outcome = reissue_with_new_key(store, key_entry.certificate, early=early, operator=operator,
                                       passphrase=passphrase, revoke_old=revoke_old, prepare=prepare)
    except BaseException:
        for path in staged:  # not committed: the new key goes with it
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    if target is not None:
        outcome = _place_after_commit(outcome, staged[0], target, force=force)
    return made["pfx"], outcome


def _stage(target: Path, data: bytes) -> Path:
    """Write ``data`` (mode 0600, fsynced) to a new temporary file in ``target``'s directory; returns its path.

    Raises:
        InputError: the directory does not exist or cannot be written (exit 3).
    """
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write the new PFX in {directory}: {exc.strerror}; nothing was issued.") from exc
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise InputError(f"cannot write the new PFX in {directory}: {exc.strerror}; nothing was issued.") from exc
    return Path(tmp_name)


def _place_after_commit(outcome: NewKeyOutcome, staged: Path, target: Path, *, force: bool) -> NewKeyOutcome:
    """Move the staged PFX to ``target`` (never over an existing file unless ``force``); a failure is a warning.

    After the commit nothing may be undone or retried: the new certificate is recorded and charged, and
    the staged file holds the only copy of its key, so it is left where it is and named.
    """
    try:
        if force:
            os.replace(staged, target)
        else:
            os.link(staged, target)
            os.unlink(staged)
        with contextlib.suppress(OSError):
            dir_fd = os.open(target.parent if str(target.parent) else ".", os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        revoked = f"; {outcome.renewed} was revoked as superseded" if outcome.revoked else ""
        warning = (f"certificate {outcome.serial} was issued and charged{revoked}, but the new PFX could not be "
                   f"moved to {target} ({exc.strerror or exc}); it is at {staged}: move it there yourself, "
                   "do not run the command again")
        return replace(outcome, file=str(staged), warnings=[*outcome.warnings, warning])
    return replace(outcome, file=str(target))
