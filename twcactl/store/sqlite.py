"""The SQLite engine: one connection, its transactions, the schema and ``meta``.

Every state change is one ``BEGIN IMMEDIATE`` transaction on a connection
opened with ``isolation_level=None``, WAL journal and ``synchronous=FULL``
(architecture.md, "The store"): a deferred transaction that upgrades from
read to write fails at once under concurrency, whatever the timeout.  A busy
home is waited for up to the lock timeout and then reported as
:class:`BusyError` (exit 75).  SQLite's locking needs a local filesystem.

This is the only module besides :mod:`twcactl.store.executor` that touches
``sqlite3``; nothing of it leaves the engine.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from twcactl.errors import BusyError, InputError, StateError
from twcactl.rules.times import rfc3339, utcnow
from twcactl.store.executor import SqliteExecutor
from twcactl.store.schema import MIGRATIONS, SCHEMA_V1, SCHEMA_VERSION, statements

_BUSY_HINT = "retry, or raise --lock-timeout"


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class SqliteEngine:
    """An open SQLite database of a CA home.  Make one with :meth:`connect`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.db = SqliteExecutor(conn)

    @classmethod
    def connect(cls, db_path: Path, *, lock_timeout: float) -> SqliteEngine:
        """Open (or create) the database file with the pragmas above.

        Raises:
            BusyError: the database stayed locked past ``lock_timeout`` seconds (exit 75).
            InputError: the file is not an SQLite database (exit 3).
        """
        try:
            conn = sqlite3.connect(db_path, isolation_level=None, timeout=lock_timeout)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{db_path} is not a twcactl database.") from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # A big home's index pages stay in memory across a batch: with 2 MB (the default) each insert
            # into 200,000-row indexes re-reads pages through system calls; 16 MB is enough (measured).
            conn.execute("PRAGMA cache_size=-16384")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.OperationalError as exc:
            conn.close()
            if _is_busy(exc):
                raise BusyError("the CA home is busy (another twcactl is writing).", hint=_BUSY_HINT) from exc
            raise InputError(f"{db_path} is not a twcactl database.") from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise InputError(f"{db_path} is not a twcactl database.") from exc
        return cls(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception.

        Raises:
            BusyError: the write lock was not had within the lock timeout (exit 75).
        """
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise BusyError("the CA home is busy (another twcactl is writing); nothing was changed.",
                                hint=_BUSY_HINT) from exc
            raise
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # ----- schema -----
    def create_schema(self) -> None:
        """Create every table at :data:`SCHEMA_VERSION` with ``schema_version`` and ``created_at`` in ``meta``.

        DDL is transactional in SQLite: a crash leaves either no schema or all of it.
        """
        with self.transaction():
            self._script(SCHEMA_V1)
            self.set_meta("schema_version", str(SCHEMA_VERSION))
            self.set_meta("created_at", rfc3339(utcnow()))

    def migrate(self) -> None:
        """Run the forward migrations from the stored version, one transaction each.

        Raises:
            StateError: the home was written by a newer twcactl (exit 5).
        """
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise StateError(
                f"this CA home has schema version {version}; this twcactl knows up to {SCHEMA_VERSION}.",
                hint="upgrade twcactl",
            )
        while version < SCHEMA_VERSION:
            with self.transaction():
                self._script(MIGRATIONS[version - 1])
                version += 1
                self.set_meta("schema_version", str(version))

    def schema_version(self) -> int:
        """The database's schema version (0 when it has none)."""
        value = self.meta("schema_version")
        return int(value) if value else 0

    def _script(self, script: str) -> None:
        # executescript() would commit the caller's transaction; run statement by statement instead
        for statement in statements(script):
            self._conn.execute(statement)

    # ----- meta -----
    def meta(self, key: str) -> str | None:
        """A value of the ``meta`` table, or None."""
        row = self.db.one("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row["value"]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Set a ``meta`` value (inside a transaction)."""
        self.db.run("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value))

    # ----- maintenance -----
    def integrity_check(self) -> str | None:
        """``PRAGMA integrity_check``: None when SQLite finds the file sound, else its first complaint."""
        row = self._conn.execute("PRAGMA integrity_check").fetchone()
        if row is None:
            return "no answer"
        return None if row[0] == "ok" else str(row[0])

    def backup_to(self, target: Path) -> int:
        """Copy the database to ``target`` with SQLite's online backup API.

        Safe while other twcactl processes write (a plain copy of a live WAL
        database is not); the copy uses a rollback journal, so it is one
        self-contained file.

        Returns:
            The number of certificate records in the copy.
        """
        copy = sqlite3.connect(target)
        try:
            self._conn.backup(copy)
            certificates = int(copy.execute("SELECT COUNT(*) FROM certificates").fetchone()[0])
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
        return certificates

    def checkpoint(self) -> None:
        """Fold the WAL back into the database: a WAL of several hundred MB slows every later reader."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
