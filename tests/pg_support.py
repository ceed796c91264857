"""A real PostgreSQL server for the tests (testing-real-components.md, "PostgreSQL").

One server per test session, started in a temporary directory as the
``postgres`` user (PostgreSQL refuses to run as root), listening on a Unix
socket only, stopped at the end.  Each test gets its own database from
:meth:`PgServer.new_database`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def available() -> str | None:
    """None when a server can be started here, else why not."""
    if not (PG_BIN / "pg_ctl").exists():
        return "PostgreSQL 15 is not installed (apt-get install postgresql)"
    if os.geteuid() != 0:
        return "starting PostgreSQL as the postgres user needs root"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_base(base: Path | None) -> str:
    """``base`` if the postgres user can enter it and a socket path in it fits (107 bytes), else /tmp."""
    if base is None or len(str(base.resolve())) > 60:
        return "/tmp"
    probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(base.resolve())], check=False,
                           capture_output=True)
    return str(base.resolve()) if probe.returncode == 0 else "/tmp"


def _as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True)


@dataclass
class PgServer:
    """A running server: its socket directory and port; :meth:`url` names a database on it."""

    directory: Path
    port: int
    _names: itertools.count[int]
    #: False (the tests): fsync and full-page writes off, as throw-away test servers run; True for measurements
    durable: bool = False

    @classmethod
    def start(cls, *, durable: bool = False, base: Path | None = None) -> PgServer:
        """Start a server in a new directory under ``base`` (when the ``postgres`` user can reach it and
        the socket's path stays short), else under /tmp."""
        directory = Path(tempfile.mkdtemp(prefix="twcactl-pg-", dir=_server_base(base)))
        shutil.chown(directory, "postgres", "postgres")
        port = _free_port()
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(directory / "data"), "-A", "trust", "-U", "postgres")
        server = cls(directory, port, itertools.count(1), durable)
        server.resume()
        return server

    def resume(self) -> None:
        """Start (or restart after :meth:`pause`) the server and wait until it accepts connections."""
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-o",
                     f"-k {self.directory} -p {self.port} -c listen_addresses='' -c max_connections=200"
                     + ("" if self.durable else " -c fsync=off -c full_page_writes=off"),
                     "-l", str(self.directory / "log"), "-w", "start")

    def pause(self) -> None:
        """Stop the server (fast shutdown: open transactions are rolled back)."""
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self.pause()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """A libpq URI for ``database`` over the server's Unix socket."""
        return f"postgresql://postgres@/{database}?host={self.directory}&port={self.port}"

    def new_database(self) -> str:
        """Create an empty database and return its URI."""
        import psycopg

        name = f"twcactl_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
