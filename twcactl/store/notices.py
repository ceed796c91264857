"""The notices mailed to technical contacts (schema version 5; issue 17).

One row per certificate, kind and window: ``issued`` (window 0) when ``cert issue --notify`` mailed
the bundle, ``reminder`` with the window's days when ``notify due`` mailed the renewal reminder
(domain.md §3-§4).  The primary key makes "once per certificate and window" a constraint, so two
nightly runs racing record one notice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from twcactl.rules.times import rfc3339, utcnow
from twcactl.store.interface import Engine


@dataclass(frozen=True)
class NoticeRecord:
    """One notice sent: the certificate, ``issued`` or ``reminder``, the window in days (0 for
    ``issued``), to whom, when (RFC 3339), its Message-ID and the operator who ran the command."""

    serial: str
    kind: str
    window_days: int
    recipient: str
    sent_at: str
    message_id: str
    operator: str

    def to_json(self) -> dict[str, object]:
        """The record as a JSON object (snake_case keys)."""
        return {"serial": self.serial, "kind": self.kind, "window_days": self.window_days,
                "recipient": self.recipient, "sent_at": self.sent_at, "message_id": self.message_id,
                "operator": self.operator}


class NoticeRepository:
    """The ``notices`` table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._db = engine.db

    @property
    def pending(self) -> PendingNoticeRepository:
        """The notices that failed and wait for the next ``notify due`` (issue 27)."""
        return PendingNoticeRepository(self._engine)

    def sent(self, serial: str, kind: str, window_days: int) -> bool:
        """True when this notice was already sent for ``serial``."""
        return self._db.one("SELECT 1 AS ok FROM notices WHERE serial = ? AND kind = ? AND window_days = ?",
                            (serial, kind, window_days)) is not None

    def record(self, *, serial: str, kind: str, window_days: int, recipient: str, message_id: str,
               operator: str, when: dt.datetime | None = None) -> bool:
        """Record a notice as sent (inside a transaction); a notice already recorded keeps its first row.

        Returns:
            True when the row is new.
        """
        return self._db.run(
            "INSERT INTO notices (serial, kind, window_days, recipient, sent_at, message_id, operator)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (serial, kind, window_days, recipient, rfc3339(when or utcnow()), message_id, operator)) > 0

    def for_certificate(self, serial: str) -> list[NoticeRecord]:
        """Every notice sent for ``serial``, oldest first."""
        return [NoticeRecord(serial=r["serial"], kind=r["kind"], window_days=int(r["window_days"]),
                             recipient=r["recipient"], sent_at=r["sent_at"], message_id=r["message_id"],
                             operator=r["operator"])
                for r in self._db.all("SELECT serial, kind, window_days, recipient, sent_at, message_id, operator"
                                      " FROM notices WHERE serial = ? ORDER BY sent_at, kind, window_days",
                                      (serial,))]


@dataclass(frozen=True)
class PendingNotice:
    """A notice the relay did not take (issue 27): ``notify due`` tries it again until it is sent once."""

    serial: str
    kind: str
    window_days: int
    recipient: str
    failed_at: str
    error: str
    operator: str


class PendingNoticeRepository:
    """The ``notices_pending`` table (schema issue 27): notices that failed, waiting for the next ``notify due``."""

    def __init__(self, engine: Engine) -> None:
        self._db = engine.db

    def add(self, *, serial: str, kind: str, window_days: int, recipient: str, error: str, operator: str,
            when: dt.datetime | None = None) -> None:
        """Keep a failed notice for the next run (inside a transaction); a second failure updates the error."""
        self._db.run("DELETE FROM notices_pending WHERE serial = ? AND kind = ? AND window_days = ?",
                     (serial, kind, window_days))
        self._db.run("INSERT INTO notices_pending (serial, kind, window_days, recipient, failed_at, error, operator)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (serial, kind, window_days, recipient, rfc3339(when or utcnow()), error[:500], operator))

    def all(self) -> list[PendingNotice]:
        """Every pending notice, oldest failure first."""
        return [PendingNotice(serial=r["serial"], kind=r["kind"], window_days=int(r["window_days"]),
                              recipient=r["recipient"], failed_at=r["failed_at"], error=r["error"],
                              operator=r["operator"])
                for r in self._db.all("SELECT serial, kind, window_days, recipient, failed_at, error, operator"
                                      " FROM notices_pending ORDER BY failed_at, serial")]

    def clear(self, serial: str, kind: str, window_days: int) -> None:
        """Forget a pending notice (inside a transaction; with the ``notices`` row of its sending)."""
        self._db.run("DELETE FROM notices_pending WHERE serial = ? AND kind = ? AND window_days = ?",
                     (serial, kind, window_days))
