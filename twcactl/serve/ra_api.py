"""The RA API of ``serve`` (issue 27): remote RA desks run RA commands with signed requests.

``GET|HEAD /ra/new-nonce`` hands out a nonce (``Replay-Nonce``); ``POST /ra/command`` takes a JWS (RFC 7515,
the flattened JSON shape ACME uses, RFC 8555 §6.2) whose ``kid`` is the operator, ``nonce`` a fresh nonce and
``url`` this endpoint, and whose payload is ``{"argv": [...], "files": {"@in:N": base64}, "outputs":
["@out:N"]}`` (:mod:`twcactl.authority.remote_ra`).  The answer is ``{"exit", "stdout", "stderr", "outputs",
"paths"}``: the command's own output and exit code as it ran on this server, the files it wrote, and the
server paths that stand for the desk's; or the CLI's error document (401 for an unknown key).

The command runs as ``python -m twcactl --home HOME ...`` in a child process, as the operator, with the
server's CA passphrase and store password given through pipes; the child checks the request again and
consumes its nonce (:func:`authorize`), so a request runs once.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from twcactl.authority import acme as acme_core
from twcactl.authority.acme import AcmeProblem
from twcactl.authority.remote_ra import (
    IN_PREFIX,
    OUT_PREFIX,
    RaRequest,
    RequestAuthority,
    check_command,
    parse_payload,
)
from twcactl.authority.signed_actions import check_operator_credential
from twcactl.errors import AuthError, StateError, TwcaError
from twcactl.serve.subscriber_api import error_response
from twcactl.store import Store

#: The largest request: a batch of CSRs.
MAX_BODY = 4 * 1024 * 1024
#: Seconds one remote command may run.
COMMAND_TIMEOUT = 600
#: The environment variable naming the pipe that carries the request ticket to the child.
TICKET_FD_ENV = "TWCACTL_RA_TICKET_FD"


def verify_request(store: Store, body: bytes, url: str) -> RaRequest:
    """Check a remote request: a JWS for ``url`` signed by the key of the certificate bound to its ``kid``.

    Raises:
        AuthError: not a JWS, another URL, no such operator or certificate, a certificate that cannot prove the
            operator, or a signature that does not verify: an unknown key (exit 4).
        UsageError: the payload is not an RA command (exit 2).
    """
    import josepy

    from twcactl.serve import jose

    try:
        signed = jose.parse(body)
    except AcmeProblem as exc:
        raise AuthError(f"the request is not a signed RA request: {exc.message}") from exc
    if signed.url != url:
        raise AuthError("the request was signed for another URL.")
    if signed.kid is None:
        raise AuthError("the request must name its operator (kid).")
    cert = _certificate(store, signed.kid)
    key = josepy.JWK.load(cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    try:
        jose.verify(signed, key)
    except AcmeProblem as exc:
        raise AuthError(f"the request is not signed by the key of operator {signed.kid}'s certificate.") from exc
    argv, files, outputs = parse_payload(signed.payload)
    check_command(argv)
    return RaRequest(signed.kid, argv, files, outputs, signed.nonce, body.decode("utf-8"))


def _certificate(store: Store, name: str) -> x509.Certificate:
    try:
        return check_operator_credential(store, name)
    except StateError as exc:  # not an operator here: an unknown key
        raise AuthError(f"no operator {name} with a certificate is known to this CA.") from exc


def authorize(store: Store, ticket: bytes, argv: list[str], operator: str) -> None:
    """In the child that runs a remote command: check the request again and install its log signer.

    ``ticket`` is ``{"jws", "url", "paths": {"@in:0": "/tmp/..."}}``; ``argv`` (the child's own command) must
    end with the signed one, its placeholders replaced; ``operator`` must be the request's ``kid``; the nonce
    is consumed here, once.

    Raises:
        AuthError: a request that does not verify, another command or operator, or a used nonce (exit 4).
    """
    try:
        doc = json.loads(ticket)
        body, url, paths = str(doc["jws"]).encode("utf-8"), str(doc["url"]), dict(doc["paths"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthError("the RA request ticket is not readable.") from exc
    request = verify_request(store, body, url)
    signed_argv = [str(paths.get(token, token)) for token in request.argv]
    if request.operator != operator or argv[len(argv) - len(signed_argv):] != signed_argv:
        raise AuthError("the command is not the one the operator signed.")
    try:
        acme_core.use_nonce(store, request.nonce)
    except AcmeProblem as exc:
        raise AuthError(f"the request was refused: {exc.message} (a replayed request?)") from exc
    store.log.signer = RequestAuthority(request, _certificate(store, operator))


def _pipe(data: bytes) -> int:
    """A pipe's read end holding ``data`` (inherited by the child)."""
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    os.set_inheritable(read, True)
    return read


def run_command(server: Any, request: RaRequest, url: str) -> dict[str, Any]:
    """Run ``request`` in a child process against the server's home; its output, exit code and files."""
    with tempfile.TemporaryDirectory(prefix="twcactl-ra-") as work:
        paths: dict[str, str] = {}
        for name, data in request.files.items():
            path = Path(work) / f"in{len(paths)}"
            path.write_bytes(data)
            paths[name] = str(path)
        for name in request.outputs:
            paths[name] = str(Path(work) / f"out{len(paths)}")
        argv = [paths.get(token, token) for token in request.argv]
        if any(token.startswith((IN_PREFIX, OUT_PREFIX)) for token in argv):
            raise AuthError("the request names a file it did not send.")
        ticket = Path(work) / "ticket"  # a file, not a pipe: a batch of CSRs can outgrow a pipe's buffer
        ticket.write_bytes(json.dumps({"jws": request.jws, "url": url, "paths": paths}).encode())
        ticket.chmod(0o600)
        fds = [os.open(ticket, os.O_RDONLY)]
        os.set_inheritable(fds[0], True)
        env = dict(server.config.child_environment, TWCACTL_OPERATOR=request.operator,
                   **{TICKET_FD_ENV: str(fds[0])})
        env.pop("TWCACTL_OPERATOR_KEY", None)
        passphrase = server.config.passphrase()
        if passphrase is not None:
            fds.append(_pipe(passphrase.encode("utf-8") + b"\n"))
            env["TWCACTL_CA_PASSPHRASE_SOURCE"] = f"fd:{fds[-1]}"
        try:
            command = [sys.executable, "-m", "twcactl", "--home", str(server.config.home), *argv]
            done = subprocess.run(command, env=env, pass_fds=fds, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=COMMAND_TIMEOUT, check=False)
        finally:
            for fd in fds:
                os.close(fd)
        outputs = {name: _collect(Path(paths[name])) for name in request.outputs}
        return {"exit": done.returncode, "stdout": done.stdout.decode("utf-8", "replace"),
                "stderr": done.stderr.decode("utf-8", "replace"), "outputs": outputs,
                "paths": {path: name for name, path in paths.items()}}


def _collect(path: Path) -> dict[str, Any] | None:
    """A written output: ``{"file": b64}`` or ``{"dir": {name: b64}}``; None when nothing was written."""
    if path.is_file():
        return {"file": base64.b64encode(path.read_bytes()).decode()}
    if path.is_dir():
        return {"dir": {p.name: base64.b64encode(p.read_bytes()).decode() for p in sorted(path.iterdir())
                        if p.is_file()}}
    return None


def routes(server: Any) -> list[Route]:
    """The RA routes over ``server`` (the serve application's state: ``store()`` and ``config``)."""

    async def new_nonce(request: Request) -> Response:
        nonce = await run_in_threadpool(lambda: acme_core.new_nonce(server.store()))
        return Response(b"", headers={"Replay-Nonce": nonce, "Cache-Control": "no-store"})

    async def command(request: Request) -> Response:
        body = await request.body()
        url = str(request.url)
        try:
            if len(body) > MAX_BODY:
                raise AuthError("the request is too large.")
            verified = await run_in_threadpool(lambda: verify_request(server.store(), body, url))
            result = await run_in_threadpool(run_command, server, verified, url)
        except TwcaError as exc:
            return error_response(exc)
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    return [Route("/ra/new-nonce", new_nonce, methods=["GET", "HEAD"]),
            Route("/ra/command", command, methods=["POST"])]
