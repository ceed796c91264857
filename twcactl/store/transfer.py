"""Copying a CA's records from one engine to another (``twcactl store migrate``).

Table by table in foreign-key order, rows read by column name from the source
inside one consistent read (SQLite: the connection's own read transaction;
PostgreSQL: a REPEATABLE READ snapshot) and written to the target in one
transaction, so the target holds all of it or none.  Identity columns keep
their values (the log's ``seq``, ledger and CRL ids); on PostgreSQL their
sequences are then moved past the copied values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from twcactl.errors import StateError
from twcactl.store.interface import Engine

#: Tables in the order a copy must fill them (foreign keys point backwards), with their identity column if any.
TABLES: tuple[tuple[str, str | None], ...] = (
    ("meta", None), ("cas", None), ("operators", None), ("accounts", None), ("account_aliases", None),
    ("account_domains", None), ("ledger", "id"), ("certificates", None), ("activity_log", "seq"), ("crls", "id"),
)
_BATCH = 2_000


@dataclass(frozen=True)
class TransferCounts:
    """Rows copied per table."""

    rows: dict[str, int]


def _columns(engine: Engine, table: str) -> list[str]:
    row = engine.db.one(f"SELECT * FROM {table} LIMIT 1")
    if row is None:
        return []
    keys = row.keys() if hasattr(row, "keys") else []
    return [k for k in keys if k != "ord"]


@contextlib.contextmanager
def _consistent_read(engine: Engine) -> Iterator[None]:
    snapshot = getattr(engine, "snapshot", None)
    if snapshot is not None:
        with snapshot():
            yield
    else:
        with engine.transaction():
            yield


def copy_records(source: Engine, target: Engine) -> TransferCounts:
    """Copy every table of ``source`` into the empty schema of ``target``.

    Both engines must be at the same schema version (the caller migrates the
    source first); the target's meta (schema version, created_at) is replaced
    by the source's.

    Raises:
        StateError: the target already holds certificates or log entries, or the versions differ (exit 5).
    """
    if source.schema_version() != target.schema_version():
        raise StateError(f"the source has schema version {source.schema_version()}, the target "
                         f"{target.schema_version()}; open the source with this twcactl first to migrate it.")
    for table in ("certificates", "activity_log", "accounts"):
        if target.db.one(f"SELECT 1 AS x FROM {table} LIMIT 1") is not None:
            raise StateError(f"the target already holds records ({table}); migrate into an empty database.")
    counts: dict[str, int] = {}
    with _consistent_read(source), target.transaction():
        target.db.run("DELETE FROM meta")
        for table, _identity in TABLES:
            columns = _columns(source, table)
            if not columns:
                counts[table] = 0
                continue
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
            batch: list[tuple[object, ...]] = []
            total = 0
            for row in source.db.iterate(f"SELECT {', '.join(columns)} FROM {table}"):
                batch.append(tuple(row[c] for c in columns))
                if len(batch) >= _BATCH:
                    target.db.run_many(sql, batch)
                    total += len(batch)
                    batch = []
            if batch:
                target.db.run_many(sql, batch)
                total += len(batch)
            counts[table] = total
        if target.db.dialect.name == "postgresql":
            for table, identity in TABLES:
                if identity:
                    target.db.one(f"SELECT setval(pg_get_serial_sequence('{table}', '{identity}'),"
                                  f" COALESCE((SELECT MAX({identity}) FROM {table}), 0) + 1, false) AS v")
    return TransferCounts(counts)
