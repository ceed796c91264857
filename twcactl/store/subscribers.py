"""Subscriber passwords (schema issue 27): one slow hash per certificate, its failure count and lock.

The hash is made and checked in :mod:`twcactl.authority.subscribers`; this table only keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

from twcactl.store.interface import Engine


@dataclass(frozen=True)
class SubscriberSecret:
    """A certificate's subscriber password: its hash (``scrypt$...``), the wrong tries in a row, and until when
    it is locked (RFC 3339; None when it is not)."""

    serial: str
    hash: str
    failures: int
    locked_until: str | None


class SubscriberRepository:
    """The ``subscriber_secrets`` table."""

    def __init__(self, engine: Engine) -> None:
        self._db = engine.db

    def get(self, serial: str) -> SubscriberSecret | None:
        """The password record of ``serial``, None when none was set."""
        row = self._db.one("SELECT serial, hash, failures, locked_until FROM subscriber_secrets WHERE serial = ?",
                           (serial,))
        if row is None:
            return None
        return SubscriberSecret(serial=row["serial"], hash=row["hash"], failures=int(row["failures"]),
                                locked_until=row["locked_until"])

    def set(self, serial: str, password_hash: str, when: str) -> None:
        """Set (or replace) ``serial``'s password hash and clear its failures and lock (inside a transaction)."""
        self._db.run("DELETE FROM subscriber_secrets WHERE serial = ?", (serial,))
        self._db.run("INSERT INTO subscriber_secrets (serial, hash, failures, locked_until, updated_at)"
                     " VALUES (?, ?, 0, NULL, ?)", (serial, password_hash, when))

    def failed(self, serial: str, failures: int, locked_until: str | None) -> None:
        """Record the wrong tries in a row and the lock they set (inside a transaction)."""
        self._db.run("UPDATE subscriber_secrets SET failures = ?, locked_until = ? WHERE serial = ?",
                     (failures, locked_until, serial))

    def unlock(self, serial: str) -> None:
        """Clear the failures and the lock (inside a transaction)."""
        self._db.run("UPDATE subscriber_secrets SET failures = 0, locked_until = NULL WHERE serial = ?", (serial,))
