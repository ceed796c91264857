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
    "operator.add", "operator.update", "operator.remove", "subscriber.reset", "subscriber.password",
    "ca.config", "acme.eab", "acme.deactivate",
})

#: What an RA operator may log: the certificate lifecycle and what it writes along (a notice, a CRL).
RA_ACTIONS: frozenset[str] = frozenset({
    "cert.issue", "cert.renew", "cert.revoke", "cert.hold", "cert.release", "card.register",
    "notice.sent", "crl.generate", "subscriber.reset", "subscriber.password",
})


#: Subscribers act on their own certificate with the password set at application (issue 27; manual 004
#: §10, the IPO portal): their log entries name ``subscriber:SERIAL``, a name no operator may take.
SUBSCRIBER_PREFIX = "subscriber:"
#: What a subscriber's password lets them log, for their own certificate only.
SUBSCRIBER_ACTIONS: frozenset[str] = frozenset({"cert.hold", "cert.release", "cert.revoke", "subscriber.password",
                                                "subscriber.locked", "subscriber.download"})
#: The RFC 5280 reasons a subscriber may give (BR §4.9.1.1 reasons a subscriber states; the others are the CA's).
SUBSCRIBER_REVOKE_REASONS: tuple[str, ...] = ("keyCompromise", "superseded", "cessationOfOperation")
#: Wrong passwords in a row that lock a subscriber out, and for how long (issue 27: 5 tries, 15 minutes).
SUBSCRIBER_MAX_TRIES = 5
SUBSCRIBER_LOCK_MINUTES = 15
#: The shortest subscriber password (the PFX rule of domain.md §7: 6 or more characters).
SUBSCRIBER_PASSWORD_MIN = 8


def subscriber_name(serial: str) -> str:
    """The log's operator name for the holder of certificate ``serial``."""
    return SUBSCRIBER_PREFIX + serial


def subscriber_may(name: str, action: str, serial: str | None) -> bool:
    """True when subscriber log name ``name`` may write ``action`` about ``serial``: their own certificate,
    one of :data:`SUBSCRIBER_ACTIONS`."""
    return action in SUBSCRIBER_ACTIONS and serial is not None and name == subscriber_name(serial)


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
