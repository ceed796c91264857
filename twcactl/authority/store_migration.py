"""``twcactl store migrate``: move a CA's records between SQLite and PostgreSQL (issue 14).

The copy runs while the source's write lock is held (SQLite's ``BEGIN
IMMEDIATE``; PostgreSQL's advisory write lock), so no writer can change the
source between the copy and the switch.  Before the home is switched the
target is verified: the same number of rows in every table, every account's
balance equal to the sum of its ledger (domain.md §3), and the activity log's
hash chain intact with the same head (:func:`twcactl.authority.audit.verify_log`).
Only then is config.toml rewritten to name the target (the switch itself is
one atomic file rename).  A target that fails verification is emptied again;
the source is untouched and stays in use.

After the switch the old store is retired: an SQLite file is renamed
``twcactl.db.moved``; a PostgreSQL database gets ``meta`` ``moved_to`` and
every node refuses to open it (exit 5), so no node keeps writing to records
that are no longer the CA's.  Stop the other nodes' twcactl processes before
migrating (docs/scale-out.md).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from twcactl.authority.audit import log_head, verify_log
from twcactl.errors import StateError, UsageError
from twcactl.rules.settings import is_postgres_url, store_url_problem
from twcactl.store import MOVED_META, Store
from twcactl.store.home import DB_MODE, DB_NAME
from twcactl.store.interface import Engine
from twcactl.store.postgres import PostgresEngine, redact
from twcactl.store.sqlite import SqliteEngine
from twcactl.store.transfer import TABLES, copy_records, row_count

#: The name an SQLite file gets once its records moved to PostgreSQL.
MOVED_DB_NAME = DB_NAME + ".moved"


@dataclass(frozen=True)
class MigrationReport:
    """What ``store migrate`` copied and verified.

    Attributes:
        source / target: ``"sqlite"`` or the PostgreSQL URL (without a password).
        rows: rows copied per table.
        accounts: accounts whose balance equals their ledger's sum on the target.
        log_entries: entries of the activity log verified on the target.
        log_head: ``{"seq", "hash"}`` of the newest entry, the same on both sides.
    """

    source: str
    target: str
    rows: dict[str, int]
    accounts: int
    log_entries: int
    log_head: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The JSON document of ``store migrate --json``."""
        return {"source": self.source, "target": self.target, "rows": self.rows, "accounts": self.accounts,
                "log_entries": self.log_entries, "log_head": self.log_head}


def parse_target(store: Store, text: str) -> str:
    """``--to`` as a store URL: ``""`` for the home's SQLite file (``sqlite``, or the path of that file or
    of the home), else a ``postgresql://`` URL without a password.

    Raises:
        UsageError: anything else, or the store the home already uses (exit 2).
    """
    if is_postgres_url(text):
        problem = store_url_problem(text)
        if problem is not None:
            raise UsageError(f"--to {problem}.")
        url = text
    elif text in ("sqlite", "sqlite:") or Path(text).resolve() in (store.db_path.resolve(), store.home.resolve()):
        url = ""
    else:
        raise UsageError(f"--to takes a postgresql:// URL, or sqlite (this home's {DB_NAME}), not {text!r}.")
    if url == store.store_url:
        raise UsageError("the home already keeps its records there.")
    return url


def _describe(url: str) -> str:
    return redact(url) if url else "sqlite"


def migrate_store(store: Store, to: str, *, operator: str, password: str | None = None) -> MigrationReport:
    """Move the records of the open home ``store`` to ``to`` and switch the home to it.

    Args:
        to: ``--to``: a ``postgresql://`` URL (an empty database) or ``sqlite`` (see :func:`parse_target`).
        operator: who asks; a manager of the CA.
        password: the PostgreSQL side's password (from a SOURCE), None for libpq's own files.

    Returns:
        What was copied and verified.

    Raises:
        UsageError: a bad ``--to`` (exit 2).
        StateError: not a manager, a read-only home, a target that already holds records, or a copy that
            failed verification (nothing switched; exit 5).
        BusyError: the source or target is busy or unreachable (exit 75; nothing switched).
    """
    url = parse_target(store, to)
    store.operators.require_manager(operator)
    if store.read_only:
        raise StateError(f"the CA home {store.home} is read-only; it cannot be switched to another store.")
    target, cleanup = _open_target(store, url, password)
    try:
        with store.transaction():  # every writer of the source waits until the home points elsewhere
            store.log.append(operator=operator, action="store.migrate",
                             details={"from": _describe(store.store_url), "to": _describe(url)})
            rows = copy_records(store.engine, target, source_locked=True).rows
            report = _verify(store, Store(store.home, target), rows, url)
            settings = store.settings()
            if url:
                _switch_to_postgresql(store, target, settings)
            else:
                _switch_to_sqlite(store, target, settings)
                cleanup = None  # the file is the home's database now
            if store.shared:
                store.set_meta(MOVED_META, _describe(url))
    except BaseException:
        if cleanup is not None:
            with contextlib.suppress(Exception):
                cleanup()
        raise
    finally:
        target.close()
    if not store.shared:  # the old SQLite file is retired: the home's config names PostgreSQL now
        store.close()
        with contextlib.suppress(OSError):
            os.replace(store.db_path, store.home / MOVED_DB_NAME)
    return report


def _open_target(store: Store, url: str, password: str | None) -> tuple[Engine, Any]:
    """The target engine with an empty schema, and a callable that undoes it on failure."""
    if url:
        engine = PostgresEngine.connect(url, password=password, lock_timeout=store.lock_timeout)
        try:
            if engine.has_schema():
                engine.migrate()  # an empty schema left by an earlier attempt; copy_records refuses records
            else:
                engine.create_schema()
        except BaseException:
            engine.close()
            raise
        return engine, engine.drop_schema
    if store.db_path.exists():
        raise StateError(f"{store.db_path} exists already; move it away before migrating back to SQLite.")
    fd, name = tempfile.mkstemp(prefix=f".{DB_NAME}.migrate-", dir=store.home)
    os.close(fd)
    path = Path(name)
    path.unlink()
    sqlite = SqliteEngine.connect(path, lock_timeout=store.lock_timeout, create=True, mode=DB_MODE)
    sqlite.create_schema()

    def remove() -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")

    return sqlite, remove


def _verify(source: Store, target: Store, rows: dict[str, int], url: str) -> MigrationReport:
    """Compare the copy with the source (row counts, balances == ledgers, the log chain and its head).

    Raises:
        StateError: the first difference (exit 5).
    """
    for table, _identity in TABLES:
        theirs = row_count(target.engine, table)
        ours = row_count(source.engine, table)
        if theirs != ours:
            raise StateError(f"the copy holds {theirs} rows of {table}, the source {ours}; nothing was switched.")
    totals = target.accounts.ledger_totals()
    for t in totals:
        if t.total != t.balance:
            raise StateError(f"account {t.account_id}: the copied ledger adds up to {t.total}, the balance is "
                             f"{t.balance}; nothing was switched.")
    count, problems = verify_log(target)
    if problems:
        raise StateError(f"the copied activity log does not verify: {problems[0].message}; nothing was switched.")
    head, source_head = log_head(target), log_head(source)
    if head != source_head:
        raise StateError("the copied activity log ends elsewhere than the source's; nothing was switched.")
    return MigrationReport(source=_describe(source.store_url), target=_describe(url), rows=rows,
                           accounts=len(totals), log_entries=count, log_head=head.to_json())


def _switch_to_postgresql(source: Store, target: Engine, settings: Any) -> None:
    """Put the CA's settings into the database and point config.toml at it (the switch)."""
    node = Store(source.home, target)
    node.write_settings(settings)  # shared keys to the database; config.toml: store + node-local keys


def _switch_to_sqlite(source: Store, target: Engine, settings: Any) -> None:
    """Move the verified SQLite file into place and write the whole config.toml without ``store``."""
    path = Path(getattr(target, "db_path", "") or "")
    target.checkpoint()
    target.close()
    os.replace(path, source.db_path)
    os.chmod(source.db_path, DB_MODE)
    node = Store(source.home, SqliteEngine.connect(source.db_path, lock_timeout=source.lock_timeout))
    try:
        node.write_settings(replace(settings, store=""))
    finally:
        node.close()
