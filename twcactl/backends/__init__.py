"""Device adapters and the plain values they return.

``backends.p11`` is the only module that imports ``pkcs11`` and
``backends.pcsc`` the only one that imports ``smartcard``; both import
their library lazily, so ``twcactl --help`` and the file-only commands work
on a machine with neither (architecture.md, "Layers").  This package's
``__init__`` holds only library-free values shared by the adapters and the
card workflows (``twcactl.card``), and the wording of PIN failures, so every
command says the same thing about the same token flags (ux.md, "A wrong PIN").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from twcactl.errors import AuthError


@dataclass(frozen=True)
class PinState:
    """The user-PIN flags of CK_TOKEN_INFO (PKCS#11 v2.40 §3.2, ``CKF_USER_PIN_*``).

    Tokens report flags, not counts (architecture.md, library facts):
    ``count_low`` means at least one wrong PIN since the last good login,
    ``final_try`` that the next wrong PIN locks the PIN, ``locked`` that it
    is locked, ``to_be_changed`` that the token wants a new PIN (the
    ``12345678`` of the PIN letter, domain.md §8).  ``so_locked`` and
    ``so_to_be_changed`` are the same for the SO PIN.
    """

    count_low: bool = False
    final_try: bool = False
    locked: bool = False
    to_be_changed: bool = False
    initialized: bool = True
    so_locked: bool = False
    so_to_be_changed: bool = False

    def words(self) -> list[str]:
        """The flags that are set, in plain words, worst first (empty when none is)."""
        out: list[str] = []
        if not self.initialized:
            out.append("no user PIN set")
        if self.locked:
            out.append("locked after too many wrong tries")
        elif self.final_try:
            out.append("final try: one more wrong PIN locks it")
        elif self.count_low:
            out.append("a wrong PIN was entered: few tries left")
        if self.to_be_changed:
            out.append("must be changed")
        return out

    def to_json(self) -> dict[str, bool]:
        """``{"count_low", "final_try", "locked", "to_be_changed", "initialized", "so_locked", "so_to_be_changed"}``."""
        return {
            "count_low": self.count_low,
            "final_try": self.final_try,
            "locked": self.locked,
            "to_be_changed": self.to_be_changed,
            "initialized": self.initialized,
            "so_locked": self.so_locked,
            "so_to_be_changed": self.so_to_be_changed,
        }


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
                       not_after=self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ") if self.not_after else None)
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


UNBLOCK_HINT = "an administrator with the SO PIN can set a new one: twcactl card unblock"


def wrong_pin_error(state: PinState, *, what: str = "PIN") -> AuthError:
    """The error for a PIN the token refused, worded from its flags (ux.md, "A wrong PIN").

    ``state`` must be read from the token *after* the refusal (python-pkcs11's
    ``Token.flags`` is a snapshot).
    """
    if state.locked:
        return locked_pin_error(what=what)
    if state.final_try:
        return AuthError(f"wrong {what}; the card says the next wrong {what} locks it (final try).",
                         hint="check the PIN letter before trying again")
    if state.count_low:
        return AuthError(f"wrong {what}; the card says few tries are left before it locks.",
                         hint="check the PIN letter before trying again")
    return AuthError(f"wrong {what}.")


def locked_pin_error(*, what: str = "PIN") -> AuthError:
    """The error for a locked user PIN, pointing at ``card unblock`` (ux.md)."""
    if what == "SO PIN":
        return AuthError("the SO PIN is locked after too many wrong tries.",
                         hint="the card cannot be unblocked any more; ask the card issuer for a new card")
    return AuthError("the PIN is locked after too many wrong tries.", hint=UNBLOCK_HINT)
