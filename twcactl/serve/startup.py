"""What ``twcactl serve`` checks before it serves: its TLS certificate and key, its listening addresses,
and that no secret sits on its command line (issue 24).

Each refusal is one line and an exit code of the contract (docs/cli-contract.md): 2 for a usage error (an
address that cannot be listened on, a ``pass:`` SOURCE), 3 for a bad input file.
"""

from __future__ import annotations

import socket
import ssl
import stat
from pathlib import Path

from twcactl.errors import InputError, UsageError

#: The largest certificate chain or key file read, bytes (a chain of five RSA 8192 certificates is ~20 kB).
MAX_PEM = 1024 * 1024


def refuse_inline_secret(source: str | None, *, option: str) -> None:
    """A long-running server takes no ``pass:TEXT`` SOURCE: its argv stays readable in ``ps`` for as long as
    it runs (docs/cli-contract.md, secrets).

    Raises:
        UsageError: ``source`` is ``pass:...`` (exit 2).
    """
    if source is not None and source.startswith("pass:"):
        raise UsageError(f"{option} pass:... is refused by twcactl serve: a long-running process shows its "
                         "arguments in ps. Use env:NAME, file:PATH, fd:N or stdin.")


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server-side TLS context of a PEM certificate chain and its unencrypted key (TLS 1.2 or later,
    ALPN http/1.1).

    Raises:
        InputError: a file over :data:`MAX_PEM`, not a regular file, unreadable, not PEM, or a key that is not
            the certificate's (exit 3).
    """
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            info = path.stat()
        except OSError as exc:
            raise InputError(f"{option} {path}: cannot be read ({exc.strerror}).") from exc
        if not stat.S_ISREG(info.st_mode):  # /dev/zero or a FIFO would be read for ever
            raise InputError(f"{option} {path}: not a regular file.")
        size = info.st_size
        if size > MAX_PEM:
            raise InputError(f"{option} {path}: {size} bytes, more than a certificate chain or key "
                             f"({MAX_PEM} at most).")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise InputError(f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate chain and its "
                         "unencrypted key.") from exc
    return context


def bind(host: str, port: int, *, option: str) -> socket.socket:
    """A listening TCP socket on ``host:port``, inheritable by forked workers.

    Made with ``proto=IPPROTO_TCP`` (not 0): asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    sockets whose ``proto`` says TCP, and accepted sockets inherit it.  With Nagle on, uvicorn's two writes
    per response (headers, body) met the client's delayed ACK: every request after the first on a
    keep-alive connection waited about 40 ms.

    Raises:
        UsageError: not an address of this machine, a port in use or not allowed (exit 2).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICSERV)
        family = infos[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"{option} {host}:{port}: cannot listen there ({reason}).") from exc
    sock.set_inheritable(True)
    return sock
