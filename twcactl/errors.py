"""The one error tree of twcactl.

Every error a user can cause is a :class:`TwcaError` subclass carrying the
exit code of ``cli-contract.md`` ("Exit status"), a one-sentence message and
an optional hint.  Library errors are wrapped where they enter, by catching
the library's own exception types (``raise InputError(...) from exc``;
``twcactl.pkix.parse_errors`` names them), never ``Exception``; the CLI maps
the tree to exit codes in exactly one place (``twcactl.cli.main``).
Anything that is not a ``TwcaError`` is a bug and exits 70.

Errors carry data, not only prose: a :class:`PolicyError` its typed
``findings``, a :class:`PinError` the token's PIN state.  The JSON error
document shows them (:meth:`TwcaError.error_fields`,
:meth:`TwcaError.document_fields`); scripts read those, not the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: the foundation imports nothing of twcactl at run time
    from twcactl.models import Finding
    from twcactl.rules.pin import PinFailure, PinRole, PinState


class TwcaError(Exception):
    """Base of every expected failure.

    Attributes:
        exit_code: the process exit status from the contract (int).
        kind: the ``error.kind`` word of the JSON error document.
        message: one sentence, no trailing newline, never a secret.
        hint: an optional next step for the user.
        details: optional extra JSON-able data (e.g. policy ``findings``).
    """

    exit_code: int = 70
    kind: str = "internal"

    def __init__(self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details: dict[str, Any] = details or {}

    def error_fields(self) -> dict[str, Any]:
        """Extra JSON-able keys inside the document's ``"error"`` object (none by default)."""
        return {}

    def document_fields(self) -> dict[str, Any]:
        """Extra JSON-able keys beside ``"error"`` at the top of the document: ``details``."""
        return dict(self.details)


class PolicyError(TwcaError):
    """Understood and refused: a policy rule or a verification failed (exit 1).

    Attributes:
        findings: every rule applied to the refused request, in the checker's
            order (:class:`twcactl.models.Finding`); empty when the refusal is
            not a rule check.  The JSON error document lists them as
            ``"findings": [{"rule", "ok", "message"}]`` (cli-contract.md, "An error").
    """

    exit_code = 1
    kind = "policy"

    def __init__(self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None,
                 findings: Sequence[Finding] = ()) -> None:
        super().__init__(message, hint=hint, details=details)
        self.findings: tuple[Finding, ...] = tuple(findings)

    def document_fields(self) -> dict[str, Any]:
        """``findings`` (when any) first, then ``details``, as the document always ordered them."""
        fields: dict[str, Any] = {"findings": [f.to_json() for f in self.findings]} if self.findings else {}
        fields.update(self.details)
        return fields


class UsageError(TwcaError):
    """The command line itself is wrong (exit 2)."""

    exit_code = 2
    kind = "usage"


class InputError(TwcaError):
    """A missing, unreadable, malformed or wrong-type input file (exit 3)."""

    exit_code = 3
    kind = "input"


class AuthError(TwcaError):
    """A wrong or missing passphrase, password or PIN; a locked PIN (exit 4)."""

    exit_code = 4
    kind = "auth"


class PinError(AuthError):
    """A PIN the token refused, or will not try because it is locked (exit 4).

    Raised by the PKCS#11 adapter (``twcactl.backends.wrong_pin_error`` /
    ``locked_pin_error``); the message comes from ``twcactl.rules.pin``.

    Attributes:
        failure: why (:class:`twcactl.rules.pin.PinFailure`): ``incorrect``,
            ``locked`` or ``length_invalid`` (CKR_PIN_LEN_RANGE at login).
        pin_state: the token's PIN flags read *after* the refusal
            (:class:`twcactl.rules.pin.PinState`; for ``role="so"`` the SO flags).
        role: ``user`` or ``so``.

    The JSON error document shows ``"pin": {"state", "failure", "role", "flags"}``
    inside ``"error"``; ``state`` is :attr:`PinState.condition` (``locked``,
    ``final_try``, ``tries_low``, ``not_set``, ``must_change``, ``ok``).
    """

    def __init__(self, message: str, *, failure: PinFailure, pin_state: PinState, role: PinRole = "user",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failure = failure
        self.pin_state = pin_state
        self.role: PinRole = role

    def error_fields(self) -> dict[str, Any]:
        """``{"pin": {"state", "failure", "role", "flags"}}``."""
        return {"pin": {"state": str(self.pin_state.condition), "failure": str(self.failure), "role": self.role,
                        "flags": self.pin_state.to_json()}}


class StateError(TwcaError):
    """State conflict: not found, already exists, quota short, role not allowed (exit 5)."""

    exit_code = 5
    kind = "state"


class NotFoundError(StateError):
    """A named record (account, certificate, CA home) does not exist (exit 5)."""


class QuotaError(StateError):
    """An account's certificate-year balance is too small (exit 5).

    Attributes:
        account / balance / need: the account ID, its balance and the certificate-years
            the refused charge needed; also in ``details["quota"]`` for the JSON error document.
            Raised through :func:`twcactl.rules.quota.require_balance`.
    """

    def __init__(self, message: str, *, account: str | None = None, balance: int | None = None,
                 need: int | None = None, hint: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, hint=hint, details=details)
        self.account = account
        self.balance = balance
        self.need = need
        if account is not None:
            self.details.setdefault("quota", {"account": account, "balance": balance, "need": need})


class DeviceError(TwcaError):
    """No PKCS#11 module, reader, card or token (exit 6)."""

    exit_code = 6
    kind = "device"


class BusyError(TwcaError):
    """The CA home stayed locked past ``--lock-timeout``; nothing changed (exit 75)."""

    exit_code = 75
    kind = "busy"


class InternalError(TwcaError):
    """A bug or an impossible state (exit 70)."""

    exit_code = 70
    kind = "internal"


def error_for_code(code: int, message: str) -> TwcaError:
    """The error of the contract's exit ``code`` carrying ``message``: how a client re-raises a server's error
    document (issue 27: the same exit codes through ``--server`` as locally).  An unknown code is internal."""
    for cls in (PolicyError, UsageError, InputError, AuthError, StateError, DeviceError, BusyError):
        if cls.exit_code == code:
            return cls(message)
    return InternalError(message)
