"""The one error tree of twcactl.

Every error a user can cause is a :class:`TwcaError` subclass carrying the
exit code of ``cli-contract.md`` ("Exit status"), a one-sentence message and
an optional hint.  Library errors are wrapped where they enter
(``raise InputError(...) from exc``); the CLI maps the tree to exit codes in
exactly one place (``twcactl.cli.main``).  Anything that is not a
``TwcaError`` is a bug and exits 70.
"""

from __future__ import annotations

from typing import Any


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


class PolicyError(TwcaError):
    """Understood and refused: a policy rule or a verification failed (exit 1)."""

    exit_code = 1
    kind = "policy"


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


class StateError(TwcaError):
    """State conflict: not found, already exists, quota short, role not allowed (exit 5)."""

    exit_code = 5
    kind = "state"


class NotFoundError(StateError):
    """A named record (account, certificate, CA home) does not exist (exit 5)."""


class QuotaError(StateError):
    """An account's certificate-year balance is too small (exit 5)."""


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
