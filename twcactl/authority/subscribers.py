"""Subscribers act on their own certificate with the password set at application (issue 27).

The manuals' subscribers suspend and resume their certificates on the IPO portal with a password chosen
when they applied (manual 004 §10), change it, and have it reset by the RA.  Here:

* :func:`set_passwords` keeps a slow hash of it (scrypt, RFC 7914, through :func:`hashlib.scrypt`; never
  the password) for each certificate issued with ``--subscriber-password``;
* :func:`act` checks it and suspends, resumes or revokes (keyCompromise, superseded,
  cessationOfOperation) that certificate, or hands out its bundle (``cert.zip``); :func:`change_password`
  changes it.  :data:`~twcactl.rules.operator_auth.SUBSCRIBER_MAX_TRIES` wrong passwords in a row lock it
  for :data:`~twcactl.rules.operator_auth.SUBSCRIBER_LOCK_MINUTES` minutes (logged ``subscriber.locked``);
* :func:`reset` (a manager or RA operator) unlocks it, and sets a new password when given one.

The subscriber's log entries name ``subscriber:SERIAL``; the log lets that name act on that certificate
only (:func:`twcactl.rules.operator_auth.subscriber_may`).  The lifecycle rules are the usual ones: a
public-trust CA never suspends a TLS certificate (BR §4.9.13), a revoked certificate stays revoked.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from twcactl.authority.lifecycle import (
    PassphraseProvider,
    ca_chain_for,
    hold_certificate,
    release_certificate,
    revoke_certificate,
)
from twcactl.errors import AuthError, NotFoundError, PolicyError, UsageError
from twcactl.pkix.chain import bundle_files, zip_bytes
from twcactl.rules.operator_auth import (
    SUBSCRIBER_LOCK_MINUTES,
    SUBSCRIBER_MAX_TRIES,
    SUBSCRIBER_PASSWORD_MIN,
    SUBSCRIBER_REVOKE_REASONS,
    subscriber_name,
)
from twcactl.rules.times import parse_rfc3339, rfc3339, utcnow
from twcactl.store import Store
from twcactl.store.subscribers import SubscriberRepository

#: scrypt's cost (RFC 7914 §2: N = 2^15, r = 8, p = 1 is about 32 MiB and 0.1 s: a slow hash for a
#: password guessed offline from a stolen database).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024

#: What a subscriber may do with their password.
ACTIONS: tuple[str, ...] = ("suspend", "resume", "revoke", "download")


def hash_password(password: str) -> str:
    """A slow salted hash of ``password``: ``scrypt$N$r$p$SALT$HASH`` (base64; RFC 7914)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=_SCRYPT_MAXMEM, dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def password_matches(stored: str, password: str) -> bool:
    """True when ``password`` hashes to ``stored`` (compared in constant time); False for a malformed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_SCRYPT_MAXMEM, dklen=len(want))
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


def check_new_password(password: str) -> None:
    """Refuse a subscriber password shorter than :data:`SUBSCRIBER_PASSWORD_MIN` characters.

    Raises:
        PolicyError: too short (exit 1).
    """
    if len(password) < SUBSCRIBER_PASSWORD_MIN:
        raise PolicyError(f"a subscriber password has {SUBSCRIBER_PASSWORD_MIN} or more characters.")


def set_passwords(store: Store, serials: Sequence[str], password: str, *, operator: str) -> None:
    """Keep the hash of the subscriber ``password`` for each of ``serials`` (at issue or renewal), logged
    ``subscriber.password`` per certificate (the hash is never logged).

    Raises:
        PolicyError: the password is too short (exit 1).  StateError: ``operator`` may not (exit 5).
    """
    check_new_password(password)
    store.operators.require_manager(operator)
    hashed = hash_password(password)  # one hash for the batch: the same password, the same salt
    repo = SubscriberRepository(store.engine)
    with store.transaction():
        for serial in serials:
            store.certificates.get(serial)
            repo.set(serial, hashed, rfc3339(utcnow()))
            store.log.append(operator=operator, action="subscriber.password", serial=serial,
                             details={"set_by": "operator"})


@dataclass(frozen=True)
class SubscriberOutcome:
    """What a subscriber's request did: the certificate's serial and state afterwards, and the bundle
    (``cert.zip`` bytes) for ``download``."""

    serial: str
    state: str
    bundle: bytes | None = None

    def to_json(self) -> dict[str, object]:
        """``{"serial", "state"}``."""
        return {"serial": self.serial, "state": self.state}


def authenticate(store: Store, serial: str, password: str, *, now: dt.datetime | None = None) -> None:
    """Check the subscriber password of ``serial``; count a wrong one and lock after too many.

    Raises:
        NotFoundError: no such certificate, or no password was set for it (exit 5).
        AuthError: the password is wrong, or it is locked (exit 4); the failure is recorded first.
    """
    now = now or utcnow()
    repo = SubscriberRepository(store.engine)
    secret = repo.get(serial)
    if secret is None:
        raise NotFoundError(f"certificate {serial} has no subscriber password.")
    if secret.locked_until is not None and parse_rfc3339(secret.locked_until) > now:
        raise AuthError(f"the subscriber password of {serial} is locked until {secret.locked_until} after "
                        f"{SUBSCRIBER_MAX_TRIES} wrong tries.", hint="wait, or ask the RA to reset it")
    if password_matches(secret.hash, password):
        if secret.failures:
            with store.transaction():
                repo.unlock(serial)
        return
    failures = secret.failures + 1
    with store.transaction():
        if failures >= SUBSCRIBER_MAX_TRIES:
            until = rfc3339(now + dt.timedelta(minutes=SUBSCRIBER_LOCK_MINUTES))
            repo.failed(serial, 0, until)
            store.log.append(operator=subscriber_name(serial), action="subscriber.locked", serial=serial,
                             details={"tries": failures, "until": until})
        else:
            repo.failed(serial, failures, None)
    raise AuthError(f"wrong subscriber password for {serial}.")


def act(store: Store, serial: str, password: str, action: str, *, reason: str | None,
        passphrase: PassphraseProvider) -> SubscriberOutcome:
    """Do ``action`` (``suspend``, ``resume``, ``revoke``, ``download``) on ``serial`` as its subscriber.

    Raises:
        UsageError: an unknown action, or a revocation reason a subscriber may not give (exit 2).
        AuthError: wrong or locked password (exit 4).  StateError: the lifecycle refuses (exit 5), e.g. a
            public-trust TLS certificate cannot be suspended (BR §4.9.13).
    """
    if action not in ACTIONS:
        raise UsageError(f"unknown subscriber action {action!r}; choose one of {', '.join(ACTIONS)}.")
    if action == "revoke" and reason not in SUBSCRIBER_REVOKE_REASONS:
        raise UsageError(f"a subscriber revokes for {', '.join(SUBSCRIBER_REVOKE_REASONS)}, not {reason!r}.")
    authenticate(store, serial, password)
    name = subscriber_name(serial)
    if action == "download":
        record = store.certificates.get(serial)
        leaf = x509.load_der_x509_certificate(record.der)
        return SubscriberOutcome(serial, record.state, zip_bytes(bundle_files(leaf, ca_chain_for(store, record))))
    if action == "suspend":
        outcome = hold_certificate(store, serial, operator=name, passphrase=passphrase)
    elif action == "resume":
        outcome = release_certificate(store, serial, operator=name, passphrase=passphrase)
    else:
        assert reason is not None
        outcome = revoke_certificate(store, serial, reason=reason, operator=name, passphrase=passphrase)
    return SubscriberOutcome(serial, outcome.certificate.state)


def change_password(store: Store, serial: str, password: str, new_password: str) -> None:
    """The subscriber changes their password (logged ``subscriber.password``).

    Raises:
        AuthError: wrong or locked password (exit 4).  PolicyError: the new one is too short (exit 1).
    """
    check_new_password(new_password)
    authenticate(store, serial, password)
    repo = SubscriberRepository(store.engine)
    with store.transaction():
        repo.set(serial, hash_password(new_password), rfc3339(utcnow()))
        store.log.append(operator=subscriber_name(serial), action="subscriber.password", serial=serial,
                         details={"set_by": "subscriber"})


def reset(store: Store, serial: str, *, operator: str, new_password: str | None = None) -> None:
    """Unlock ``serial``'s subscriber password, and replace it when ``new_password`` is given (the RA's
    reset, manual 004 §10); logged ``subscriber.reset``.

    Raises:
        StateError: ``operator`` may not (exit 5).  NotFoundError: no password was set (exit 5).
        PolicyError: the new password is too short (exit 1).
    """
    store.operators.require_manager(operator)
    if new_password is not None:
        check_new_password(new_password)
    repo = SubscriberRepository(store.engine)
    if repo.get(serial) is None:
        raise NotFoundError(f"certificate {serial} has no subscriber password.")
    with store.transaction():
        if new_password is not None:
            repo.set(serial, hash_password(new_password), rfc3339(utcnow()))
        else:
            repo.unlock(serial)
        store.log.append(operator=operator, action="subscriber.reset", serial=serial,
                         details={"new_password": new_password is not None})


__all__ = ["ACTIONS", "SubscriberOutcome", "act", "authenticate", "change_password", "hash_password",
           "password_matches", "reset", "set_passwords"]
