"""The resident process (issue 29): one warm twcactl per home that runs forwarded commands.

It imports what the commands use once, listens on the home's Unix socket
(:func:`twcactl.platform_dirs.resident_socket_path`), and for each command forks a worker that takes
the client's descriptors, working directory, environment and umask, runs :func:`twcactl.cli.run`
exactly as ``python -m twcactl`` would, and reports the exit status (the protocol is described in
:mod:`twcactl.forwarder`).  A fork per command keeps commands apart as separate processes are: no
state, open database or token session outlives a command, and the parent never opens the store.

Only the same user may connect (``SO_PEERCRED``; the socket's directory is 0700).  A client of
another version or installation, or with another ``LD_PRELOAD`` (faketime, sanitizers), is
refused and runs the command itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twcactl import __version__
from twcactl.errors import StateError
from twcactl.forwarder import MAX_FDS, PROTOCOL, package_dir, private_dir_ok
from twcactl.platform_dirs import resident_socket_path

__all__ = ["ResidentInfo", "WARM_MODULES", "request", "serve_forever", "start", "status"]

#: Imported before the first command: what `cert issue`, `cert list`, `csr check` and the other
#: everyday commands load on first use (measured by `python -X importtime`).
WARM_MODULES = (
    "twcactl.cli.cert_cmd", "twcactl.cli.csr_cmd", "twcactl.cli.account_cmd", "twcactl.cli.ca_cmd",
    "twcactl.cli.chain_cmd", "twcactl.cli.pfx_cmd", "twcactl.cli.log_cmd", "twcactl.cli.crl_cmd",
    "twcactl.cli.output", "twcactl.authority.lifecycle", "twcactl.authority.accounts",
    "twcactl.authority.responder", "twcactl.authority.issuance_checks", "twcactl.store", "twcactl.store.certificates",
    "twcactl.issue",
    "twcactl.csr", "twcactl.pfx", "twcactl.pkix.chain", "twcactl.pkix.crl", "rich.console", "rich.table",
    "sqlite3", "tempfile", "shutil",
)
#: Imported too when the home's records are on PostgreSQL: the driver alone is about 100 ms of a command's
#: start-up (``python -X importtime``), most of what a node on PostgreSQL pays over one on SQLite.
PG_WARM_MODULES = ("psycopg", "twcactl.store.postgres", "twcactl.store.pg_connect")
#: Variables whose difference means the worker would not run the same program (an LD_PRELOAD'ed
#: faketime or sanitizer changes what the process sees).
_SAME_PROCESS_VARS = ("LD_PRELOAD", "LD_LIBRARY_PATH")
_MAX_REQUEST = 4 * 1024 * 1024
_HIGH_FD = 1024


@dataclass
class ResidentInfo:
    """What ``resident status`` reports: ``{"home", "socket", "pid", "version", "started", "commands"}``."""

    home: str
    socket: str
    pid: int
    version: str = __version__
    started: float = field(default_factory=time.time)
    commands: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"home": self.home, "socket": self.socket, "pid": self.pid, "version": self.version,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
                "commands": self.commands}


def _private_dir(directory: Path) -> None:
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    if not private_dir_ok(directory):
        raise StateError(f"{directory} is not a private directory of this user (mode 0700); "
                         "remove it or fix its owner and mode.")


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the client went away")
        data += chunk
    return data


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request and the descriptors passed with it."""
    head, fds, _flags, _addr = socket.recv_fds(conn, 4, MAX_FDS)
    if len(head) < 4:
        head += _recv_exact(conn, 4 - len(head))
    (size,) = struct.unpack(">I", head)
    if size > _MAX_REQUEST:
        raise ConnectionError("request too large")
    body = json.loads(_recv_exact(conn, size).decode("utf-8", "surrogateescape"))
    if not isinstance(body, dict):
        raise ConnectionError("not a request")
    return body, list(fds)


def _reply(conn: socket.socket, document: dict[str, Any]) -> None:
    conn.sendall(json.dumps(document).encode() + b"\n")


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _refusal(req: dict[str, Any]) -> str | None:
    if req.get("protocol") != PROTOCOL or req.get("version") != __version__:
        return "another version of twcactl"
    if req.get("package") != package_dir():
        return "another installation of twcactl"
    env = req["env"] if isinstance(req.get("env"), dict) else {}
    if any(env.get(name) != os.environ.get(name) for name in _SAME_PROCESS_VARS):
        return "another preloaded library set"
    if not isinstance(req.get("argv"), list) or not isinstance(req.get("fds"), list):
        return "malformed request"
    return None


def _adopt_descriptors(targets: list[int], received: list[int]) -> None:
    """Put each received descriptor at the number the client had it at (stdin at 0, fd:N at N)."""
    moved = []
    for fd in received:
        moved.append(fcntl.fcntl(fd, fcntl.F_DUPFD, _HIGH_FD + 64))
        os.close(fd)
    for target, fd in zip(targets, moved):
        os.dup2(fd, target, inheritable=True)
        os.close(fd)


def _standard_streams() -> None:
    """Fresh text streams over descriptors 0-2, line-buffered on a terminal as at start-up."""
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
        try:
            os.fstat(fd)
        except OSError:
            continue
        line = os.isatty(fd) or fd == 2
        stream = open(fd, "r" if fd == 0 else "w", buffering=1 if line else -1, encoding="utf-8",
                      errors="surrogateescape" if fd == 0 else "backslashreplace", closefd=False)
        setattr(sys, name, stream)


def _worker(conn: socket.socket, req: dict[str, Any], fds: list[int], home: Path) -> int:
    """Become the command: descriptors, directory, environment, umask; run it; its exit status."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as CPython sets it at start-up
    _adopt_descriptors([int(n) for n in req["fds"]][: len(fds)], fds)
    _standard_streams()
    os.chdir(req["cwd"])
    os.umask(int(req["umask"]))
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in req["env"].items()})
    time.tzset()
    sys.argv = ["twcactl", *map(str, req["argv"])]
    _reply(conn, {"pid": os.getpid()})
    early = _store_url_to_connect(home, [str(a) for a in req["argv"]])
    if early is not None:
        from twcactl.store.postgres import connect_early

        connect_early(early)
    from twcactl.cli import run

    try:
        run([str(a) for a in req["argv"]])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: B036 - a worker must always report a status
        code = 70
    if early is not None:
        from twcactl.store.postgres import close_early

        close_early()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def _handle(conn: socket.socket, info: ResidentInfo, listener: socket.socket) -> str | None:
    """Serve one connection; ``"stop"`` when the client asked the resident to stop."""
    if not _same_user(conn):
        return None
    req, fds = _receive(conn)
    if req.get("control") == "status":
        _reply(conn, info.as_json())
        return None
    if req.get("control") == "stop":
        _reply(conn, {"stopping": True})
        return "stop"
    refusal = _refusal(req)
    if refusal is not None:
        for fd in fds:
            os.close(fd)
        _reply(conn, {"refused": refusal})
        return None
    info.commands += 1
    pid = os.fork()
    if pid == 0:  # the worker
        code = 70
        try:
            listener.close()
            high = fcntl.fcntl(conn.fileno(), fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
            conn.detach()
            conn = socket.socket(fileno=high)
            code = _worker(conn, req, fds, Path(info.home))
            _reply(conn, {"exit": code})
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    return None


def _store_modules(home: Path) -> tuple[str, ...]:
    """:data:`PG_WARM_MODULES` when ``home``'s config.toml names a PostgreSQL store and psycopg is installed,
    else nothing (a home whose config cannot be read is left for the commands to report)."""
    from importlib.util import find_spec

    from twcactl.errors import TwcaError
    from twcactl.store import store_url

    try:
        shared = bool(store_url(home))
    except (TwcaError, OSError):
        return ()
    return PG_WARM_MODULES if shared and find_spec("psycopg") is not None else ()


#: Command groups that open the home's store: a node on PostgreSQL starts their connection early.
_STORE_GROUPS = frozenset({"account", "acme", "ca", "card", "cert", "crl", "domain", "log", "notify", "ocsp",
                           "operator"})
_OTHER_GROUPS = frozenset({"chain", "csr", "doctor", "pfx", "resident", "serve", "store", "subscriber", "trust"})


def _store_url_to_connect(home: Path, argv: list[str]) -> str | None:
    """The PostgreSQL URL a forwarded command will connect to, when it can be known before it runs (issue 29,
    :func:`twcactl.store.postgres.connect_early`): a command of a group that opens the store, no store
    password (``--store-password`` or ``$TWCACTL_STORE_PASSWORD_SOURCE``: the command reads its SOURCE
    itself), no remote server (``--server`` / ``$TWCACTL_SERVER``), and ``home``'s config.toml naming one."""
    if ("--store-password" in argv or "--server" in argv or os.environ.get("TWCACTL_STORE_PASSWORD_SOURCE")
            or os.environ.get("TWCACTL_SERVER")):
        return None
    group = next((a for a in argv if a in _STORE_GROUPS or a in _OTHER_GROUPS), None)
    if group not in _STORE_GROUPS:
        return None
    if PG_WARM_MODULES[0] not in sys.modules:  # a home on SQLite (the resident imported no driver)
        return None
    from twcactl.errors import TwcaError
    from twcactl.store import store_url

    try:
        return store_url(home) or None
    except (TwcaError, OSError):
        return None


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def serve_forever(home: Path, *, idle_timeout: float, ready: Any = None) -> None:
    """Listen for ``home``'s commands until stopped, or idle for ``idle_timeout`` seconds (0: never).

    Args:
        ready: called with the :class:`ResidentInfo` once the socket accepts connections.

    Raises:
        StateError: another resident serves the home, or the socket directory is not private (exit 5).
    """
    path = resident_socket_path(home)
    _private_dir(path.parent)
    if status(home) is not None:
        raise StateError(f"a resident process already serves {home}.")
    for module in (*WARM_MODULES, *_store_modules(home)):
        importlib.import_module(module)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(64)
    info = ResidentInfo(home=str(home.resolve()), socket=str(path), pid=os.getpid())
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    if ready is not None:
        ready(info)
    last = time.monotonic()
    try:
        while not stopping:
            readable, _, _ = select.select([listener], [], [], 1.0)
            _reap()
            if not readable:
                if idle_timeout and time.monotonic() - last > idle_timeout:
                    break
                continue
            conn, _ = listener.accept()
            last = time.monotonic()
            with conn:
                try:
                    if _handle(conn, info, listener) == "stop":
                        break
                except (OSError, ConnectionError, ValueError, KeyError, TypeError):
                    continue
    finally:
        with contextlib.suppress(OSError):
            if path.exists() and info.pid == os.getpid():
                path.unlink()
        listener.close()


def request(home: Path, control: str) -> dict[str, Any] | None:
    """Send a control request (``status`` or ``stop``) to ``home``'s resident; its answer, or None."""
    path = resident_socket_path(home)
    if not private_dir_ok(path.parent):
        return None
    from twcactl.forwarder import send_message

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(path))
            send_message(sock, {"control": control})
            answer = json.loads(sock.makefile("rb").readline() or b"null")
        except (OSError, ValueError):
            return None
    return answer if isinstance(answer, dict) else None


def status(home: Path) -> dict[str, Any] | None:
    """The running resident's :meth:`ResidentInfo.as_json`, or None when none serves ``home``."""
    return request(home, "status")


def start(home: Path, *, idle_timeout: float, wait: float = 30.0) -> dict[str, Any]:
    """Start a detached resident for ``home`` and return its status once it accepts commands.

    Raises:
        StateError: one already runs, or it did not come up within ``wait`` seconds (exit 5).
    """
    running = status(home)
    if running is not None:
        raise StateError(f"a resident process already serves {home} (pid {running.get('pid')}).")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # detach: a new session, no terminal, then the server itself in a grandchild
        os.close(read_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        _detach_streams()
        code = 0
        try:
            serve_forever(home, idle_timeout=idle_timeout, ready=lambda _info: os.write(write_end, b"1"))
        except BaseException:  # noqa: B036 - a detached server has no one to report to
            code = 1
        os._exit(code)
    os.close(write_end)
    os.waitpid(pid, 0)
    ready, _, _ = select.select([read_end], [], [], wait)
    started = bool(ready) and os.read(read_end, 1) == b"1"
    os.close(read_end)
    answer = status(home) if started else None
    if answer is None:
        raise StateError(f"the resident process for {home} did not start.")
    return answer


def _detach_streams() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
