"""``twcactl --server URL ...``: the remote RA desk's side of ``serve``'s RA API (issue 27).

The RA command given after the global options is sent as a JWS signed with the operator's key
(``--operator-key`` / ``$TWCACTL_OPERATOR_KEY``: their card or a key file), with the files it reads; the
server's answer (the command's own output, exit code and written files) is replayed here, so the desk
sees what local use shows.  The desk holds no database password and no CA key.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twcactl.authority.remote_ra import (
    IN_PREFIX,
    INPUT_OPTIONS,
    OUT_PREFIX,
    OUTPUT_OPTIONS,
    RA_COMMANDS,
    command_path,
)
from twcactl.cli.context import AppContext, current_operator
from twcactl.errors import AuthError, DeviceError, UsageError, error_for_code

#: Global options that take a value (skipped to find where the command starts).
_GLOBAL_WITH_VALUE = frozenset({"--home", "--lock-timeout", "--store-password", "--operator-key", "--server"})
#: Commands that talk to a server themselves, never forwarded.
_OWN_CLIENTS = frozenset({"subscriber"})
TIMEOUT = 620.0


def command_argv(argv: list[str]) -> list[str]:
    """``argv`` without the global options in front of the command."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in _GLOBAL_WITH_VALUE else 1
    return argv[i:]


def forward(server: str, argv: list[str], *, json_wanted: bool, operator: str, key_spec: str | None) -> None:
    """Run the RA command in ``argv`` (the whole command line) on ``server``; exits with its code.

    Returns only when the command is not forwarded (no command, or one that talks to a server itself).

    Raises:
        UsageError: not an RA command (exit 2).  AuthError: no operator key (exit 4).
        DeviceError: the server cannot be reached (exit 6); the server's own errors as their exit codes.
    """
    tokens = command_argv(argv)
    if not tokens or tokens[0] in _OWN_CLIENTS or tokens[0] in ("-h", "--help"):
        return
    if command_path(tokens) not in RA_COMMANDS:
        raise UsageError(f"'{' '.join(tokens[:2])}' is not an RA command; through --server: "
                         + ", ".join(" ".join(c) for c in sorted(RA_COMMANDS)) + ".")
    if key_spec is None:
        raise AuthError("a request to the RA server is signed with your key.",
                        hint="--operator-key pkcs11:token=CARD;object=user-sign (your card) or a key file, "
                             "or set TWCACTL_OPERATOR_KEY")
    if json_wanted and "--json" not in tokens:
        tokens.append("--json")
    sent, files, outputs = _placeholders(tokens)
    payload = json.dumps({"argv": sent, "files": files, "outputs": list(outputs)}).encode()
    base = server.rstrip("/")
    body = _sign(payload, key_spec, kid=operator, nonce=_nonce(base), url=f"{base}/ra/command")
    answer = json.loads(_post(f"{base}/ra/command", body))
    _write_outputs(answer.get("outputs") or {}, outputs)
    stdout = str(answer.get("stdout", ""))
    for server_path, name in dict(answer.get("paths") or {}).items():
        if name in outputs:
            stdout = stdout.replace(server_path, json.dumps(str(outputs[name]))[1:-1])
    sys.stdout.write(stdout)
    sys.stderr.write(str(answer.get("stderr", "")))
    sys.stdout.flush()
    raise SystemExit(int(answer.get("exit", 70)))


def _placeholders(tokens: list[str]) -> tuple[list[str], dict[str, str], dict[str, Path]]:
    """The argv to send (files and outputs as placeholders), the files (base64) and the local outputs."""
    sent: list[str] = []
    files: dict[str, str] = {}
    outputs: dict[str, Path] = {}
    previous = ""
    for token in tokens:
        if previous in OUTPUT_OPTIONS:
            name = f"{OUT_PREFIX}{len(outputs)}"
            outputs[name] = Path(token)
            sent.append(name)
        elif (previous in INPUT_OPTIONS or not token.startswith("-")) and os.path.isfile(token):
            name = f"{IN_PREFIX}{len(files)}"
            files[name] = base64.b64encode(Path(token).read_bytes()).decode()
            sent.append(name)
        elif not token.startswith("-") and os.path.isdir(token):
            raise UsageError(f"{token} is a directory; through --server give the files.")
        else:
            sent.append(token)
        previous = token
    return sent, files, outputs


def _write_outputs(answers: dict[str, Any], outputs: dict[str, Path]) -> None:
    from twcactl.fsutil import write_file

    for name, local in outputs.items():
        got = answers.get(name)
        if not got:
            continue
        if "file" in got:
            write_file(local, base64.b64decode(got["file"]), force=True)
        else:
            local.mkdir(parents=True, exist_ok=True)
            for file_name, data in dict(got["dir"]).items():
                if "/" in file_name or file_name.startswith("."):
                    continue
                write_file(local / file_name, base64.b64decode(data), force=True)


def _context() -> ssl.SSLContext:
    ca_file = os.environ.get("TWCACTL_SERVER_CA_FILE")
    return ssl.create_default_context(cafile=ca_file or None)


def _open(request: urllib.request.Request) -> Any:
    context = _context() if request.full_url.startswith("https") else None
    return urllib.request.urlopen(request, timeout=TIMEOUT, context=context)


def _nonce(base: str) -> str:
    try:
        with _open(urllib.request.Request(f"{base}/ra/new-nonce", method="HEAD")) as response:
            nonce = response.headers.get("Replay-Nonce")
    except (urllib.error.URLError, OSError) as exc:
        raise DeviceError(f"cannot reach the RA server {base}: {exc}.") from exc
    if not nonce:
        raise DeviceError(f"{base} is not a twcactl RA server (no nonce).")
    return str(nonce)


def _post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/jose+json"})
    try:
        with _open(request) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
        except (ValueError, KeyError, TypeError):
            raise DeviceError(f"the RA server answered HTTP {exc.code} without an error document.") from exc
        raise error_for_code(int(error["code"]), str(error["message"])) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeviceError(f"cannot reach the RA server: {exc}.") from exc


def _sign(payload: bytes, key_spec: str, *, kid: str, nonce: str, url: str) -> bytes:
    """The flattened JWS of ``payload`` signed by the operator's key (RS256, or ES256/ES384 by curve)."""
    import josepy
    from acme import jws as acme_jws
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _load_key(key_spec)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk: Any = josepy.JWKEC(key=key)
        alg = josepy.ES384 if key.curve.key_size == 384 else josepy.ES256
    else:
        jwk, alg = josepy.JWKRSA(key=key), josepy.RS256
    signed = acme_jws.JWS.sign(payload, key=jwk, alg=alg, nonce=josepy.b64.b64decode(nonce), url=url, kid=kid)
    return signed.json_dumps().encode()


def _load_key(spec: str) -> Any:
    from twcactl.authority import signed_actions
    from twcactl.backends.p11_uri import is_pkcs11_uri
    from twcactl.cli.secrets import get_secret

    if not is_pkcs11_uri(spec):
        return signed_actions.load_key_file(spec.removeprefix("file:"))
    pin = get_secret(None, option="--operator-key PIN", what="operator card PIN",
                     env_default="TWCACTL_OPERATOR_PIN_SOURCE")
    return signed_actions.load_token_key(spec, pin, os.environ.get("TWCACTL_PKCS11_MODULE"))


def forward_from(server: str, obj: AppContext) -> None:
    """:func:`forward` with the global options of this run (the operator, the key, ``--json``)."""
    forward(server, obj.argv, json_wanted=obj.json, operator=current_operator(),
            key_spec=obj.operator_key or os.environ.get("TWCACTL_OPERATOR_KEY") or None)
