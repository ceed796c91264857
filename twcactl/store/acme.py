"""ACME state (RFC 8555): nonces, EAB keys, ACME accounts, orders, authorizations, challenges.

Everything ``twcactl serve`` remembers between two requests lives here, in
the store, so that any server process over the same database can answer any
request (architecture.md, "Beyond one machine"): a nonce handed out by one
process is accepted once by another, and an order made through one is
finalized through the next.  Times are RFC 3339 text; lists are JSON text.
The SQL is plain enough for PostgreSQL too (schema version 3).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twcactl.errors import NotFoundError, StateError
from twcactl.rules.times import parse_rfc3339, rfc3339, utcnow
from twcactl.store.executor import ConstraintViolation
from twcactl.store.interface import Engine


@dataclass(frozen=True)
class EabKey:
    """An External Account Binding key (RFC 8555 §7.3.4): its key ID, twcactl account, sealed HMAC key, state."""

    kid: str
    account_id: str
    hmac_sealed: str | None
    operator: str
    state: str
    created_at: str


@dataclass(frozen=True)
class AcmeAccount:
    """An ACME account: its key (JWK JSON and RFC 7638 thumbprint) acting for one twcactl account."""

    id: str
    thumbprint: str
    jwk: str
    account_id: str
    eab_kid: str
    status: str
    contact: tuple[str, ...]
    created_at: str

    @property
    def operator(self) -> str:
        """The operator name of this ACME account's actions in the activity log: ``acme:<kid>``."""
        return f"acme:{self.eab_kid}"

    def to_json(self) -> dict[str, Any]:
        """``{"id", "account", "kid", "status", "contact", "created_at", "thumbprint"}``."""
        return {"id": self.id, "account": self.account_id, "kid": self.eab_kid, "status": self.status,
                "contact": list(self.contact), "created_at": self.created_at, "thumbprint": self.thumbprint}


@dataclass(frozen=True)
class AcmeOrder:
    """An ACME order (RFC 8555 §7.1.3): identifiers are DNS names; ``serial`` once finalized."""

    id: str
    acme_account: str
    status: str
    identifiers: tuple[str, ...]
    expires: dt.datetime
    replaces: str | None
    serial: str | None
    error: dict[str, Any] | None
    #: the ACME profile the order asked for (draft-ietf-acme-profiles), None for the default
    profile: str | None = None


@dataclass(frozen=True)
class AcmeAuthz:
    """An ACME authorization of one DNS name for one order."""

    id: str
    order_id: str
    acme_account: str
    identifier: str
    status: str
    expires: dt.datetime
    wildcard: bool


@dataclass(frozen=True)
class AcmeChallenge:
    """One challenge (``http-01`` or ``dns-01``) of an authorization."""

    id: str
    authz_id: str
    type: str
    token: str
    status: str
    validated: str | None
    error: dict[str, Any] | None


def _json_or_none(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


class AcmeRepository:
    """The ``acme_*`` tables.  Writes run inside the caller's transaction."""

    def __init__(self, engine: Engine) -> None:
        self._db = engine.db

    # ----- nonces (RFC 8555 §7.2) -----
    def add_nonce(self, nonce: str, expires: dt.datetime) -> None:
        """Remember a nonce handed out until ``expires`` (inside a transaction)."""
        self._db.run("INSERT INTO acme_nonces (nonce, expires) VALUES (?, ?)", (nonce, rfc3339(expires)))

    def use_nonce(self, nonce: str, now: dt.datetime) -> bool:
        """Consume ``nonce``: True when it was handed out, not used and not expired (inside a transaction)."""
        row = self._db.one("SELECT expires FROM acme_nonces WHERE nonce = ?", (nonce,))
        if row is None:
            return False
        deleted = self._db.run("DELETE FROM acme_nonces WHERE nonce = ?", (nonce,))
        return deleted == 1 and parse_rfc3339(row["expires"]) > now

    def purge_nonces(self, now: dt.datetime) -> int:
        """Forget expired nonces (inside a transaction); how many."""
        return self._db.run("DELETE FROM acme_nonces WHERE expires < ?", (rfc3339(now),))

    # ----- EAB keys -----
    def add_eab(self, *, kid: str, account_id: str, hmac_sealed: str, operator: str, by: str) -> None:
        """Record a new EAB key for ``account_id`` (inside a transaction).

        Raises:
            StateError: the key ID exists (exit 5).
        """
        try:
            self._db.run("INSERT INTO acme_eab_keys (kid, account_id, hmac_sealed, operator, state, created_at,"
                         " created_by) VALUES (?, ?, ?, ?, 'issued', ?, ?)",
                         (kid, account_id, hmac_sealed, operator, rfc3339(utcnow()), by))
        except ConstraintViolation as exc:
            raise StateError(f"EAB key {kid} already exists.") from exc

    def eab(self, kid: str) -> EabKey | None:
        """The EAB key ``kid``, or None."""
        r = self._db.one("SELECT kid, account_id, hmac_sealed, operator, state, created_at FROM acme_eab_keys"
                         " WHERE kid = ?", (kid,))
        if r is None:
            return None
        return EabKey(kid=r["kid"], account_id=r["account_id"], hmac_sealed=r["hmac_sealed"], operator=r["operator"],
                      state=r["state"], created_at=r["created_at"])

    def set_eab_state(self, kid: str, state: str, *, expect: str | None = None) -> bool:
        """Move EAB key ``kid`` to ``state`` and forget its HMAC key (inside a transaction).

        With ``expect``, only from that state (so two processes cannot both bind one key).

        Returns:
            True when a row changed.
        """
        sql = "UPDATE acme_eab_keys SET state = ?, hmac_sealed = NULL WHERE kid = ?"
        params: list[Any] = [state, kid]
        if expect is not None:
            sql += " AND state = ?"
            params.append(expect)
        return self._db.run(sql, params) == 1

    def eab_keys(self) -> list[EabKey]:
        """Every EAB key, oldest first."""
        return [EabKey(kid=r["kid"], account_id=r["account_id"], hmac_sealed=None, operator=r["operator"],
                       state=r["state"], created_at=r["created_at"])
                for r in self._db.all("SELECT kid, account_id, operator, state, created_at FROM acme_eab_keys"
                                      " ORDER BY created_at, kid")]

    def set_operator_active(self, name: str, active: bool) -> None:
        """Activate or deactivate operator ``name`` (the ``acme:<kid>`` identity of an EAB key)."""
        self._db.run("UPDATE operators SET active = ? WHERE name = ?", (int(active), name))

    # ----- accounts -----
    def add_account(self, *, acme_id: str, thumbprint: str, jwk: str, account_id: str, eab_kid: str,
                    contact: Sequence[str]) -> None:
        """Record a new ACME account (inside a transaction).

        Raises:
            StateError: the key or the EAB key is already bound to an account (exit 5).
        """
        try:
            self._db.run("INSERT INTO acme_accounts (id, thumbprint, jwk, account_id, eab_kid, status, contact,"
                         " created_at) VALUES (?, ?, ?, ?, ?, 'valid', ?, ?)",
                         (acme_id, thumbprint, jwk, account_id, eab_kid, json.dumps(list(contact)),
                          rfc3339(utcnow())))
        except ConstraintViolation as exc:
            raise StateError("this account key or EAB key is already bound to an ACME account.") from exc

    def _account(self, r: Any) -> AcmeAccount:
        return AcmeAccount(id=r["id"], thumbprint=r["thumbprint"], jwk=r["jwk"], account_id=r["account_id"],
                           eab_kid=r["eab_kid"], status=r["status"], contact=tuple(json.loads(r["contact"])),
                           created_at=r["created_at"])

    def account(self, acme_id: str) -> AcmeAccount | None:
        """The ACME account ``acme_id``, or None."""
        r = self._db.one("SELECT * FROM acme_accounts WHERE id = ?", (acme_id,))
        return self._account(r) if r else None

    def account_by_thumbprint(self, thumbprint: str) -> AcmeAccount | None:
        """The ACME account whose key has this RFC 7638 thumbprint, or None."""
        r = self._db.one("SELECT * FROM acme_accounts WHERE thumbprint = ?", (thumbprint,))
        return self._account(r) if r else None

    def accounts(self) -> list[AcmeAccount]:
        """Every ACME account, oldest first."""
        return [self._account(r) for r in self._db.all("SELECT * FROM acme_accounts ORDER BY created_at, id")]

    def update_account(self, acme_id: str, *, status: str | None = None, contact: Sequence[str] | None = None,
                       jwk: str | None = None, thumbprint: str | None = None) -> None:
        """Change an ACME account's status, contact or key (inside a transaction).

        Raises:
            NotFoundError: no such ACME account (exit 5).
            StateError: the new key is already another account's (exit 5).
        """
        sets: list[str] = []
        params: list[Any] = []
        for column, value in (("status", status), ("jwk", jwk), ("thumbprint", thumbprint),
                              ("contact", json.dumps(list(contact)) if contact is not None else None)):
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        if not sets:
            return
        try:
            changed = self._db.run(f"UPDATE acme_accounts SET {', '.join(sets)} WHERE id = ?", [*params, acme_id])
        except ConstraintViolation as exc:
            raise StateError("that key is already bound to another ACME account.") from exc
        if changed == 0:
            raise NotFoundError(f"no ACME account {acme_id}.")

    # ----- orders, authorizations, challenges -----
    def add_order(self, *, order_id: str, acme_account: str, identifiers: Sequence[str], expires: dt.datetime,
                  replaces: str | None, profile: str | None = None) -> None:
        """Record a new pending order (inside a transaction)."""
        self._db.run("INSERT INTO acme_orders (id, acme_account, status, identifiers, expires, replaces, created_at,"
                     " profile) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
                     (order_id, acme_account, json.dumps(list(identifiers)), rfc3339(expires), replaces,
                      rfc3339(utcnow()), profile))

    def order(self, order_id: str) -> AcmeOrder | None:
        """The order ``order_id``, or None."""
        r = self._db.one("SELECT * FROM acme_orders WHERE id = ?", (order_id,))
        if r is None:
            return None
        return AcmeOrder(id=r["id"], acme_account=r["acme_account"], status=r["status"],
                         identifiers=tuple(json.loads(r["identifiers"])), expires=parse_rfc3339(r["expires"]),
                         replaces=r["replaces"], serial=r["serial"], error=_json_or_none(r["error"]),
                         profile=r["profile"])

    def order_by_serial(self, serial: str) -> AcmeOrder | None:
        """The order that produced certificate ``serial``, or None."""
        r = self._db.one("SELECT id FROM acme_orders WHERE serial = ?", (serial,))
        return self.order(r["id"]) if r else None

    def orders_replacing(self, serial: str) -> list[str]:
        """IDs of orders that name ``serial`` in ``replaces`` and are not invalid."""
        return [r["id"] for r in self._db.all("SELECT id FROM acme_orders WHERE replaces = ? AND status <> 'invalid'",
                                              (serial,))]

    def set_order(self, order_id: str, *, status: str, serial: str | None = None,
                  error: dict[str, Any] | None = None, expect: str | None = None) -> bool:
        """Set an order's status (and serial or error) (inside a transaction); with ``expect`` only from that status.

        Returns:
            True when a row changed.
        """
        sql = "UPDATE acme_orders SET status = ?, serial = COALESCE(?, serial), error = ? WHERE id = ?"
        params: list[Any] = [status, serial, json.dumps(error) if error else None, order_id]
        if expect is not None:
            sql += " AND status = ?"
            params.append(expect)
        return self._db.run(sql, params) == 1

    def add_authz(self, *, authz_id: str, order_id: str, acme_account: str, identifier: str, expires: dt.datetime,
                  wildcard: bool) -> None:
        """Record a pending authorization (inside a transaction)."""
        self._db.run("INSERT INTO acme_authorizations (id, order_id, acme_account, identifier, status, expires,"
                     " wildcard) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                     (authz_id, order_id, acme_account, identifier, rfc3339(expires), int(wildcard)))

    def _authz(self, r: Any) -> AcmeAuthz:
        return AcmeAuthz(id=r["id"], order_id=r["order_id"], acme_account=r["acme_account"],
                         identifier=r["identifier"], status=r["status"], expires=parse_rfc3339(r["expires"]),
                         wildcard=bool(r["wildcard"]))

    def authz(self, authz_id: str) -> AcmeAuthz | None:
        """The authorization ``authz_id``, or None."""
        r = self._db.one("SELECT * FROM acme_authorizations WHERE id = ?", (authz_id,))
        return self._authz(r) if r else None

    def authzs_of(self, order_id: str) -> list[AcmeAuthz]:
        """The authorizations of an order, in identifier order."""
        return [self._authz(r) for r in self._db.all("SELECT * FROM acme_authorizations WHERE order_id = ?"
                                                     " ORDER BY identifier, id", (order_id,))]

    def pending_authz_count(self, acme_account: str, now: dt.datetime) -> int:
        """How many authorizations of ``acme_account``'s pending orders are pending and unexpired at ``now``
        (through the orders' account index: no index on the authorizations' account is needed)."""
        r = self._db.one("SELECT COUNT(*) AS n FROM acme_orders o JOIN acme_authorizations a ON a.order_id = o.id"
                         " WHERE o.acme_account = ? AND o.status = 'pending' AND a.status = 'pending'"
                         " AND a.expires > ?", (acme_account, rfc3339(now)))
        return int(r["n"]) if r else 0

    def set_authz(self, authz_id: str, status: str) -> None:
        """Set an authorization's status (inside a transaction)."""
        self._db.run("UPDATE acme_authorizations SET status = ? WHERE id = ?", (status, authz_id))

    def add_challenge(self, *, challenge_id: str, authz_id: str, type_: str, token: str) -> None:
        """Record a pending challenge (inside a transaction)."""
        self._db.run("INSERT INTO acme_challenges (id, authz_id, type, token, status) VALUES (?, ?, ?, ?, 'pending')",
                     (challenge_id, authz_id, type_, token))

    def _challenge(self, r: Any) -> AcmeChallenge:
        return AcmeChallenge(id=r["id"], authz_id=r["authz_id"], type=r["type"], token=r["token"],
                             status=r["status"], validated=r["validated"], error=_json_or_none(r["error"]))

    def challenge(self, challenge_id: str) -> AcmeChallenge | None:
        """The challenge ``challenge_id``, or None."""
        r = self._db.one("SELECT * FROM acme_challenges WHERE id = ?", (challenge_id,))
        return self._challenge(r) if r else None

    def challenges_of(self, authz_id: str) -> list[AcmeChallenge]:
        """The challenges of an authorization, by type."""
        return [self._challenge(r) for r in self._db.all("SELECT * FROM acme_challenges WHERE authz_id = ?"
                                                         " ORDER BY type", (authz_id,))]

    def set_challenge(self, challenge_id: str, *, status: str, validated: dt.datetime | None = None,
                      error: dict[str, Any] | None = None, expect: str | None = None) -> bool:
        """Set a challenge's outcome (inside a transaction); with ``expect`` only from that status.

        Returns:
            True when a row changed.
        """
        sql = "UPDATE acme_challenges SET status = ?, validated = ?, error = ? WHERE id = ?"
        params: list[Any] = [status, rfc3339(validated) if validated else None, json.dumps(error) if error else None,
                             challenge_id]
        if expect is not None:
            sql += " AND status = ?"
            params.append(expect)
        return self._db.run(sql, params) == 1

