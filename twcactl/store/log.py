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
from collections.abc import Iterator, Sequence
from typing import Any

from twcactl.errors import NotFoundError
from twcactl.rules.times import rfc3339, utcnow
from twcactl.store.interface import Engine, LogItem, Row
from twcactl.store.records import LogEntry, RawLogEntry

#: The ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64
_COLUMNS = "seq, time, operator, action, account, serial, details, prev_hash, hash"


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

    def append(self, *, operator: str, action: str, account: str | None = None, serial: str | None = None,
               details: dict[str, Any] | None = None) -> LogEntry:
        """Append one hash-chained entry (inside a transaction)."""
        return self.append_many([(operator, action, account, serial, details)])[0]

    def append_many(self, entries: Sequence[LogItem]) -> list[LogEntry]:
        """Append entries ``(operator, action, account, serial, details)`` in order (inside a transaction),
        with one read of the head and one write of it; all get the same time."""
        row = self._db.one("SELECT seq, hash FROM activity_log ORDER BY seq DESC LIMIT 1")
        seq, prev = (int(row["seq"]), str(row["hash"])) if row else (0, GENESIS_HASH)
        time = rfc3339(utcnow())
        rows = []
        out = []
        for operator, action, account, serial, details in entries:
            seq += 1
            details_json = json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            digest = log_hash(prev, seq, time, operator, action, account, serial, details_json)
            rows.append((seq, time, operator, action, account, serial, details_json, prev, digest))
            out.append(LogEntry(seq=seq, time=time, operator=operator, action=action, account=account, serial=serial,
                                details=details or {}))
            prev = digest
        self._db.run_many(f"INSERT INTO activity_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if rows:
            self._engine.set_meta("log_head", f"{seq}:{prev}")
        return out

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

    def raw(self) -> Iterator[RawLogEntry]:
        """Every entry in ``seq`` order as stored, hashes included (for verifying the chain)."""
        for r in self._db.iterate(f"SELECT {_COLUMNS} FROM activity_log ORDER BY seq"):
            yield RawLogEntry(seq=r["seq"], time=r["time"], operator=r["operator"], action=r["action"],
                              account=r["account"], serial=r["serial"], details=r["details"],
                              prev_hash=r["prev_hash"], hash=r["hash"])


def _entry(r: Row) -> LogEntry:
    return LogEntry(seq=r["seq"], time=r["time"], operator=r["operator"], action=r["action"], account=r["account"],
                    serial=r["serial"], details=json.loads(r["details"]))
