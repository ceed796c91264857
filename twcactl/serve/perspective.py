"""``twcactl serve --perspective``: a remote network perspective for multi-perspective corroboration
(BR §3.2.2.9; issue 26).

One endpoint, ``POST /mpic`` (a JSON check in the shape of the Open MPIC API, see
:mod:`twcactl.validation.perspectives`), authenticated with a bearer token, doing one domain-validation or
CAA check with this perspective's own resolver and answering what it saw; ``GET /health`` for probes.  It keeps
no records and needs no CA home.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twcactl.errors import UsageError
from twcactl.validation import perspectives
from twcactl.validation.resolver import DnsServer


@dataclass(frozen=True)
class PerspectiveConfig:
    """Where the perspective listens, the token it requires, its resolver, the port ``http-file`` checks use
    and its name (shown in its answers)."""

    listen: tuple[str, int]
    token: str
    resolver: DnsServer
    http_port: int = 80
    name: str = "perspective"


def build_perspective_app(config: PerspectiveConfig) -> Any:
    """The starlette application of one perspective."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def check(request: Request) -> Response:
        if not perspectives.token_matches(request.headers.get("authorization"), config.token):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("not an object")
            answer = await run_in_threadpool(perspectives.answer_check, body, server=config.resolver,
                                             http_port=config.http_port)
        except (ValueError, UsageError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({**answer, "perspective_code": config.name})

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "perspective_code": config.name})

    return Starlette(routes=[Route(perspectives.PATH, check, methods=["POST"]),
                             Route("/health", health, methods=["GET"])])


def run_perspective(config: PerspectiveConfig) -> None:
    """Serve the perspective until SIGTERM / SIGINT (uvicorn, plain HTTP)."""
    import uvicorn

    uvicorn.run(build_perspective_app(config), host=config.listen[0], port=config.listen[1], log_level="warning",
                access_log=False)
