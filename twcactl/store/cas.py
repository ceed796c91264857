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
            not_before: dt.datetime, not_after: dt.datetime, cert_file: str, key_file: str, der: bytes) -> None:
        """Record a CA certificate (inside a transaction); ``cert_file``/``key_file`` relative to the home."""
        self._db.run(
            "INSERT INTO cas (name, position, issuing, subject, serial, not_before, not_after, cert_file, key_file,"
            " der) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, position, int(issuing), subject, serial, rfc3339(not_before), rfc3339(not_after),
             cert_file, key_file, der),
        )

    def all(self) -> list[CaRecord]:
        """The CA certificates, root first."""
        return [
            CaRecord(name=r["name"], position=r["position"], issuing=bool(r["issuing"]),
                     cert_file=self._home / r["cert_file"], der=bytes(r["der"]), **_key_place(self._home, r))
            for r in self._db.all("SELECT name, position, issuing, cert_file, key_file, der FROM cas ORDER BY position")
        ]

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
