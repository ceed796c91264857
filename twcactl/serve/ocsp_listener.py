"""The OCSP listener (``serve --ocsp-listen HOST:PORT``, issue 29): a small HTTP/1.1 handler for OCSP only.

Measured (docs/performance.md, "Issue 29: OCSP"), the ASGI stack in front of the answers produced ahead
(:mod:`twcactl.authority.ocsp_answers`) cost more than everything else of an answer: uvicorn's HTTP parser,
the ASGI messages and Starlette's dispatch.  This handler is an :class:`asyncio.Protocol` that understands
exactly what OCSP clients send (RFC 5019 §5, RFC 6960 appendix A):

* ``GET /ocsp/BASE64`` (percent-encoded base64 of the DER request) and ``POST /ocsp`` with a
  ``Content-Length`` body (``application/ocsp-request``); answers ``application/ocsp-response`` with the
  RFC 5019 §6 caching headers, as the ASGI path does; bytes that are not a request get ``malformedRequest``;
* HTTP/1.1 keep-alive and pipelining (answers in order), ``Connection: close``, HTTP/1.0 closes;
* refusals, never a 5xx for bad input: a request line or header that does not parse, ``Transfer-Encoding``
  (no chunked bodies) or a second ``Content-Length`` 400; POST without a length 411; a body over
  :data:`~twcactl.serve.config.MAX_OCSP_BODY` 413; a GET path over it 414; headers over :attr:`Limits.max_request`
  431; other paths 404, other methods 405 (each of these closes the connection);
* bounded clients: a request must be whole within :attr:`Limits.header_timeout` seconds of its first byte
  and an idle keep-alive connection is closed after :attr:`Limits.idle_timeout` (checked every ``tick``); at most
  :attr:`Limits.per_client` connections per client address and :attr:`Limits.total` in all (the next is
  closed at once); a client that does not read its answers stops being read from.

Answers are made on the event loop's own thread (stored bytes: microseconds) unless the store may block
(PostgreSQL, or the delegated signer is due for replacement), then in a worker thread, one request of a
connection at a time.  :func:`run_beside` also re-signs answers before they grow old, for both listeners.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.utils
import functools
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from twcactl.authority import ocsp_answers
from twcactl.errors import InputError, TwcaError
from twcactl.serve.config import MAX_OCSP_BODY

#: The malformedRequest answer (RFC 6960 §4.2.1), unsigned.
MALFORMED = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
    serialization.Encoding.DER)

_REASONS = {400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed", 411: b"Length Required",
            413: b"Content Too Large", 414: b"URI Too Long", 431: b"Request Header Fields Too Large",
            503: b"Service Unavailable"}


@dataclass(frozen=True)
class Limits:
    """How much the listener gives one client (seconds, connections, bytes)."""

    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    per_client: int = 64
    total: int = 1024
    max_request: int = 64 * 1024


class OcspListener:
    """What every connection shares: the application's :class:`~twcactl.serve.app.Server` (its store per
    thread and signers), the limits, and the connections open per client address."""

    def __init__(self, server: Any, limits: Limits | None = None) -> None:
        self.server = server
        self.limits = limits or Limits()
        self.per_client: dict[str, int] = {}
        self.connections: set[_Connection] = set()
        self._inline: bool | None = None
        self._fresh = True
        self._checked_until = 0.0

    def may_block(self) -> bool:
        """True when an answer may wait on the network or write (see the module docstring); whether the
        delegated signers are fresh is looked at once a second (it changes over days)."""
        if self._inline is None:
            self._inline = not self.server.store().shared
        now = time.monotonic()
        if now >= self._checked_until:
            self._fresh = self.server.signers.delegates_fresh()
            self._checked_until = now + 1.0
        return not self._inline or not self._fresh

    def sweep(self) -> None:
        """Close every connection past its deadline (called a few times a second)."""
        now = time.monotonic()
        for connection in [c for c in self.connections if c.deadline <= now]:
            connection.expire()

    def answer(self, data: bytes) -> bytes:
        """The whole HTTP response (status line, headers, body) to one OCSP request's DER ``data``."""
        try:
            found = ocsp_answers.reply(self.server.store(), data, self.server.signers)
        except InputError:
            return _response(200, MALFORMED, b"Content-Type: application/ocsp-response\r\n")
        except TwcaError:
            return _response(503, b"the CA database is busy\n", b"Retry-After: 1\r\n")
        if found.head is None:
            found.head = (b"Content-Type: application/ocsp-response\r\nContent-Length: %d\r\nLast-Modified: %s\r\n"
                          b"Expires: %s\r\nETag: %s\r\n" % (len(found.der), _http_date(found.this_update),
                                                            _http_date(found.next_update), found.etag.encode()))
        max_age = max(0, int(found.next_update.timestamp() - time.time()))
        return (b"HTTP/1.1 200 OK\r\n" + found.head + b"Cache-Control: max-age=%d, public, no-transform, "
                b"must-revalidate\r\n\r\n" % max_age + found.der)


def _http_date(when: Any) -> bytes:
    return email.utils.formatdate(when.timestamp(), usegmt=True).encode()


def _response(status: int, body: bytes, extra: bytes = b"", *, close: bool = False) -> bytes:
    reason = b"OK" if status == 200 else _REASONS.get(status, b"Error")
    connection = b"Connection: close\r\n" if close else b""
    if not extra:
        extra = b"Content-Type: text/plain\r\n"
    return b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n%s\r\n%s" % (status, reason, extra, len(body), connection,
                                                                    body)


class _Refusal(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class _Connection(asyncio.Protocol):
    """One client connection (module docstring)."""

    def __init__(self, listener: OcspListener) -> None:
        self.listener = listener
        self.limits = listener.limits
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.buf = b""
        self.busy = False
        self.paused = False
        self.closing = False
        self.deadline = float("inf")

    # ----- the connection -----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        listener = self.listener
        count = listener.per_client.get(self.client, 0)
        listener.per_client[self.client] = count + 1
        listener.connections.add(self)
        if count >= self.limits.per_client or len(listener.connections) > self.limits.total:
            self.closing = True
            transport.abort()
            return
        self._arm(self.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        listener = self.listener
        if self in listener.connections:
            listener.connections.discard(self)
            left = listener.per_client.get(self.client, 1) - 1
            if left > 0:
                listener.per_client[self.client] = left
            else:
                listener.per_client.pop(self.client, None)
        self.closing = True

    def pause_writing(self) -> None:
        self.paused = True  # the client does not read: stop reading its requests

    def resume_writing(self) -> None:
        self.paused = False
        self._process()

    def _arm(self, seconds: float) -> None:
        """Move the connection's deadline ``seconds`` from now (one float per request; :meth:`OcspListener.sweep`
        closes the connections past theirs)."""
        self.deadline = time.monotonic() + seconds

    def expire(self) -> None:
        """Cut the connection off: too slow (no answer is owed to a request that never arrived whole)."""
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.abort()

    def close(self) -> None:
        """Close after the answers written so far (server stopping)."""
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    # ----- requests -----
    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if not self.buf:
            self._arm(self.limits.header_timeout)  # the first byte of a request: it must be whole in time
        self.buf += data
        if len(self.buf) > self.limits.max_request + MAX_OCSP_BODY and (self.busy or self.paused):
            self._fail(_Refusal(431, "too much unread input\n"))
            return
        self._process()

    def _process(self) -> None:
        while self.buf and not (self.busy or self.paused or self.closing):
            try:
                parsed = self._parse()
            except _Refusal as refusal:
                self._fail(refusal)
                return
            if parsed is None:
                return  # not whole yet
            data, keep_alive = parsed
            if data is None:
                self._write(_response(404, b"not found\n"), keep_alive)
            elif self.listener.may_block():
                self.busy = True
                self.deadline = float("inf")  # the wait is the server's, not the client's
                loop = asyncio.get_running_loop()
                future = loop.run_in_executor(None, self.listener.answer, data)
                future.add_done_callback(functools.partial(self._done, keep_alive=keep_alive))
                return
            else:
                try:
                    payload = self.listener.answer(data)
                except Exception as exc:  # noqa: BLE001 - a bug: one line on stderr, a 503, the connection closed
                    sys.stderr.write(f"twcactl serve: internal error on the OCSP listener: {type(exc).__name__}\n")
                    payload, keep_alive = _response(503, b"unavailable\n", close=True), False
                self._write(payload, keep_alive)
            if not self.closing:  # the next request (pipelined) must be whole in time; else the idle wait
                self._arm(self.limits.header_timeout if self.buf else self.limits.idle_timeout)

    def _done(self, future: asyncio.Future[bytes], *, keep_alive: bool) -> None:
        self.busy = False
        if self.closing:
            return
        try:
            payload = future.result()
        except Exception as exc:  # noqa: BLE001 - a bug: one line on stderr, a 503 to the client
            sys.stderr.write(f"twcactl serve: internal error on the OCSP listener: {type(exc).__name__}\n")
            payload = _response(503, b"unavailable\n", close=True)
            keep_alive = False
        self._write(payload, keep_alive)
        if not self.closing:
            self._arm(self.limits.header_timeout if self.buf else self.limits.idle_timeout)
        self._process()

    def _write(self, payload: bytes, keep_alive: bool) -> None:
        assert self.transport is not None
        self.transport.write(payload)
        if not keep_alive:
            self.close()

    def _fail(self, refusal: _Refusal) -> None:
        assert self.transport is not None
        self.buf = b""
        self.transport.write(_response(refusal.status, str(refusal).encode(), close=True))
        self.close()

    def _parse(self) -> tuple[bytes | None, bool] | None:
        """The next whole request as ``(DER or None for another path, keep-alive)``, None while incomplete.

        Raises:
            _Refusal: what the module docstring lists (the connection is then closed).
        """
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > self.limits.max_request:
                raise _Refusal(431, "request headers too large\n")
            return None
        if end > self.limits.max_request:
            raise _Refusal(431, "request headers too large\n")
        method, target, length, keep_alive = _head(self.buf[:end])
        body_start = end + 4
        if method == b"POST":
            if length is None:
                raise _Refusal(411, "a POST needs a Content-Length\n")
            if length > MAX_OCSP_BODY:
                raise _Refusal(413, "request too large\n")
            if len(self.buf) < body_start + length:
                return None
            body = self.buf[body_start:body_start + length]
            self.buf = self.buf[body_start + length:]
            if target.split(b"?", 1)[0] != b"/ocsp":
                return None, keep_alive
            return body, keep_alive
        if method != b"GET" or length:
            raise _Refusal(405, "GET /ocsp/BASE64 or POST /ocsp\n")
        self.buf = self.buf[body_start:]
        if not target.startswith(b"/ocsp/"):
            return None, keep_alive
        text = target[6:]
        if len(text) > MAX_OCSP_BODY:
            raise _Refusal(414, "request too large\n")
        try:
            return base64.b64decode(unquote_to_bytes(text), validate=False), keep_alive
        except (binascii.Error, ValueError):
            return b"", keep_alive


def _head(head: bytes) -> tuple[bytes, bytes, int | None, bool]:
    """``(method, target, Content-Length or None, keep-alive)`` of a request's line and headers.

    Raises:
        _Refusal: 400 for a line or header that does not parse, a second length, Transfer-Encoding.
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].startswith(b"/"):
        raise _Refusal(400, "not an HTTP/1.1 request line\n")
    method, target, version = parts
    length: int | None = None
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or b" " in name:
            raise _Refusal(400, "a header line does not parse\n")
        name, value = name.lower(), value.strip()
        if name == b"content-length":
            if length is not None or not value.isdigit() or len(value) > 9:
                raise _Refusal(400, "one Content-Length of digits\n")
            length = int(value)
        elif name == b"transfer-encoding":
            raise _Refusal(400, "Content-Length bodies only\n")
        elif name == b"connection" and b"close" in value.lower():
            keep_alive = False
    return method, target, length, keep_alive


# ---------------------------------------------------------------- running

async def run_beside(server: Any, sock: socket.socket | None, should_stop: Callable[[], bool], *,
                     limits: Limits | None = None, tick: float = 0.025) -> None:
    """Serve the OCSP listener on ``sock`` (when given) and keep the answers produced ahead fresh
    (:meth:`~twcactl.authority.ocsp_answers.OcspAnswers.refresh_due` every ``tick`` seconds), until
    ``should_stop()``; then stop accepting and close the connections after the answers written."""
    loop = asyncio.get_running_loop()
    listener = OcspListener(server, limits)
    tcp = await loop.create_server(lambda: _Connection(listener), sock=sock) if sock is not None else None
    answers = ocsp_answers.answers_of(server.signers)
    try:
        while not should_stop():
            await asyncio.sleep(tick)
            listener.sweep()
            if not answers.due():
                continue
            try:
                # two signatures a tick at most (80 a second): the loop is never held for more than two
                if listener.may_block():
                    await loop.run_in_executor(None, lambda: answers.refresh_due(server.store(), budget=2))
                else:
                    answers.refresh_due(server.store(), budget=2)
            except TwcaError:
                pass  # the store is busy: the next tick tries again (requests sign what they need)
    finally:
        if tcp is not None:
            tcp.close()
            for connection in list(listener.connections):
                connection.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(tcp.wait_closed(), 5)
