"""The thin client of the resident process (issue 29): hand a command line to a warm twcactl.

Python's start-up and twcactl's imports cost more than a certificate: a script that calls
``twcactl cert issue`` in a loop pays them every time.  As Mercurial's chg and mypy's dmypy do,
``twcactl resident start`` keeps one process with everything imported; this client, which imports
only the standard library, passes it the command: arguments, working directory, environment,
umask and the open file descriptors themselves (stdin, stdout, stderr and any ``fd:N`` SOURCE),
so the forked worker reads and writes exactly what an in-process run would, and prompts reach
the same terminal.  The worker's exit status becomes this process's.

Nothing is forwarded, and the command runs in-process as before, when no resident process serves
the home, when it runs another version or another installation of twcactl, or when
``TWCACTL_NO_RESIDENT`` is set.  Once the worker has started, the command is never run a second
time here (it may have changed the books): a lost connection is reported as exit 70.

The wire format (one Unix stream socket per command, same user only, checked by ``SO_PEERCRED``):
a 4-byte big-endian length and a JSON request ``{"version", "package", "argv", "cwd", "env",
"umask", "fds"}`` sent with the descriptors (``SCM_RIGHTS``); then JSON lines back:
``{"pid": N}`` when the worker starts, ``{"exit": N}`` when it ends, or ``{"refused": why}``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

from twcactl import __version__
from twcactl.platform_dirs import default_home, resident_socket_path

__all__ = ["MAX_FDS", "NOT_FORWARDED", "PROTOCOL", "forward", "package_dir", "parse_globals", "private_dir_ok",
           "send_message"]

#: Bumped whenever the wire format changes; part of the version check.
PROTOCOL = 1
#: At most this many descriptors are passed (SCM_RIGHTS allows 253 on Linux).
MAX_FDS = 64
#: Exit status when the worker's status was lost after it started (cli-contract.md: internal error).
LOST = 70
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def package_dir() -> str:
    """The directory of the running twcactl package: client and resident must be one installation."""
    return str(Path(__file__).resolve().parent)


def private_dir_ok(directory: Path) -> bool:
    """True when ``directory`` is a real directory owned by this user with no access for others."""
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    import stat

    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077 == 0


#: Commands that are never forwarded: the resident's own, and the long-running server.
NOT_FORWARDED = frozenset({"resident", "serve"})


def parse_globals(argv: list[str]) -> tuple[Path, str | None]:
    """The CA home a command line names and its sub-command.

    The home is ``--home`` among the global options, else ``$TWCACTL_HOME``, else the platform default;
    only options before the sub-command are global (click reads them there), so the scan stops at the
    first word that is not an option: the sub-command (None when there is none).
    """
    takes_value = {"--home", "--lock-timeout", "--store-password"}
    home: Path | None = None
    command: str | None = None
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--home" and i + 1 < len(argv):
            home = Path(argv[i + 1])
        elif word.startswith("--home="):
            home = Path(word.split("=", 1)[1])
        elif not word.startswith("-"):
            command = word
            break
        i += 2 if word in takes_value else 1
    if home is None:
        env = os.environ.get("TWCACTL_HOME")
        home = Path(env) if env else default_home()
    return home, command


def send_message(sock: socket.socket, document: dict[str, object], fds: list[int] | None = None) -> None:
    """One length-prefixed JSON document, with ``fds`` passed alongside (``SCM_RIGHTS``)."""
    data = json.dumps(document).encode("utf-8", "surrogateescape")
    frame = struct.pack(">I", len(data)) + data
    if fds:
        socket.send_fds(sock, [frame[:4]], fds)
        sock.sendall(frame[4:])
    else:
        sock.sendall(frame)


def _open_fds() -> list[int]:
    """The descriptors this process has open (stdin, stdout, stderr and any the caller passed on)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return [0, 1, 2]
    fds = []
    for name in names:
        fd = int(name)
        try:
            os.fstat(fd)  # the listing's own descriptor is already closed
        except OSError:
            continue
        fds.append(fd)
    return sorted(fds)[:MAX_FDS]


def _connect(path: Path) -> socket.socket | None:
    if not private_dir_ok(path.parent):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def forward(argv: list[str]) -> int | None:
    """Run ``argv`` in the resident process for its home; the exit status, or None to run in-process.

    Returns None (nothing was run) when no resident process answers for the home or it refuses the
    command (another version or installation); an int once the worker started, whatever happened
    after (never None then: the command may have changed the books).
    """
    if os.environ.get("TWCACTL_NO_RESIDENT"):
        return None
    try:
        home, command = parse_globals(argv)
        if command is None or command in NOT_FORWARDED:
            return None
        sock = _connect(resident_socket_path(home))
    except (OSError, ValueError):
        return None
    if sock is None:
        return None
    with sock:
        umask = os.umask(0o077)
        os.umask(umask)
        fds = _open_fds()
        fds = [fd for fd in fds if fd != sock.fileno()]
        request = {"version": __version__, "protocol": PROTOCOL, "package": package_dir(), "argv": argv,
                   "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask, "fds": fds}
        try:
            send_message(sock, request, fds)
            reader = sock.makefile("rb")
            first = json.loads(reader.readline() or b"{}")
        except (OSError, ValueError):
            return None
        if "pid" not in first:
            return None  # refused (or nothing said): nothing ran
        return _wait(reader, int(first["pid"]))


def _wait(reader: object, pid: int) -> int:
    """Relay signals to the worker until it reports its exit status."""
    def relay(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for signum in _SIGNALS:
        signal.signal(signum, relay)
    try:
        line = reader.readline()  # type: ignore[attr-defined]
        return int(json.loads(line)["exit"])
    except (OSError, ValueError, KeyError, TypeError):
        sys.stderr.write("twcactl: the resident process ended without an exit status; "
                         "the command may have run (check before running it again).\n")
        return LOST
