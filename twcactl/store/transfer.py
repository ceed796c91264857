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
import re
from collections.abc import Iterator
from dataclasses import dataclass

from twcactl.errors import StateError
from twcactl.store.interface import Engine
from twcactl.store.schema import MIGRATIONS, SCHEMA_V1, statements

_TABLE_RE = re.compile(r"^\s*CREATE TABLE (\w+) \((.*)\)\s*$", re.S)
_IDENTITY_RE = re.compile(r"(\w+) INTEGER PRIMARY KEY")


def schema_tables() -> tuple[tuple[str, str | None], ...]:
    """Every table of the schema (version 1 and each forward step), in the order they are created, which is
    the order a copy must fill them (foreign keys point backwards), with its identity column if any."""
    out: list[tuple[str, str | None]] = []
    for script in (SCHEMA_V1, *MIGRATIONS):
        for statement in statements(script):
            match = _TABLE_RE.match(statement)
            if match is None:
                continue
            name, body = match.groups()
            identity = _IDENTITY_RE.search(body)
            out.append((name, identity.group(1) if identity else None))
    return tuple(out)


#: Tables in the order a copy must fill them, with their identity column if any (derived from the schema,
#: so a table a later migration adds is copied too).
TABLES: tuple[tuple[str, str | None], ...] = schema_tables()
_BATCH = 2_000


@dataclass(frozen=True)
class TransferCounts:
    """Rows copied per table."""

    rows: dict[str, int]


def row_count(engine: Engine, table: str) -> int:
    """The number of rows of ``table`` (one of :data:`TABLES`; ``store migrate`` compares source and copy).

    Raises:
        ValueError: ``table`` is not a table of the schema (its name is put into the SQL).
    """
    if table not in {name for name, _identity in TABLES}:
        raise ValueError(f"not a table of the schema: {table!r}")
    row = engine.db.one(f"SELECT COUNT(*) AS n FROM {table}")
    return int(row["n"]) if row else 0


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


def copy_records(source: Engine, target: Engine, *, source_locked: bool = False) -> TransferCounts:
    """Copy every table of ``source`` into the empty schema of ``target``.

    Rows are read in insertion order (a renewal after the certificate it renews: the foreign keys hold
    row by row).  ``source_locked``: the caller already holds the source's write transaction (``store
    migrate`` keeps every writer out until the home is switched), so no snapshot is opened here.

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
    reading = contextlib.nullcontext() if source_locked else _consistent_read(source)
    order = source.db.dialect.insertion_order
    with reading, target.transaction():
        target.db.run("DELETE FROM meta")
        for table, _identity in TABLES:
            columns = _columns(source, table)
            if not columns:
                counts[table] = 0
                continue
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
            batch: list[tuple[object, ...]] = []
            total = 0
            for row in source.db.iterate(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"):
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
