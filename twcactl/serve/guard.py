"""The connection guard in front of the ASGI application: connection caps, the header deadline, TLS.

uvicorn has no deadline for a request's headers (its keep-alive timer stops at the first byte, and
``limit_concurrency`` is one pool that half-sent requests fill for as long as they stay open), so every
listener runs uvicorn's own HTTP/1.1 protocol (h11) behind this guard (docs/serve.md, "Facing the internet"):

- On accept, before any byte is read or any TLS work done, a connection beyond
  ``--max-connections-per-client`` from its address, or beyond ``--max-connections`` on its listener, is
  closed at once.  Each listener counts its own, so the plain HTTP listener (OCSP, CRLs, CA certificates)
  keeps its capacity whatever the HTTPS one suffers.
- The TLS handshake (``loop.start_tls``) and then each request's headers must arrive within
  ``--header-timeout`` seconds of the accept, or of the end of the previous response on a keep-alive
  connection; a connection past it is aborted.  An idle keep-alive connection closes after
  ``keepalive_timeout`` seconds (uvicorn's own timer).

The counts are per server process (``--workers N`` has N of each).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass
class Limits:
    """The connection limits of one listener and its open connections (one per listener and process).

    Attributes:
        header_timeout: seconds for the TLS handshake plus a request's headers.
        per_client: open connections per client address.
        total: open connections in all.
        tls: the server context for an HTTPS listener, None for plain HTTP.
    """

    header_timeout: float
    per_client: int
    total: int
    tls: ssl.SSLContext | None = None
    open: collections.Counter[str] = field(default_factory=collections.Counter)
    count: int = 0
    refused: int = 0

    def acquire(self, client: str) -> bool:
        """Count a new connection from ``client``; False (not counted) when a cap is reached."""
        if self.open[client] >= self.per_client or self.count >= self.total:
            self.refused += 1
            return False
        self.open[client] += 1
        self.count += 1
        return True

    def release(self, client: str) -> None:
        """Forget one connection of ``client``."""
        self.count -= 1
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]


class _Slot:
    """One counted connection, released once whichever protocol sees it end."""

    def __init__(self, limits: Limits, client: str) -> None:
        self.limits = limits
        self.client = client
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.limits.release(self.client)


def _client(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers."""

    slot: _Slot | None = None
    header_timeout: float = 10.0
    #: When the connection was accepted (loop time): the TLS handshake and the first headers share a deadline.
    accepted: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm(since=self.accepted)

    def _arm(self, since: float | None = None) -> None:
        self._disarm()
        start = self.loop.time() if since is None else since
        self._header_timer = self.loop.call_at(start + self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # this request's headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request's headers have the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        try:
            super().connection_lost(exc)
        finally:
            if self.slot is not None:
                self.slot.release()


def _admit(transport: asyncio.Transport, limits: Limits, inner: GuardedH11) -> bool:
    """Count a new connection against ``limits`` (its slot goes with ``inner``); over a cap it is aborted at once,
    before any TLS or HTTP work, and False is returned."""
    client = _client(transport)
    if not limits.acquire(client):
        transport.abort()
        return False
    inner.slot = _Slot(limits, client)
    return True


class _TlsGate(asyncio.Protocol):
    """The first protocol of an HTTPS connection: counts it, then runs the TLS handshake within the header
    deadline and hands the decrypted stream to a :class:`GuardedH11`."""

    def __init__(self, inner: GuardedH11, limits: Limits, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.limits = limits
        self.loop = loop
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not _admit(transport, self.limits, self.inner):
            return
        self.inner.accepted = self.loop.time()
        transport.pause_reading()  # the ClientHello is for the TLS layer start_tls puts in place
        self.task = self.loop.create_task(self._handshake(transport))

    async def _handshake(self, transport: asyncio.Transport) -> None:
        assert self.limits.tls is not None and self.inner.slot is not None
        early = _Early(self.inner.slot)
        try:
            tls = await self.loop.start_tls(transport, early, self.limits.tls, server_side=True,
                                            ssl_handshake_timeout=self.limits.header_timeout)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, RuntimeError):
            transport.abort()
            self.inner.slot.release()
            return
        if tls is None or early.lost:
            self.inner.slot.release()
            return
        # the TLS layer may have passed on the first request's bytes with the handshake's end: replay them
        self.inner.connection_made(tls)
        tls.set_protocol(self.inner)
        for data in early.data:
            self.inner.data_received(data)
        if early.eof:
            self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner.slot is not None and self.task is not None and not self.task.done():
            self.task.cancel()
            self.inner.slot.release()


class _Early(asyncio.Protocol):
    """What the TLS layer delivers between the handshake's end and the hand-over to the HTTP protocol."""

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot
        self.data: list[bytes] = []
        self.eof = False
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.slot.release()


def protocol_factory(limits: Limits, timeout: float) -> Any:
    """The ``http`` protocol factory uvicorn calls per connection (``uvicorn.Config(http=...)``)."""

    class Guarded(GuardedH11):
        header_timeout = timeout

    def make(config: Any, server_state: Any, app_state: Any, _loop: asyncio.AbstractEventLoop | None = None
             ) -> asyncio.Protocol:
        loop = _loop or asyncio.get_running_loop()
        inner = Guarded(config=config, server_state=server_state, app_state=app_state, _loop=loop)
        if limits.tls is not None:
            return _TlsGate(inner, limits, loop)
        return _PlainGate(inner, limits)

    return make


class _PlainGate(asyncio.Protocol):
    """The protocol of a plain HTTP connection: counts it and, under the caps, is the :class:`GuardedH11`."""

    def __init__(self, inner: GuardedH11, limits: Limits) -> None:
        self.inner = inner
        self.limits = limits

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not _admit(transport, self.limits, self.inner):
            return
        transport.set_protocol(self.inner)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:  # only before set_protocol: refused at once
        pass
