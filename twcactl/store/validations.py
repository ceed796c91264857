"""Domain validations and CAA answers (schema SCHEMA_ISSUE26; issue 26).

``domain_validations``: one row per random value made for an account's domain (``dns-txt``, BR §3.2.2.4.7;
``http-file``, BR §3.2.2.4.18) or per ACME challenge that succeeded (``acme-http-01``, ``acme-dns-01``,
``acme-tls-alpn-01``, BR §3.2.2.4.19 / .7 / .20); ``validated_at`` is empty until the value was seen.
``caa_checks``: each CAA answer relied on for issuance (BR §3.2.2.8), reused for at most 8 hours.
Times are RFC 3339 UTC text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twcactl.store.interface import Engine

_COLUMNS = "account_id, domain, method, value, created_at, expires_at, validated_at, operator, seen"


@dataclass(frozen=True)
class ValidationRecord:
    """One domain validation: the account and domain, the method, the random value (or ACME token), when it was
    made and until when it may be used (``expires_at``), when it was seen (``validated_at``, None while pending),
    who asked and what was seen (a JSON object)."""

    account_id: str
    domain: str
    method: str
    value: str
    created_at: str
    expires_at: str
    validated_at: str | None
    operator: str
    seen: dict[str, Any]

    def to_json(self) -> dict[str, object]:
        """The record as a JSON object (snake_case keys)."""
        return {"account": self.account_id, "domain": self.domain, "method": self.method, "value": self.value,
                "created_at": self.created_at, "expires_at": self.expires_at, "validated_at": self.validated_at,
                "operator": self.operator, "seen": self.seen}


@dataclass(frozen=True)
class CaaRecord:
    """One CAA answer: the name, whether it was asked for a wildcard, when, the verdict and the answer."""

    domain: str
    wildcard: bool
    checked_at: str
    allowed: bool
    answer: dict[str, Any]


def _validation(row: Any) -> ValidationRecord:
    return ValidationRecord(account_id=row["account_id"], domain=row["domain"], method=row["method"],
                            value=row["value"], created_at=row["created_at"], expires_at=row["expires_at"],
                            validated_at=row["validated_at"] or None, operator=row["operator"],
                            seen=json.loads(row["seen"]) if row["seen"] else {})


class ValidationRepository:
    """The ``domain_validations`` and ``caa_checks`` tables."""

    def __init__(self, engine: Engine) -> None:
        self._db = engine.db

    def add(self, *, account_id: str, domain: str, method: str, value: str, created_at: str, expires_at: str,
            operator: str, validated_at: str | None = None, seen: dict[str, Any] | None = None) -> None:
        """Insert a validation (inside a transaction); ``validated_at`` set for one already seen (ACME)."""
        self._db.run(f"INSERT INTO domain_validations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (account_id, domain, method, value, created_at, expires_at, validated_at, operator,
                      json.dumps(seen or {}, sort_keys=True)))

    def mark_validated(self, value: str, *, validated_at: str, seen: dict[str, Any]) -> None:
        """Record that the random ``value`` was seen (inside a transaction)."""
        self._db.run("UPDATE domain_validations SET validated_at = ?, seen = ? WHERE value = ?",
                     (validated_at, json.dumps(seen, sort_keys=True), value))

    def note_seen(self, value: str, seen: dict[str, Any]) -> None:
        """Record what a check that failed saw (inside a transaction)."""
        self._db.run("UPDATE domain_validations SET seen = ? WHERE value = ?",
                     (json.dumps(seen, sort_keys=True), value))

    def pending(self, account_id: str, domain: str) -> ValidationRecord | None:
        """The newest validation of ``domain`` not seen yet, or None."""
        row = self._db.one(f"SELECT {_COLUMNS} FROM domain_validations WHERE account_id = ? AND domain = ?"
                           " AND validated_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 1", (account_id, domain))
        return _validation(row) if row else None

    def latest(self, account_id: str, domain: str) -> ValidationRecord | None:
        """The newest completed validation of ``domain`` for ``account_id``, or None."""
        row = self._db.one(f"SELECT {_COLUMNS} FROM domain_validations WHERE account_id = ? AND domain = ?"
                           " AND validated_at IS NOT NULL ORDER BY validated_at DESC, id DESC LIMIT 1",
                           (account_id, domain))
        return _validation(row) if row else None

    def for_account(self, account_id: str) -> list[ValidationRecord]:
        """Every validation of the account, oldest first."""
        return [_validation(r) for r in self._db.all(
            f"SELECT {_COLUMNS} FROM domain_validations WHERE account_id = ? ORDER BY created_at, id", (account_id,))]

    def add_caa(self, *, domain: str, wildcard: bool, checked_at: str, allowed: bool, answer: dict[str, Any]) -> None:
        """Record a CAA answer (inside a transaction)."""
        self._db.run("INSERT INTO caa_checks (domain, wildcard, checked_at, allowed, answer) VALUES (?, ?, ?, ?, ?)",
                     (domain, int(wildcard), checked_at, int(allowed), json.dumps(answer, sort_keys=True)))

    def latest_caa(self, domain: str, wildcard: bool, since: str) -> CaaRecord | None:
        """The newest CAA answer for ``domain`` checked at or after ``since`` (RFC 3339), or None."""
        row = self._db.one("SELECT domain, wildcard, checked_at, allowed, answer FROM caa_checks WHERE domain = ?"
                           " AND wildcard = ? AND checked_at >= ? ORDER BY checked_at DESC, id DESC LIMIT 1",
                           (domain, int(wildcard), since))
        if row is None:
            return None
        return CaaRecord(domain=row["domain"], wildcard=bool(row["wildcard"]), checked_at=row["checked_at"],
                         allowed=bool(row["allowed"]), answer=json.loads(row["answer"]))
