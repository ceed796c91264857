"""The PIN rules of the card manuals and every sentence twcactl says about a PIN.

Pure: no cryptography, no PKCS#11, no twcactl imports, so the adapter
(``backends.p11``), the card workflows (``twcactl.card``), the error tree
and the CLI all word the same token flags the same way (domain.md §8;
ux.md, "A wrong PIN").

Rules (domain.md §8): a user PIN has 6 to 16 characters; the PIN letter's
default ``12345678`` must be replaced at first use; three wrong PINs lock
the card, and only the SO PIN can set a new one.  Tokens report flags, not
counts (PKCS#11 v2.40 §3.2, ``CKF_USER_PIN_*``), so twcactl never says how
many tries are left, only what the flags say: COUNT_LOW means "a wrong PIN
since the last good login", not "few tries left" (an HSM sets it after any
wrong PIN; issue 27).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

#: domain.md §8: the length range of a user PIN, in characters (inclusive).
PIN_MIN = 6
PIN_MAX = 16
#: domain.md §8: the PIN printed in the PIN letter; never accepted as a new PIN.
DEFAULT_PIN = "12345678"

#: Whose PIN: the card holder's (``user``) or the security officer's (``so``).
PinRole = Literal["user", "so"]


class PinCondition(StrEnum):
    """The token's PIN state in one word, from its flags, worst first (the risk to the next try first).

    ``tries_low`` is CKF_USER_PIN_COUNT_LOW (at least one wrong PIN since the
    last good one), ``final_try`` CKF_USER_PIN_FINAL_TRY, ``locked``
    CKF_USER_PIN_LOCKED, ``must_change`` CKF_USER_PIN_TO_BE_CHANGED,
    ``not_set`` a missing CKF_USER_PIN_INITIALIZED.
    """

    LOCKED = "locked"
    FINAL_TRY = "final_try"
    TRIES_LOW = "tries_low"
    NOT_SET = "not_set"
    MUST_CHANGE = "must_change"
    OK = "ok"


class PinFailure(StrEnum):
    """Why the token refused a PIN: CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_PIN_LEN_RANGE."""

    INCORRECT = "incorrect"
    LOCKED = "locked"
    LENGTH_INVALID = "length_invalid"


@dataclass(frozen=True)
class PinState:
    """The user-PIN flags of CK_TOKEN_INFO (PKCS#11 v2.40 §3.2, ``CKF_USER_PIN_*``).

    ``count_low`` means at least one wrong PIN since the last good login,
    ``final_try`` that the next wrong PIN locks the PIN, ``locked`` that it
    is locked, ``to_be_changed`` that the token wants a new PIN (the
    ``12345678`` of the PIN letter, domain.md §8).  ``so_locked`` and
    ``so_to_be_changed`` are the same for the SO PIN.  For an SO PIN error
    the adapter fills the first four from the CKF_SO_PIN_* flags.
    """

    count_low: bool = False
    final_try: bool = False
    locked: bool = False
    to_be_changed: bool = False
    initialized: bool = True
    so_locked: bool = False
    so_to_be_changed: bool = False

    @property
    def condition(self) -> PinCondition:
        """The worst flag that is set, as one :class:`PinCondition` (``ok`` when none is)."""
        if self.locked:
            return PinCondition.LOCKED
        if self.final_try:
            return PinCondition.FINAL_TRY
        if self.count_low:
            return PinCondition.TRIES_LOW
        if not self.initialized:
            return PinCondition.NOT_SET
        if self.to_be_changed:
            return PinCondition.MUST_CHANGE
        return PinCondition.OK

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
            out.append("a wrong PIN was entered since the last good one")
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


# --------------------------------------------------------------------------
# New PINs (checked before the card is touched, so a typo never costs a try)


def new_pin_problem(new_pin: str, *, current: str | None = None) -> str | None:
    """Why ``new_pin`` breaks a rule of domain.md §8, or None when it keeps them all.

    Rules: :data:`PIN_MIN` to :data:`PIN_MAX` characters, not
    :data:`DEFAULT_PIN`, not equal to ``current``.  The sentence never
    contains the PIN.
    """
    if not PIN_MIN <= len(new_pin) <= PIN_MAX:
        return f"the new PIN has {len(new_pin)} characters; it must have {PIN_MIN} to {PIN_MAX}."
    if new_pin == DEFAULT_PIN:
        return "the new PIN is the PIN letter's default; choose another."
    if current is not None and new_pin == current:
        return "the new PIN is the same as the current PIN."
    return None


def new_pin_refused_message(failure: PinFailure, *, action: Literal["changed", "set"]) -> str:
    """The token refused a new PIN that passed :func:`new_pin_problem` (CKR_PIN_LEN_RANGE / CKR_PIN_INVALID)."""
    if failure is PinFailure.LENGTH_INVALID:
        return f"the card refuses a new PIN of this length; the PIN was not {action}."
    if action == "changed":
        return "the card refuses this new PIN (invalid characters or a value it forbids); the PIN was not changed."
    return "the card refuses this new PIN; the PIN was not set."


#: The hint when the token refuses a new PIN's length.
NEW_PIN_LENGTH_HINT = "choose a PIN of a length this card accepts"


# --------------------------------------------------------------------------
# Refused PINs


#: How a locked user PIN is undone (domain.md §8).
UNBLOCK_HINT = "an administrator with the SO PIN can set a new one: twcactl card unblock"
#: Before another try after a refusal the token reports as risky.
CHECK_LETTER_HINT = "check the PIN letter before trying again"
#: A locked SO PIN cannot be undone on the card.
SO_LOCKED_HINT = "the card cannot be unblocked any more; ask the card issuer for a new card"


def locked_message(role: PinRole = "user") -> tuple[str, str]:
    """``(message, hint)`` for a locked PIN: the user PIN points at ``card unblock``, the SO PIN at a new card."""
    if role == "so":
        return "the SO PIN is locked after too many wrong tries.", SO_LOCKED_HINT
    return "the PIN is locked after too many wrong tries.", UNBLOCK_HINT


def refused_message(state: PinState, *, what: str = "PIN") -> tuple[str, str | None]:
    """``(message, hint)`` for a PIN the token refused, worded from its flags *after* the refusal.

    ``what`` names the PIN in the sentence (``PIN``, ``current PIN``,
    ``SO PIN``).  A locked state words as :func:`locked_message`.
    """
    condition = state.condition
    if condition is PinCondition.LOCKED:
        return locked_message("so" if what == "SO PIN" else "user")
    if condition is PinCondition.FINAL_TRY:
        return f"wrong {what}; the card says the next wrong {what} locks it (final try).", CHECK_LETTER_HINT
    if condition is PinCondition.TRIES_LOW:
        return (f"wrong {what}; the card reports a wrong {what} since the last good one (it does not say how many "
                "tries are left)."), CHECK_LETTER_HINT
    return f"wrong {what}.", None


def pin_warnings(state: PinState) -> list[str]:
    """Warnings a holder should see about the PIN flags, one sentence each (``card status``, ``verify-pin``)."""
    out: list[str] = []
    if state.to_be_changed:
        out.append("the card says the PIN must be changed: twcactl card change-pin")
    if state.locked:
        out.append("the PIN is locked: an administrator with the SO PIN can set a new one (twcactl card unblock)")
    elif state.final_try:
        out.append("one more wrong PIN locks the card")
    elif state.count_low:
        out.append("a wrong PIN was entered since the last good one")
    return out


def must_change_message(for_what: str) -> tuple[str, str]:
    """``(message, hint)`` when the token wants its PIN changed before key work (domain.md §8: at first use)."""
    return f"the card says its PIN must be changed before {for_what}.", "twcactl card change-pin"
