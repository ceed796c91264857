"""The remote RA desk (issue 27): RA commands run on the CA's server, each request signed by the operator.

An RA desk needs neither the database password nor the CA keys: ``twcactl --server URL cert issue ...``
sends the command (its arguments, the files it reads) to ``serve``'s RA API as a JWS (RFC 7515, built and
checked with josepy / acme's JWS, the ACME shape of RFC 8555 §6.2: ``alg``, ``kid`` = the operator's name,
``nonce`` from ``/ra/new-nonce``, ``url``).  The server checks the signature against the certificate bound
to that operator (an unknown key is refused), runs the same command against its home as that operator,
and answers with the command's own JSON document, exit code and output files, so the desk sees exactly
what local use shows.

The command runs in a child process that re-checks the request (:func:`authorize`): the JWS verifies with
the operator's certificate, the certificate is issued by this CA, valid and not revoked, the command is the
signed one, and the nonce is consumed there, once (a replayed request is refused, exit 4).  Its log
entries carry the request's signature (``{"jws": ...}``), which ``log verify`` checks offline.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from twcactl.errors import AuthError, UsageError
from twcactl.rules.operator_auth import SIGNED_ACTIONS
from twcactl.store.interface import LogItem

#: The commands an RA desk runs through ``--server`` (issue 27 "Remote RA").
RA_COMMANDS: frozenset[tuple[str, ...]] = frozenset({
    ("csr", "check"), ("cert", "issue"), ("cert", "renew"), ("cert", "revoke"), ("cert", "hold"),
    ("cert", "release"), ("cert", "list"), ("cert", "show"), ("cert", "export"), ("account", "show"), ("log",),
    ("log", "verify"),
})
#: Options a remote request may not carry: they name the server's secrets, keys, files or programs.
FORBIDDEN_OPTIONS: frozenset[str] = frozenset({
    "--home", "--ca-passphrase", "--store-password", "--operator-key", "--exec", "--pfx-password", "--debug",
    "--server",
})
#: Options whose value is a file or directory the command writes (sent back to the desk).
OUTPUT_OPTIONS: frozenset[str] = frozenset({"--out", "--out-dir", "--csv"})
#: Options whose value is a file the command reads (sent with the request).
INPUT_OPTIONS: frozenset[str] = frozenset({"--csr", "--request"})
#: Placeholders that stand for uploaded files and for outputs in a request's argv.
IN_PREFIX, OUT_PREFIX = "@in:", "@out:"


def command_path(argv: Sequence[str]) -> tuple[str, ...]:
    """The command words at the start of ``argv`` (``("cert", "issue")``, ``("log",)``)."""
    words: list[str] = []
    for token in argv[:2]:
        if token.startswith("-") or token.startswith("@"):
            break
        words.append(token)
    if len(words) == 2 and (words[0], words[1]) not in RA_COMMANDS and (words[0],) in RA_COMMANDS:
        words = words[:1]
    return tuple(words)


def check_command(argv: Sequence[str]) -> None:
    """Refuse a remote command that is not an RA command, names a forbidden option, or a path of the server.

    Raises:
        UsageError: exit 2.
    """
    path = command_path(argv)
    if path not in RA_COMMANDS:
        raise UsageError(f"'{' '.join(argv[:2])}' is not an RA command; through --server: "
                         + ", ".join(" ".join(c) for c in sorted(RA_COMMANDS)) + ".")
    for token in argv:
        if not isinstance(token, str):
            raise UsageError("the request's argv holds something that is not text.")
        name = token.split("=", 1)[0]
        if name in FORBIDDEN_OPTIONS:
            raise UsageError(f"{name} is not accepted through --server.")
        if not token.startswith(("@in:", "@out:")) and ("/" in token or token.startswith(".")):
            raise UsageError(f"{token!r} looks like a path of the server; files are sent with the request.")


@dataclass(frozen=True)
class RaRequest:
    """A verified remote request: who sent it, what to run, the files it brought."""

    operator: str
    argv: list[str]
    files: dict[str, bytes]
    outputs: list[str]
    nonce: str
    jws: str


def parse_payload(payload: bytes) -> tuple[list[str], dict[str, bytes], list[str]]:
    """``(argv, files, outputs)`` of a request payload ``{"argv": [...], "files": {"@in:N": b64}, "outputs":
    ["@out:N"]}``.

    Raises:
        UsageError: not that shape (exit 2).
    """
    try:
        doc = json.loads(payload)
        argv = [str(a) for a in doc["argv"]] if isinstance(doc["argv"], list) else None
        files = {str(k): base64.b64decode(v, validate=True) for k, v in dict(doc.get("files", {})).items()}
        outputs = [str(o) for o in doc.get("outputs", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError("the request payload is not an RA command.") from exc
    if argv is None or any(not k.startswith(IN_PREFIX) for k in files) or any(
            not o.startswith(OUT_PREFIX) for o in outputs):
        raise UsageError("the request payload is not an RA command.")
    return argv, files, outputs


class RequestAuthority:
    """The log signer of a command run for a verified remote request: each change's entries carry the
    request's JWS (the operator's signature over the command), checked by ``log verify``."""

    def __init__(self, request: RaRequest, cert: x509.Certificate) -> None:
        self.request = request
        self.cert_der = cert.public_bytes(Encoding.DER)

    def __call__(self, items: list[LogItem]) -> str | None:
        if not any(item[1] in SIGNED_ACTIONS for item in items):
            return None
        if any(item[0] != self.request.operator for item in items):
            raise AuthError(f"a request of {self.request.operator} cannot change the records for another operator.")
        return json.dumps({"v": 1, "entries": len(items), "cert": base64.b64encode(self.cert_der).decode(),
                           "jws": self.request.jws}, sort_keys=True, separators=(",", ":"))


def request_signature_problem(doc: dict[str, Any], operator: str) -> str | None:
    """Why a stored request signature (``{"jws", "cert"}``) does not hold for ``operator``, or None: the JWS must
    verify with the certificate and name ``operator`` as its ``kid`` (``log verify``, offline)."""
    import josepy
    from acme import jws as acme_jws

    try:
        parsed = acme_jws.JWS.json_loads(str(doc["jws"]))
        cert = x509.load_der_x509_certificate(base64.b64decode(doc["cert"]))
        key = josepy.JWK.load(cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        valid = parsed.verify(key)
        kid = parsed.signature.combined.kid
    except (ValueError, KeyError, TypeError, josepy.DeserializationError):
        return "the request signature is not readable"
    if not valid:
        return "the request signature does not verify"
    if kid != operator:
        return f"the request was signed by {kid}, not {operator}"
    return None
