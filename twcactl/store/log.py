"""The hash-chained activity log (architecture.md, "The store").

Each entry's hash covers its content and the previous entry's hash
(:func:`log_hash`); the head (``seq:hash``) is kept in ``meta`` under
``log_head`` and with every CRL record, so dropping the newest entries shows.
An entry never holds a secret.  Verification lives in
:mod:`twcactl.authority.audit`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from twcactl.errors import NotFoundError, StateError
from twcactl.rules.operator_auth import SUBSCRIBER_PREFIX, role_may, subscriber_may
from twcactl.rules.times import rfc3339, utcnow
from twcactl.store.interface import Engine, LogItem, Row
from twcactl.store.records import LogEntry, RawLogEntry

#: The ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64
_COLUMNS = "seq, time, operator, action, account, serial, details, prev_hash, hash"

#: Signs the entries of one append (details as stored, parsed back) and returns the signature to store with
#: the first of them (JSON text), or None when none needs one; raises to refuse the change (issue 27).
ActionSigner = Callable[[list[LogItem]], "str | None"]


def log_hash(prev_hash: str, seq: int, time: str, operator: str, action: str, account: str | None,
             serial: str | None, details_json: str) -> str:
    """SHA-256 (hex) over an entry's content and the previous entry's hash.

    The content is canonical JSON, so the hash does not depend on how the
    database returns the columns.
    """
    content = json.dumps([prev_hash, seq, time, operator, action, account, serial, details_json],
                         separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(content.encode("ascii")).hexdigest()


class LogRepository:
    """The ``activity_log`` table and its head in ``meta``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._db = engine.db
        #: set by the command that opened the store when changes must be signed (issue 27)
        self.signer: ActionSigner | None = None

    def append(self, *, operator: str, action: str, account: str | None = None, serial: str | None = None,
               details: dict[str, Any] | None = None) -> LogEntry:
        """Append one hash-chained entry (inside a transaction)."""
        return self.append_many([(operator, action, account, serial, details)])[0]

    def append_many(self, entries: Sequence[LogItem]) -> list[LogEntry]:
        """Append entries ``(operator, action, account, serial, details)`` in order (inside a transaction),
        with one read of the head and one write of it; all get the same time."""
        details_texts = [json.dumps(d or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                         for _o, _a, _acc, _s, d in entries]
        self._check_roles(entries)
        signature = None
        if self.signer is not None and entries:
            signature = self.signer([(o, a, acc, s, json.loads(text))
                                     for (o, a, acc, s, _d), text in zip(entries, details_texts)])
        row = self._db.one("SELECT seq, hash FROM activity_log ORDER BY seq DESC LIMIT 1")
        seq, prev = (int(row["seq"]), str(row["hash"])) if row else (0, GENESIS_HASH)
        time = rfc3339(utcnow())
        rows: list[tuple[Any, ...]] = []
        out = []
        for (operator, action, account, serial, details), details_json in zip(entries, details_texts):
            seq += 1
            digest = log_hash(prev, seq, time, operator, action, account, serial, details_json)
            rows.append((seq, time, operator, action, account, serial, details_json, prev, digest,
                         signature if not rows else None))
            out.append(LogEntry(seq=seq, time=time, operator=operator, action=action, account=account, serial=serial,
                                details=details or {}))
            prev = digest
        self._db.run_many(f"INSERT INTO activity_log ({_COLUMNS}, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          rows)
        if rows:
            self._engine.set_meta("log_head", f"{seq}:{prev}")
        return out

    def _check_roles(self, entries: Sequence[LogItem]) -> None:
        """Refuse an entry its operator's role may not write (issue 27: an RA operator changes no account,
        operator or setting; :func:`twcactl.rules.operator_auth.role_may`).  Names that are not operators
        (``ca.init`` before the first one is added, ACME accounts) are not judged here.

        Raises:
            StateError: the role may not (exit 5); the caller's transaction rolls back.
        """
        for name, action, _account, serial, _details in entries:
            if name.startswith(SUBSCRIBER_PREFIX) and not subscriber_may(name, action, serial):
                raise StateError(f"a subscriber may not do {action} on certificate {serial}.")
        for name in {item[0] for item in entries if not item[0].startswith(SUBSCRIBER_PREFIX)}:
            row = self._db.one("SELECT role FROM operators WHERE name = ? AND active = 1", (name,))
            if row is None:
                continue
            role = str(row["role"])
            refused = sorted({item[1] for item in entries if item[0] == name and not role_may(role, item[1])})
            if refused:
                raise StateError(f"operator {name} is an {role} operator and may not do {', '.join(refused)}.")

    def entries(self, *, account: str | None = None, action: str | None = None, operator: str | None = None,
                serial: str | None = None, limit: int | None = None) -> list[LogEntry]:
        """Entries, newest first, filtered by account, action, operator and serial (all that are given)."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("account", account), ("action", action), ("operator", operator), ("serial", serial)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM activity_log"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_entry(r) for r in self._db.iterate(sql, params)]

    def get(self, seq: int) -> LogEntry:
        """Entry ``seq``.

        Raises:
            NotFoundError: there is no such entry (exit 5).
        """
        row = self._db.one(f"SELECT {_COLUMNS} FROM activity_log WHERE seq = ?", (seq,))
        if row is None:
            raise NotFoundError(f"no activity-log entry {seq}.", hint="twcactl log lists the entries, newest first")
        return _entry(row)

    def change_version(self) -> tuple[int, int] | None:
        """A pair that changes whenever anything is committed to the database, by any connection: SQLite's
        ``data_version`` (changes when another connection commits) with this connection's ``total_changes()``
        (its own writes); one statement of a few microseconds, no table read.  None when the engine has none
        (PostgreSQL: ask :meth:`serials_since` instead).  Issue 29."""
        if self._db.dialect.name != "sqlite":
            return None
        row = self._db.one("SELECT (SELECT data_version FROM pragma_data_version()) AS v, total_changes() AS t")
        return (int(row["v"]), int(row["t"])) if row is not None else None

    def serials_since(self, seq: int) -> list[tuple[int, str]]:
        """``(seq, serial)`` of every entry after ``seq`` that names a certificate, oldest first: the
        certificates whose record changed since (every state change is logged in its own transaction, and
        appends are serialised, so ``seq`` grows in commit order; issue 29).  ``seq`` 0 and the newest entry:
        :meth:`head_seq`."""
        return [(int(r["seq"]), str(r["serial"])) for r in self._db.iterate(
            "SELECT seq, serial FROM activity_log WHERE seq > ? AND serial IS NOT NULL ORDER BY seq", (seq,))]

    def head_seq(self) -> int:
        """The newest entry's ``seq`` (0 for an empty log)."""
        row = self._db.one("SELECT seq FROM activity_log ORDER BY seq DESC LIMIT 1")
        return int(row["seq"]) if row is not None else 0

    def raw(self) -> Iterator[RawLogEntry]:
        """Every entry in ``seq`` order as stored, hashes included (for verifying the chain)."""
        for r in self._db.iterate(f"SELECT {_COLUMNS}, signature FROM activity_log ORDER BY seq"):
            yield RawLogEntry(seq=r["seq"], time=r["time"], operator=r["operator"], action=r["action"],
                              account=r["account"], serial=r["serial"], details=r["details"],
                              prev_hash=r["prev_hash"], hash=r["hash"], signature=r["signature"])


def _entry(r: Row) -> LogEntry:
    return LogEntry(seq=r["seq"], time=r["time"], operator=r["operator"], action=r["action"], account=r["account"],
                    serial=r["serial"], details=json.loads(r["details"]))
