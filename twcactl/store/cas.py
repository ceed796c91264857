"""The CA certificates of a home: root first, one of them issuing (architecture.md, "The store")."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from twcactl.errors import NotFoundError, StateError
from twcactl.rules.times import rfc3339
from twcactl.store.interface import Engine
from twcactl.store.records import CaRecord


def _key_place(home: Path, row: Any) -> dict[str, Any]:
    """``key_file`` (and ``key_uri``) of a CA record: the column holds a path relative to the home, or the
    RFC 7512 ``pkcs11:`` URI of a key on a token (issue 14; then ``key_file`` is where a file would be)."""
    stored = str(row["key_file"])
    if stored[:7].lower() == "pkcs11:":
        return {"key_file": home / "ca" / "private" / f"{row['name']}.key", "key_uri": stored}
    return {"key_file": home / stored}


class CaRepository:
    """The ``cas`` table; file names are stored relative to ``home``."""

    def __init__(self, engine: Engine, home: Path) -> None:
        self._db = engine.db
        self._home = home

    def add(self, *, name: str, position: int, issuing: bool, subject: str, serial: str,
            not_before: dt.datetime, not_after: dt.datetime, cert_file: str, key_file: str, der: bytes,
            issuer: str | None = None) -> None:
        """Record a CA certificate (inside a transaction); ``cert_file``/``key_file`` relative to the home;
        ``issuer`` the name of the CA that signed it (None for the root)."""
        self._db.run(
            "INSERT INTO cas (name, position, issuing, subject, serial, not_before, not_after, cert_file, key_file,"
            " der, issuer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, position, int(issuing), subject, serial, rfc3339(not_before), rfc3339(not_after),
             cert_file, key_file, der, issuer),
        )

    def all(self) -> list[CaRecord]:
        """The CA certificates, root first."""
        return [
            CaRecord(name=r["name"], position=r["position"], issuing=bool(r["issuing"]),
                     cert_file=self._home / r["cert_file"], der=bytes(r["der"]), issuer=r["issuer"],
                     retired_at=r["retired_at"], revoked_at=r["revoked_at"], reason=r["reason"],
                     **_key_place(self._home, r))
            for r in self._db.all("SELECT name, position, issuing, cert_file, key_file, der, issuer, retired_at,"
                                  " revoked_at, reason FROM cas ORDER BY position")
        ]

    def chain(self, name: str) -> list[CaRecord]:
        """CA ``name`` and the CAs above it by their ``issuer`` links, root first (issue 25: several issuing CAs
        under one root, so position alone no longer says who signed whom).

        Raises:
            NotFoundError: no such CA (exit 5).  StateError: the issuer links loop (exit 5).
        """
        by_name = {ca.name: ca for ca in self.all()}
        if name not in by_name:
            raise NotFoundError(f"no CA named {name} in this home.")
        out: list[CaRecord] = []
        current: str | None = name
        while current is not None:
            if len(out) > len(by_name) or current not in by_name:
                raise StateError(f"the issuer links of CA {name} are broken.", hint="twcactl ca check")
            out.append(by_name[current])
            current = by_name[current].issuer
        return out[::-1]

    def set_active(self, name: str) -> None:
        """Make ``name`` the one issuing CA (inside a transaction; issue 25)."""
        self._db.run("UPDATE cas SET issuing = 0 WHERE name <> ?", (name,))
        self._db.run("UPDATE cas SET issuing = 1, retired_at = NULL WHERE name = ?", (name,))

    def retire(self, name: str, when: dt.datetime) -> None:
        """Mark ``name`` retired at ``when`` (inside a transaction): it issues no more (issue 25)."""
        self._db.run("UPDATE cas SET issuing = 0, retired_at = ? WHERE name = ?", (rfc3339(when), name))

    def revoke(self, name: str, when: dt.datetime, reason: str) -> None:
        """Mark ``name`` revoked by its issuer at ``when`` for an RFC 5280 ``reason`` (inside a transaction)."""
        self._db.run("UPDATE cas SET issuing = 0, revoked_at = ?, reason = ? WHERE name = ?",
                     (rfc3339(when), reason, name))

    def revoked_entries(self, issuer: str) -> list[tuple[str, str, str, None]]:
        """The revoked CAs ``issuer`` signed as CRL rows ``(serial hex, revoked_at, reason, None)`` (issue 25)."""
        return [(r["serial"], r["revoked_at"], r["reason"] or "unspecified", None) for r in self._db.all(
            "SELECT serial, revoked_at, reason FROM cas WHERE issuer = ? AND revoked_at IS NOT NULL ORDER BY position",
            (issuer,))]

    def next_position(self) -> int:
        """The position a new CA takes (after every other)."""
        row = self._db.one("SELECT MAX(position) AS top FROM cas")
        return int(row["top"]) + 1 if row is not None and row["top"] is not None else 0

    def issuing(self) -> CaRecord:
        """The CA that signs end-entity certificates.

        Raises:
            StateError: the home has no issuing CA (exit 5).
        """
        for ca in self.all():
            if ca.issuing:
                return ca
        raise StateError("this CA home has no issuing CA.")

    def by_name(self, name: str) -> CaRecord:
        """The CA record named ``name`` (``root``, ``uca``, ``uca_1``...).

        Raises:
            NotFoundError: no such CA (exit 5).
        """
        for ca in self.all():
            if ca.name == name:
                return ca
        raise NotFoundError(f"no CA named {name} in this home.")

    def subjects(self) -> dict[str, str]:
        """CA name -> subject (RFC 4514 text), the ``issuer`` of each certificate record."""
        return {r["name"]: r["subject"] for r in self._db.all("SELECT name, subject FROM cas")}
