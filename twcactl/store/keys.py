"""Certificate keys: each certificate's key fingerprint, and the keys blocked after a keyCompromise revocation.

A key is named by the SHA-256 (hex) of its DER SubjectPublicKeyInfo.  The
``certificates.spki_sha256`` column (schema version 2) holds it for every
record, so "which other certificates carry this key" is one indexed query;
``blocked_keys`` lists the keys a keyCompromise revocation took out of use:
the CA never certifies them again (CA/Browser Forum Baseline Requirements
§6.1.1.3; docs/lifecycle.md "Compromised keys").
"""

from __future__ import annotations

import datetime as dt
import hashlib

from twcactl.rules.times import rfc3339, utcnow
from twcactl.store.interface import Engine
from twcactl.store.records import BlockedKey

#: The meta key set once every stored certificate's key fingerprint is filled in.
INDEXED_META = "keys_indexed"


def spki_sha256_of_certificate(der: bytes) -> str | None:
    """The SHA-256 (hex) of the DER SubjectPublicKeyInfo of a DER certificate; None when it cannot be parsed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        key = x509.load_der_x509_certificate(der).public_key()
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError):
        return None
    return hashlib.sha256(spki).hexdigest()


class KeyRepository:
    """The ``blocked_keys`` table and the ``certificates.spki_sha256`` column."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._db = engine.db

    def set_key(self, serial: str, spki_sha256: str) -> None:
        """Record the key fingerprint of certificate ``serial`` (inside a transaction)."""
        self._db.run("UPDATE certificates SET spki_sha256 = ? WHERE serial = ?", (spki_sha256, serial))

    def serials_with_key(self, spki_sha256: str) -> list[str]:
        """Serials of every certificate whose key has this fingerprint, oldest record first."""
        order = self._db.dialect.insertion_order
        return [r["serial"] for r in self._db.all(
            f"SELECT serial FROM certificates WHERE spki_sha256 = ? ORDER BY {order}", (spki_sha256,))]

    def block(self, spki_sha256: str, *, serial: str, reason: str, operator: str,
              when: dt.datetime | None = None) -> bool:
        """Block a key (inside a transaction); a key already blocked keeps its first entry.

        Returns:
            True when the key was newly blocked.
        """
        return self._db.run(
            "INSERT INTO blocked_keys (spki_sha256, serial, reason, blocked_at, operator) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING", (spki_sha256, serial, reason, rfc3339(when or utcnow()), operator)) > 0

    def blocked(self, spki_sha256: str) -> BlockedKey | None:
        """The entry blocking this key, or None when it is not blocked."""
        row = self._db.one("SELECT spki_sha256, serial, reason, blocked_at, operator FROM blocked_keys"
                           " WHERE spki_sha256 = ?", (spki_sha256,))
        if row is None:
            return None
        return BlockedKey(spki_sha256=row["spki_sha256"], serial=row["serial"], reason=row["reason"],
                          blocked_at=row["blocked_at"], operator=row["operator"])

    def all_blocked(self) -> list[BlockedKey]:
        """Every blocked key, oldest first."""
        return [BlockedKey(spki_sha256=r["spki_sha256"], serial=r["serial"], reason=r["reason"],
                           blocked_at=r["blocked_at"], operator=r["operator"])
                for r in self._db.all("SELECT spki_sha256, serial, reason, blocked_at, operator FROM blocked_keys"
                                      " ORDER BY blocked_at, spki_sha256")]

    def index_missing(self) -> int:
        """Fill in the key of every certificate recorded without one, and block the keys of certificates
        revoked for keyCompromise before blocking existed (one transaction; then ``keys_indexed`` is set).

        Run once when a home made before schema version 2 is first opened; records loaded later with
        ``certificates.bulk_add`` (benchmark homes) are not indexed.

        Returns:
            The number of certificates filled in.
        """
        with self._engine.transaction():
            rows = self._db.all("SELECT serial, der, state, reason, revoked_at FROM certificates"
                                " WHERE spki_sha256 IS NULL")
            for r in rows:
                spki = spki_sha256_of_certificate(bytes(r["der"]))
                if spki is None:
                    continue
                self.set_key(r["serial"], spki)
                if r["state"] == "revoked" and r["reason"] == "keyCompromise":
                    self._db.run(
                        "INSERT INTO blocked_keys (spki_sha256, serial, reason, blocked_at, operator)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (spki, r["serial"], "keyCompromise", r["revoked_at"] or rfc3339(utcnow()), "migration"))
            self._engine.set_meta(INDEXED_META, "1")
        return len(rows)
