"""The SQLite engine: one connection, its transactions, the schema and ``meta``.

Every state change is one ``BEGIN IMMEDIATE`` transaction on a connection
opened with ``isolation_level=None``, WAL journal and ``synchronous=FULL``
(architecture.md, "The store"): a deferred transaction that upgrades from
read to write fails at once under concurrency, whatever the timeout.  A busy
home is waited for up to the lock timeout and then reported as
:class:`BusyError` (exit 75).  SQLite's locking needs a local filesystem.

A file that is not a twcactl database (empty, another program's SQLite
file, random bytes) is refused before anything is written to it (exit 3).
A home whose directory cannot be written (a read-only mount, an auditor's
snapshot) is opened read-only: ``mode=ro``, which still reads committed
transactions in a ``-wal`` file beside it; when SQLite cannot open it so
(no ``-shm`` can be made) and no non-empty ``-wal`` exists, ``immutable=1``
(everything committed is then in the main file).  Every write transaction
on such a home is refused (exit 5).  A full disk inside a transaction rolls
it back and exits 3 (docs/guarantees.md).

This is the only module besides :mod:`twcactl.store.executor` that touches
``sqlite3``; nothing of it leaves the engine.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from twcactl.errors import BusyError, InputError, StateError
from twcactl.store.executor import SqliteExecutor
from twcactl.store.schema import migration_steps, new_schema, statements

_BUSY_HINT = "retry, or raise --lock-timeout"


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _is_full(exc: BaseException) -> bool:
    """SQLITE_FULL: the disk (or the quota) holding the database is full."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and (code is not None and code & 0xFF == sqlite3.SQLITE_FULL
                                               or "disk is full" in str(exc))


def _not_ours(db_path: Path) -> InputError:
    return InputError(f"{db_path} is not a twcactl database.",
                      hint="point --home at a CA home made by twcactl ca init (or restore a backup)")


def _environment_error(db_path: Path, exc: sqlite3.Error) -> InputError | None:
    """An exit-3 error for a database SQLite cannot read or write because of its surroundings (a full
    disk, an I/O error, a file it cannot open), or None when ``exc`` is about the file's content."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code not in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return None
    full = code == sqlite3.SQLITE_FULL
    with contextlib.suppress(OSError):
        full = full or os.statvfs(db_path.parent).f_bavail == 0
    if full:
        return InputError(f"no space left on the device holding {db_path}; nothing was changed.",
                          hint="free some space and run the command again")
    name = getattr(exc, "sqlite_errorname", "") or str(exc)
    return InputError(f"{db_path} cannot be read or written ({name}); nothing was changed.")


def _open_read_only(db_path: Path, lock_timeout: float) -> sqlite3.Connection:
    """Open ``db_path`` read-only: ``mode=ro`` first, ``immutable=1`` when that cannot work (module docstring)."""
    base = "file:" + quote(str(db_path.absolute()))
    conn = sqlite3.connect(base + "?mode=ro", uri=True, isolation_level=None, timeout=lock_timeout)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        wal = db_path.with_name(db_path.name + "-wal")
        if "unable to open" not in str(exc) or (wal.exists() and wal.stat().st_size > 0):
            raise InputError(f"{db_path} cannot be read in this read-only home: {exc}.",
                             hint="copy the home somewhere writable, or open it once where it can be written") from exc
    return sqlite3.connect(base + "?immutable=1", uri=True, isolation_level=None, timeout=lock_timeout)


def _require_ours(conn: sqlite3.Connection, db_path: Path) -> None:
    """Refuse a database without twcactl's ``meta`` table and schema version, before anything is written to it."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if _is_busy(exc):
            raise BusyError("the CA home is busy (another twcactl is writing).", hint=_BUSY_HINT) from exc
        raise _environment_error(db_path, exc) or _not_ours(db_path) from exc
    except sqlite3.DatabaseError as exc:
        raise _not_ours(db_path) from exc
    if row is None or not str(row[0]).isdigit():
        raise _not_ours(db_path)


class SqliteEngine:
    """An open SQLite database of a CA home.  Make one with :meth:`connect`."""

    def __init__(self, conn: sqlite3.Connection, *, read_only: bool = False, db_path: Path | None = None) -> None:
        self._conn = conn
        self.db = SqliteExecutor(conn)
        #: True when the home cannot be written: every write transaction is refused (exit 5).
        self.read_only = read_only
        self.db_path = db_path

    @classmethod
    def connect(cls, db_path: Path, *, lock_timeout: float, create: bool = False, read_only: bool = False,
                mode: int = 0o600) -> SqliteEngine:
        """Open a twcactl database (or, with ``create``, make a new empty file of ``mode``) with the pragmas above.

        Args:
            db_path: the database file.
            lock_timeout: seconds to wait for a busy database.
            create: make a new database file (it must not exist), created with ``mode`` whatever the umask;
                SQLite gives its ``-wal`` and ``-shm`` files the same mode.
            read_only: open without writing anything (a read-only home; module docstring).

        Raises:
            BusyError: the database stayed locked past ``lock_timeout`` seconds (exit 75).
            InputError: the file is not a twcactl database (exit 3), or the disk is full when creating it.
        """
        if create:
            try:
                os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
                os.chmod(db_path, mode)
            except OSError as exc:
                raise InputError(f"cannot create the database {db_path}: {exc.strerror}.") from exc
        try:
            if read_only:
                conn = _open_read_only(db_path, lock_timeout)
            else:
                conn = sqlite3.connect(db_path, isolation_level=None, timeout=lock_timeout)
        except sqlite3.DatabaseError as exc:
            raise _not_ours(db_path) from exc
        conn.row_factory = sqlite3.Row
        try:
            if not create:
                _require_ours(conn, db_path)
            if read_only:
                conn.execute("PRAGMA foreign_keys=ON")
                return cls(conn, read_only=True, db_path=db_path)
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
            raise _environment_error(db_path, exc) or _not_ours(db_path) from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _not_ours(db_path) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, db_path=db_path)

    def _refuse_read_only(self) -> None:
        if self.read_only:
            home = self.db_path.parent if self.db_path is not None else "here"
            raise StateError(f"the CA home {home} is read-only (a read-only mount, an immutable or unwritable "
                             "directory); this command changes it, so it is refused and nothing was changed.",
                             hint="read-only commands (list, show, log, log verify, ca check --no-repair) work here")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception.

        Raises:
            BusyError: the write lock was not had within the lock timeout (exit 75).
            StateError: the home is read-only (exit 5).
            InputError: the disk holding the database is full; the transaction was rolled back (exit 3).
        """
        self._refuse_read_only()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise BusyError("the CA home is busy (another twcactl is writing); nothing was changed.",
                                hint=_BUSY_HINT) from exc
            if _is_full(exc):
                raise self._full() from exc
            raise
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:  # SQLite may already have rolled back (SQLITE_FULL does)
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            if _is_full(exc):
                raise self._full() from exc
            if isinstance(exc, sqlite3.Error) and self.db_path is not None:
                environment = _environment_error(self.db_path, exc)  # an I/O error: exit 3, rolled back
                if environment is not None:
                    raise environment from exc
            raise

    def _full(self) -> InputError:
        return InputError(f"no space left on the device holding {self.db_path}; nothing was changed.",
                          hint="free some space and run the command again")

    # ----- schema -----
    def create_schema(self) -> None:
        """Create every table at :data:`SCHEMA_VERSION` with ``schema_version`` and ``created_at`` in ``meta``.

        DDL is transactional in SQLite: a crash leaves either no schema or all of it.
        """
        with self.transaction():
            scripts, meta = new_schema()
            for script in scripts:
                self._script(script)
            for key, value in meta.items():
                self.set_meta(key, value)

    def migrate(self) -> None:
        """Run the forward migrations from the stored version, one transaction each.

        Raises:
            StateError: the home was written by a newer twcactl (exit 5).
        """
        steps = migration_steps(self.schema_version(), what="CA home")
        if steps:
            self._refuse_read_only()
        for version, script in steps:
            with self.transaction():
                self._script(script)
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
        if not self.read_only:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
