"""Device adapters and the plain values they return.

``backends.p11`` is the only module that imports ``pkcs11`` and
``backends.pcsc`` the only one that imports ``smartcard``; both import
their library lazily, so ``twcactl --help`` and the file-only commands work
on a machine with neither (architecture.md, "Layers").  This package's
``__init__`` holds only library-free values shared by the adapters and the
card workflows (``twcactl.card``), and the constructors of PIN errors
(:class:`twcactl.errors.PinError`), whose wording lives in ``twcactl.rules.pin``
so every command says the same thing about the same token flags (ux.md, "A wrong PIN").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from twcactl.errors import PinError
from twcactl.rules.pin import UNBLOCK_HINT as UNBLOCK_HINT
from twcactl.rules.pin import PinFailure, PinRole, locked_message, refused_message
from twcactl.rules.pin import PinState as PinState
from twcactl.rules.times import rfc3339


@dataclass(frozen=True)
class TokenInfo:
    """One token as CK_SLOT_INFO / CK_TOKEN_INFO describe it (PKCS#11 v2.40 §3.2).

    ``mechanisms`` are the names of the signature and key-generation
    mechanisms twcactl cares about that the token lists (``RSA_PKCS``,
    ``SHA256_RSA_PKCS``, ``ECDSA``, ``EC_KEY_PAIR_GEN``, ``RSA_PKCS_KEY_PAIR_GEN``).
    """

    module: str
    slot_id: int
    slot_description: str
    label: str
    manufacturer: str
    model: str
    serial: str
    pin: PinState
    mechanisms: frozenset[str] = frozenset()

    @property
    def has_ec(self) -> bool:
        """True when the token can generate EC keys and sign with raw ECDSA."""
        return {"EC_KEY_PAIR_GEN", "ECDSA"} <= self.mechanisms

    def to_json(self) -> dict[str, object]:
        """The ``token`` part of ``card status --json``."""
        return {
            "module": self.module,
            "slot": self.slot_id,
            "slot_description": self.slot_description,
            "label": self.label,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "serial": self.serial,
            "pin": self.pin.to_json(),
            "pin_words": self.pin.words(),
            "ec": self.has_ec,
        }


@dataclass(frozen=True)
class TokenObject:
    """A key or certificate object on a token.

    Attributes:
        kind: ``private-key``, ``public-key`` or ``certificate``.
        label: CKA_LABEL ("" when absent).
        id: CKA_ID as lowercase hex ("" when absent).
        key_type: ``rsa`` / ``ec`` for keys and for a certificate's key, else None.
        key_bits: RSA modulus bits or EC curve bits, 0 when unknown.
        subject: a certificate's subject (RFC 4514), else None.
        serial: a certificate's serial (lowercase hex, cli-contract.md), else None.
        not_after: a certificate's notAfter (UTC), else None.
        sensitive / never_extractable: CKA_SENSITIVE / CKA_NEVER_EXTRACTABLE of a private key, else None.
        der: a certificate's DER, else b"".
        public_der: the SubjectPublicKeyInfo DER of a key or certificate, b"" when unreadable.
    """

    kind: str
    label: str
    id: str
    key_type: str | None = None
    key_bits: int = 0
    subject: str | None = None
    serial: str | None = None
    not_after: dt.datetime | None = None
    sensitive: bool | None = None
    never_extractable: bool | None = None
    der: bytes = field(default=b"", repr=False)
    public_der: bytes = field(default=b"", repr=False)

    def to_json(self) -> dict[str, object]:
        """One entry of ``card status --json``'s ``objects``."""
        doc: dict[str, object] = {"kind": self.kind, "label": self.label, "id": self.id, "key_type": self.key_type,
                                  "key_bits": self.key_bits}
        if self.kind == "certificate":
            doc.update(subject=self.subject, serial=self.serial,
                       not_after=rfc3339(self.not_after) if self.not_after else None)
        if self.kind == "private-key":
            doc.update(sensitive=self.sensitive, never_extractable=self.never_extractable)
        return doc


@dataclass(frozen=True)
class ReaderInfo:
    """A PC/SC reader: its name, whether a card is present, the card's ATR (hex, upper case) or None."""

    name: str
    card_present: bool
    atr: str | None

    def to_json(self) -> dict[str, object]:
        """One entry of ``card readers --json``."""
        return {"name": self.name, "card_present": self.card_present, "atr": self.atr}


def wrong_pin_error(state: PinState, *, what: str = "PIN",
                    failure: PinFailure = PinFailure.INCORRECT) -> PinError:
    """The error for a PIN the token refused, worded from its flags (``rules.pin.refused_message``).

    ``state`` must be read from the token *after* the refusal (python-pkcs11's
    ``Token.flags`` is a snapshot).  ``what`` is ``PIN``, ``current PIN`` or
    ``SO PIN`` (the SO PIN's flags in ``state``); a locked state gives
    ``failure=locked``.

    Returns:
        A :class:`PinError` (exit 4) carrying ``state``.
    """
    role: PinRole = "so" if what == "SO PIN" else "user"
    message, hint = refused_message(state, what=what)
    if state.locked:
        failure = PinFailure.LOCKED
    return PinError(message, hint=hint, failure=failure, pin_state=state, role=role)


def locked_pin_error(state: PinState | None = None, *, what: str = "PIN") -> PinError:
    """The error for a locked PIN that is not tried at all: the user PIN points at ``card unblock``.

    ``state`` is the token's flags when known (else only ``locked`` is set).

    Returns:
        A :class:`PinError` (exit 4, ``failure=locked``).
    """
    role: PinRole = "so" if what == "SO PIN" else "user"
    message, hint = locked_message(role)
    return PinError(message, hint=hint, failure=PinFailure.LOCKED, role=role,
                    pin_state=state if state is not None else PinState(locked=True))
