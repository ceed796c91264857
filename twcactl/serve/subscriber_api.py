"""The subscriber's HTTP API (issue 27): suspend, resume, revoke, download, change the password.

``POST /subscriber/{serial}/{action}`` with a JSON body ``{"password": "...", "reason": "...",
"new_password": "..."}``; the answer is ``{"serial", "state"}`` (``download``: the ``cert.zip`` bundle,
``application/zip``) or the CLI's error document ``{"error": {"code", "kind", "message"}}`` with an HTTP
status of the same meaning (4 -> 401, 5 -> 409, 2 -> 400, 1 -> 422, 3 -> 400, 75 -> 503).  The client is
``twcactl subscriber ... --server URL``.  Serve it over HTTPS (the password travels in the body).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from twcactl.authority import subscribers
from twcactl.errors import TwcaError, UsageError

#: The largest request body: a password or two and a reason.
MAX_BODY = 4096
#: The HTTP status for each exit code of the contract.
HTTP_STATUS = {1: 422, 2: 400, 3: 400, 4: 401, 5: 409, 6: 503, 75: 503}


def error_response(exc: TwcaError) -> JSONResponse:
    """The CLI's error document for ``exc`` with its HTTP status (500 for internal errors)."""
    doc = {"error": {"code": exc.exit_code, "kind": exc.kind, "message": exc.message}}
    return JSONResponse(doc, status_code=HTTP_STATUS.get(exc.exit_code, 500), headers={"Cache-Control": "no-store"})


def _fields(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError("the request body is not JSON.") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("password"), str):
        raise UsageError('the request body must be a JSON object with "password".')
    for key in ("reason", "new_password"):
        if key in doc and not isinstance(doc[key], str):
            raise UsageError(f'"{key}" must be text.')
    return doc


def routes(server: Any) -> list[Route]:
    """The subscriber routes over ``server`` (the serve application's state: ``store()`` and ``config``)."""

    async def handle(request: Request) -> Response:
        serial = str(request.path_params["serial"]).lower()
        action = str(request.path_params["action"])
        body = await request.body()
        try:
            if len(body) > MAX_BODY:
                raise UsageError("the request body is too large.")
            doc = _fields(body)
            if action == "passwd":  # the store is per worker thread: opened inside the call
                await run_in_threadpool(lambda: subscribers.change_password(
                    server.store(), serial, doc["password"], doc.get("new_password", "")))
                return JSONResponse({"serial": serial, "changed": True}, headers={"Cache-Control": "no-store"})
            outcome = await run_in_threadpool(lambda: subscribers.act(
                server.store(), serial, doc["password"], action, reason=doc.get("reason"),
                passphrase=server.config.passphrase))
        except TwcaError as exc:
            return error_response(exc)
        if outcome.bundle is not None:
            return Response(outcome.bundle, media_type="application/zip", headers={"Cache-Control": "no-store"})
        return JSONResponse(outcome.to_json(), headers={"Cache-Control": "no-store"})

    return [Route("/subscriber/{serial}/{action}", handle, methods=["POST"])]
