"""Worker-thread capacity of its own for what relying parties fetch: OCSP, CRLs, CA certificates, /health.

The ACME endpoints run in Starlette's shared thread pool (anyio's default limiter, 40 threads); the public
endpoints run under their own limiter, so ACME work (a slow signature, a store busy with issuance) never
leaves an OCSP or CRL request waiting for a thread.  Validations run in their own threads
(:mod:`twcactl.serve.validation_pool`).  One limiter per event loop (each ``--workers`` process has its own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

#: Threads reserved for the public endpoints (per server process).
PUBLIC_THREADS = 16

T = TypeVar("T")
_limiters: dict[int, anyio.CapacityLimiter] = {}


def _limiter() -> anyio.CapacityLimiter:
    import asyncio

    key = id(asyncio.get_running_loop())
    limiter = _limiters.get(key)
    if limiter is None:
        limiter = _limiters[key] = anyio.CapacityLimiter(PUBLIC_THREADS)
    return limiter


async def run_public(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a worker thread of the public endpoints' own capacity."""
    return await anyio.to_thread.run_sync(func, *args, limiter=_limiter())
