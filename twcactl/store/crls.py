"""CRL numbers and the CRLs generated, each with the activity log's head at that time.

cRLNumber is monotonically increasing per CA (RFC 5280 §5.2.3).  Recording the
log head with every CRL makes a truncated log show against the newest CRL
record (architecture.md, "The store").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from twcactl.rules.times import rfc3339
from twcactl.store.interface import Engine
from twcactl.store.log import GENESIS_HASH
from twcactl.store.records import CrlAnchor

_COLUMNS = ("id", "ca_name", "number", "this_update", "next_update", "entries", "log_seq", "log_hash", "der")


class CrlRepository:
    """The ``crls`` table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._db = engine.db

    def next_number(self, ca_name: str) -> int:
        """One more than the highest cRLNumber issued for ``ca_name`` (1 for the first CRL)."""
        row = self._db.one("SELECT MAX(number) AS n FROM crls WHERE ca_name = ?", (ca_name,))
        return int(row["n"] or 0) + 1 if row else 1

    def add(self, *, ca_name: str, number: int, this_update: dt.datetime, next_update: dt.datetime,
            entries: int, der: bytes) -> None:
        """Record a generated CRL (DER) with ``entries`` revoked entries and the log's head (inside a transaction)."""
        head = self._engine.meta("log_head") or f"0:{GENESIS_HASH}"
        seq, digest = head.split(":", 1)
        self._db.run(
            "INSERT INTO crls (ca_name, number, this_update, next_update, entries, log_seq, log_hash, der)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ca_name, number, rfc3339(this_update), rfc3339(next_update), entries, int(seq), digest, der),
        )

    def latest(self, ca_name: str) -> dict[str, Any] | None:
        """The newest CRL record of ``ca_name``, or None.

        Returns:
            ``{"id", "ca_name", "number", "this_update", "next_update", "entries", "log_seq", "log_hash", "der"}``
            (times as RFC 3339 text, ``der`` bytes or None).
        """
        row = self._db.one(f"SELECT {', '.join(_COLUMNS)} FROM crls WHERE ca_name = ? ORDER BY number DESC LIMIT 1",
                           (ca_name,))
        if row is None:
            return None
        record = {c: row[c] for c in _COLUMNS}
        if record["der"] is not None:
            record["der"] = bytes(record["der"])
        return record

    def anchors(self) -> list[CrlAnchor]:
        """The log head recorded with every CRL, oldest first (for verifying the log)."""
        return [
            CrlAnchor(r["ca_name"], r["number"], r["log_seq"], r["log_hash"])
            for r in self._db.all("SELECT ca_name, number, log_seq, log_hash FROM crls"
                                  " WHERE log_seq IS NOT NULL ORDER BY id")
        ]
