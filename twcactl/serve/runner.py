"""Running the application: sockets, TLS, worker processes, graceful shutdown.

The sockets are bound once by the first process, so ``--workers N`` forks N
processes that all accept on them (the kernel spreads connections); each
process runs uvicorn over the same sockets behind :mod:`twcactl.serve.guard` (connection caps, the header
deadline, TLS).  SIGTERM
or SIGINT stops accepting, lets the requests in flight finish (up to
:data:`GRACE` seconds) and exits 0; the parent forwards it to its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from twcactl.authority import responder
from twcactl.serve import guard, startup
from twcactl.serve.app import build_app
from twcactl.serve.config import ServeConfig
from twcactl.store import Store

#: Seconds a stopping server waits for the requests in flight.
GRACE = 10


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the signals to :func:`_serve` (two servers share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def prepare(config: ServeConfig) -> tuple[responder.Signers, str, str]:
    """Open the home once: unlock the OCSP signers, refresh the CRL, get the TLS certificate.

    Returns:
        ``(signers, certificate chain path, key path)``.

    Raises:
        TwcaError: no home (exit 5), wrong passphrase (exit 4), the operator is not a manager (exit 5).
    """
    store = Store.open(config.home, lock_timeout=config.lock_timeout)
    try:
        signers = responder.Signers.unlock(store, config.passphrase, signer=config.ocsp_signer,
                                           operator=config.operator)
        responder.ensure_fresh_crl(store, operator=config.operator, passphrase=config.passphrase)
        if config.tls_cert is not None and config.tls_key is not None:
            cert, key = config.tls_cert, config.tls_key
        else:
            cert, key = responder.server_certificate(store, config.names, operator=config.operator,
                                                     passphrase=config.passphrase)
    finally:
        store.close()
    return signers, str(cert), str(key)


async def _serve(servers: list[_Server], sockets: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in zip(servers, sockets)))


def _connection_cap(wanted: int, listeners: int) -> int:
    """``--max-connections`` per listener, within what the open-files limit allows (raised to its hard limit
    first: each connection is one descriptor; 64 are kept for the store, logs and validations)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = wanted * listeners + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, (soft - 64) // listeners))


def run(config: ServeConfig) -> None:
    """Serve until SIGTERM/SIGINT (see the module docstring).

    Raises:
        TwcaError: as :func:`prepare`; UsageError: an address that cannot be listened on (exit 2); InputError:
            a bad ``--tls-cert``/``--tls-key`` (exit 3).
    """
    listeners = [startup.bind(*config.listen, option="--listen")]
    if config.http_listen is not None:
        listeners.append(startup.bind(*config.http_listen, option="--http-listen"))
    if config.tls_cert is not None and config.tls_key is not None:
        startup.tls_context(config.tls_cert, config.tls_key)  # refused before the CA key is unlocked
    signers, cert, key = prepare(config)
    app = build_app(config, signers)
    total = _connection_cap(config.max_connections, len(listeners))
    limits = [guard.Limits(config.header_timeout, config.max_connections_per_client, total,
                           tls=startup.tls_context(Path(cert), Path(key)))]
    if config.http_listen is not None:
        limits.append(guard.Limits(config.header_timeout, config.max_connections_per_client, total))
    log_level = "warning" if config.quiet else "info"
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"  # the access log on stderr, as the CLI does
    common = {"log_config": log_config, "lifespan": "off", "log_level": log_level, "access_log": not config.quiet,
              "server_header": False, "timeout_graceful_shutdown": GRACE, "h11_max_incomplete_event_size": 16384,
              "timeout_keep_alive": config.keepalive_timeout}
    configs = [uvicorn.Config(app, http=guard.protocol_factory(lim, config.header_timeout), **common)  # type: ignore[arg-type]
               for lim in limits]
    host, port = listeners[0].getsockname()[:2]
    if not config.quiet:
        plain = f" and http://{config.http_listen[0]}:{listeners[1].getsockname()[1]}" if config.http_listen else ""
        sys.stderr.write(f"twcactl serve: https://{host}:{port}/acme/directory{plain} "
                         f"({config.workers} worker{'s' if config.workers > 1 else ''})\n")
        sys.stderr.flush()
    if config.workers == 1:
        try:
            asyncio.run(_serve([_Server(c) for c in configs], listeners))
        finally:
            app.server.validations.close()
        return
    children = []
    for _ in range(config.workers):
        pid = os.fork()
        if pid == 0:  # a worker
            code = 0
            try:
                asyncio.run(_serve([_Server(c) for c in configs], listeners))
                app.server.validations.close()
            except BaseException:  # noqa: BLE001 - a worker reports and exits; the parent carries on
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(sig: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)
