"""The tiny executor every repository sends its SQL through.

Repositories never touch a driver.  They write their SQL once, in the qmark
parameter style (``?``), read result rows by column name only
(``row["serial"]``, never ``row[0]``: a psycopg ``dict_row`` is a plain dict)
and give every computed column a name (``COUNT(*) AS n``).  The executor runs
that SQL on its engine's connection and turns the driver's constraint errors
into :class:`ConstraintViolation`, so no driver type reaches a repository's
caller.

The few fragments that differ between engines come from :class:`Dialect`:
``insertion_order`` (the column that orders rows as they were inserted) and
``glob`` (a case-sensitive shell-style match).

A second engine reuses the repositories by providing another executor with
the same five methods (:class:`twcactl.store.interface.Executor`).  For
PostgreSQL (psycopg 3): rewrite each statement's ``?`` to ``%s`` and double
any literal ``%`` (once per statement text, cached), run it on a cursor made
with ``row_factory=psycopg.rows.dict_row``, map
``psycopg.errors.IntegrityError`` to :class:`ConstraintViolation`, and give a
dialect whose ``insertion_order`` is an identity column of its own DDL and
whose ``glob`` translates the pattern to ``LIKE`` (``*`` -> ``%``, ``?`` ->
``_``, ``[c]`` -> ``c`` escaped).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

Params = Sequence[Any]


class Row(Protocol):
    """A result row, read by column name only."""

    def __getitem__(self, key: str, /) -> Any:
        """The value of column ``key``."""


class ConstraintViolation(Exception):
    """A write broke a uniqueness, foreign-key or CHECK constraint (the driver's error is ``__cause__``)."""


class Dialect:
    """SQL fragments that differ between engines; this one is SQLite's."""

    name = "sqlite"
    #: Orders rows by insertion: SQLite's implicit ``rowid``.
    insertion_order = "rowid"

    def glob(self, column: str) -> str:
        """A condition: ``column`` matches a shell-style pattern given as the next parameter."""
        return f"{column} GLOB ?"

    def glob_param(self, pattern: str) -> str:
        """The parameter for :meth:`glob` (SQLite takes the pattern as it is)."""
        return pattern

    @staticmethod
    def glob_literal(text: str) -> str:
        """``text`` escaped so that it matches itself inside a glob pattern."""
        return "".join(f"[{c}]" if c in "*?[" else c for c in text)


class SqliteExecutor:
    """Runs repository SQL on one ``sqlite3`` connection (opened with ``sqlite3.Row`` rows)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.dialect = Dialect()

    def one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None."""
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query."""
        return list(self._conn.execute(sql, params))

    def iterate(self, sql: str, params: Params = ()) -> Iterator[Row]:
        """The rows of a query one at a time (for scans over a big home)."""
        yield from self._conn.execute(sql, params)

    def run(self, sql: str, params: Params = ()) -> int:
        """Run one write; the number of rows it changed.

        Raises:
            ConstraintViolation: a constraint refused the write.
        """
        try:
            return self._conn.execute(sql, params).rowcount
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolation(str(exc)) from exc

    def run_many(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one write once per parameter row.

        Raises:
            ConstraintViolation: a constraint refused a row.
        """
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolation(str(exc)) from exc
