"""Who may do what, and which changes an operator signs (issue 27: people prove who they are).

Roles (domain.md §3 with issue 27): a ``manager`` queries and changes everything; an ``ra`` operator (the
RA desk of the manuals' Management SSL portal) issues, renews, revokes, suspends and resumes certificates
and registers cards, but changes no account, operator or setting; an ``auditor`` only queries.

With ``operator_auth required`` (the default in public-trust mode, :func:`auth_required`) every change in
:data:`SIGNED_ACTIONS` is authorized by the operator's signature over the canonical statement of its log
entries (:func:`statement`): what the activity log will say, byte for byte, so ``log verify`` checks it
offline against the operator's certificate (the pattern of EJBCA's RA and of step-ca's X5C provisioner:
a certificate-bound key proves who asks).

Pure: the standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

#: ``operator_auth`` values: ``required`` (every change signed), ``off`` (today's single-user behaviour) and
#: ``""`` (the default: required in public-trust mode, off elsewhere).
OPERATOR_AUTH_VALUES: tuple[str, ...] = ("required", "off")

#: Log actions that are changes made by an operator (issue 27 "Build": issue, renew, revoke, hold, release,
#: account and operator changes, config, ACME EAB hand-out); each is signed when auth is required.  Entries a
#: workflow writes on its own (``notice.sent``, ``crl.generate``, ``ocsp.respond``) and those of ACME clients
#: (authorized by their JWS and the signed EAB hand-out) are not.
SIGNED_ACTIONS: frozenset[str] = frozenset({
    "cert.issue", "cert.renew", "cert.revoke", "cert.hold", "cert.release", "card.register",
    "account.add", "account.set", "account.credit",
    "operator.add", "operator.update", "operator.remove", "subscriber.reset",
    "ca.config", "acme.eab", "acme.deactivate",
})

#: What an RA operator may log: the certificate lifecycle and what it writes along (a notice, a CRL).
RA_ACTIONS: frozenset[str] = frozenset({
    "cert.issue", "cert.renew", "cert.revoke", "cert.hold", "cert.release", "card.register",
    "notice.sent", "crl.generate", "subscriber.reset",
})


def auth_required(operator_auth: str, public_trust: bool) -> bool:
    """True when changes must be signed: ``operator_auth`` ``required``, or ``""`` in public-trust mode."""
    return operator_auth == "required" or (operator_auth == "" and public_trust)


def role_may(role: str, action: str) -> bool:
    """True when an operator of ``role`` may write a log entry of ``action``.

    A manager may write any; an RA operator only :data:`RA_ACTIONS`; an auditor none of the
    :data:`SIGNED_ACTIONS` (and nothing else that an operator writes).
    """
    if role == "manager":
        return True
    if role == "ra":
        return action in RA_ACTIONS
    return action not in SIGNED_ACTIONS and action not in RA_ACTIONS


def statement(items: Sequence[tuple[str, str, str | None, str | None, Mapping[str, Any] | None]]) -> bytes:
    """The canonical statement of log entries ``(operator, action, account, serial, details)``: what the
    operator signs and ``log verify`` re-builds from the stored entries.

    Canonical JSON (keys sorted, no spaces, ASCII; the details as the log stores them), prefixed with a
    domain separator so a signature over it can never be mistaken for one over a certificate or a JWS.
    """
    body = [{"operator": o, "action": a, "account": acc, "serial": s, "details": dict(d or {})}
            for o, a, acc, s, d in items]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return b"twcactl-signed-action-v1\n" + text.encode("ascii")
