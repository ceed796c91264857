"""RA accounts, their agreed domains and organisation aliases, and the certificate-year ledger (domain.md §2-§3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import accumulate

from twcactl.errors import NotFoundError, StateError
from twcactl.rules.quota import require_balance
from twcactl.rules.times import rfc3339, utcnow
from twcactl.store.executor import ConstraintViolation
from twcactl.store.interface import Engine
from twcactl.store.records import Account, LedgerEntry, LedgerTotal

# column -> table of an account's two lists; both keep insertion order
#: An account's EV identity columns (schema version 2); the business number is the ID's first 8 digits.
IDENTITY_COLUMNS = ("jurisdiction_country", "jurisdiction_state", "jurisdiction_locality", "business_category")
_LISTS = {"domain": "account_domains", "alias": "account_aliases"}


class AccountRepository:
    """The ``accounts``, ``account_domains``, ``account_aliases`` and ``ledger`` tables."""

    def __init__(self, engine: Engine) -> None:
        self._db = engine.db

    def add(self, account_id: str, org: str, *, aliases: Sequence[str], domains: Sequence[str],
            identity: Mapping[str, str | None] | None = None) -> None:
        """Record a new account with a zero balance (inside a transaction).

        Args:
            identity: EV identity columns to set (:data:`IDENTITY_COLUMNS`); the others keep their defaults.

        Raises:
            StateError: the account exists (exit 5).
        """
        try:
            self._db.run("INSERT INTO accounts (id, org, balance, created_at) VALUES (?, ?, 0, ?)",
                         (account_id, org, rfc3339(utcnow())))
            self._set_identity(account_id, identity or {})
        except ConstraintViolation as exc:
            raise StateError(f"account {account_id} already exists.") from exc
        self._add_values(account_id, "alias", aliases)
        self._add_values(account_id, "domain", domains)

    def get(self, account_id: str, *, ledger: bool = True) -> Account:
        """An account with its aliases, domains and (when ``ledger``) its ledger, newest first.

        Raises:
            NotFoundError: no such account (exit 5).
        """
        row = self._db.one(f"SELECT id, org, balance, {', '.join(IDENTITY_COLUMNS)} FROM accounts WHERE id = ?",
                           (account_id,))
        if row is None:
            raise NotFoundError(f"account {account_id} does not exist.", hint="list them with: twcactl account list")
        lists = self._lists(account_id)
        return Account(id=row["id"], org=row["org"], org_aliases=lists["alias"],
                       domains=lists["domain"], balance=row["balance"],
                       ledger=self.ledger(account_id) if ledger else (),
                       **{column: row[column] for column in IDENTITY_COLUMNS})

    def all(self) -> list[Account]:
        """Every account (without ledgers), by ID."""
        return [self.get(r["id"], ledger=False) for r in self._db.all("SELECT id FROM accounts ORDER BY id")]

    def ledger(self, account_id: str) -> tuple[LedgerEntry, ...]:
        """The ledger entries of ``account_id``, newest first (empty for an unknown account)."""
        return tuple(
            LedgerEntry(time=r["time"], delta=r["delta"], balance=r["balance"], action=r["action"],
                        serial=r["serial"], operator=r["operator"], note=r["note"])
            for r in self._db.all("SELECT time, delta, balance, action, serial, operator, note FROM ledger"
                                  " WHERE account_id = ? ORDER BY id DESC", (account_id,))
        )

    def update(self, account_id: str, *, org: str | None = None, add_domains: Sequence[str] = (),
               remove_domains: Sequence[str] = (), add_aliases: Sequence[str] = (),
               remove_aliases: Sequence[str] = (), identity: Mapping[str, str | None] | None = None) -> None:
        """Change an account's organisation, domains, aliases and EV identity (inside a transaction).

        Args:
            identity: EV identity columns to set (:data:`IDENTITY_COLUMNS`; None clears state or locality).

        Raises:
            NotFoundError: no such account, or a domain/alias to remove is not there (exit 5).
        """
        self.get(account_id, ledger=False)
        if org is not None:
            self._db.run("UPDATE accounts SET org = ? WHERE id = ?", (org, account_id))
        self._set_identity(account_id, identity or {})
        for column, values in (("domain", remove_domains), ("alias", remove_aliases)):
            for value in values:
                if self._db.run(f"DELETE FROM {_LISTS[column]} WHERE account_id = ? AND {column} = ?",
                                (account_id, value)) == 0:
                    raise NotFoundError(f"account {account_id} has no {column} {value}.")
        self._add_values(account_id, "domain", add_domains)
        self._add_values(account_id, "alias", add_aliases)

    def change_balance(self, account_id: str, delta: int, *, action: str, operator: str,
                       serial: str | None = None, note: str | None = None) -> int:
        """Add ``delta`` certificate-years and write the ledger entry (inside a transaction).

        Returns:
            The new balance.

        Raises:
            NotFoundError: no such account (exit 5).
            QuotaError: the balance would go below zero (exit 5).
        """
        return self.change_balance_many(account_id, [(delta, serial)], action=action, operator=operator, note=note)

    def change_balance_many(self, account_id: str, changes: Sequence[tuple[int, str | None]], *, action: str,
                            operator: str, note: str | None = None) -> int:
        """Several ledger entries of one action at once, e.g. a batch of issues (inside a transaction).

        Args:
            changes: ``(delta, serial)`` per entry, in order; each entry records the running balance.

        Returns:
            The final balance.

        Raises:
            NotFoundError: no such account (exit 5).
            QuotaError: the balance would go below zero at any entry (exit 5).
        """
        running = list(accumulate(delta for delta, _serial in changes))
        total, lowest = (running[-1] if running else 0), min([0, *running])
        # one round trip reads and writes (RETURNING: SQLite 3.35, PostgreSQL) when no entry would overdraw;
        # otherwise the balance is read and the entries below name the one that would
        row = self._db.one("UPDATE accounts SET balance = balance + ? WHERE id = ? AND balance + ? >= 0"
                           " RETURNING balance", (total, account_id, lowest))
        updated = row is not None
        if row is None:
            row = self._db.one("SELECT balance FROM accounts WHERE id = ?", (account_id,))
        if row is None:
            raise NotFoundError(f"account {account_id} does not exist.")
        balance = int(row["balance"]) - (total if updated else 0)
        time = rfc3339(utcnow())
        entries = []
        for delta, serial in changes:
            if delta < 0:  # the backstop under every charge: the same rule the workflows check first
                require_balance(account_id, balance, -delta)
            balance += delta
            entries.append((account_id, time, delta, balance, action, serial, operator, note))
        if not updated:  # only when no entry overdraws after all (the rule above raised otherwise)
            self._db.run("UPDATE accounts SET balance = ? WHERE id = ?", (balance, account_id))
        self._db.run_many(
            "INSERT INTO ledger (account_id, time, delta, balance, action, serial, operator, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", entries)
        return balance

    def ledger_totals(self) -> list[LedgerTotal]:
        """Per account: its balance, the sum of its ledger deltas and its newest entry's balance (``ca check``)."""
        rows = self._db.all(
            "SELECT a.id AS id, a.balance AS balance, COALESCE(SUM(l.delta), 0) AS total,"
            " (SELECT balance FROM ledger WHERE account_id = a.id ORDER BY id DESC LIMIT 1) AS last"
            " FROM accounts a LEFT JOIN ledger l ON l.account_id = a.id GROUP BY a.id, a.balance"
        )
        return [LedgerTotal(account_id=r["id"], balance=r["balance"], total=r["total"], last=r["last"]) for r in rows]

    def _set_identity(self, account_id: str, identity: Mapping[str, str | None]) -> None:
        for column, value in identity.items():
            if column not in IDENTITY_COLUMNS:
                raise ValueError(f"not an identity column: {column!r}")  # a programming error
            self._db.run(f"UPDATE accounts SET {column} = ? WHERE id = ?", (value, account_id))

    def _lists(self, account_id: str) -> dict[str, tuple[str, ...]]:
        """The account's aliases and domains (``{"alias": ..., "domain": ...}``), each in insertion order, in one
        query: one round trip fewer for every command that reads an account on PostgreSQL (issue 29)."""
        order = self._db.dialect.insertion_order
        rows = self._db.all(
            f"SELECT 'alias' AS kind, alias AS value, {order} AS position FROM account_aliases WHERE account_id = ?"
            f" UNION ALL SELECT 'domain' AS kind, domain AS value, {order} AS position FROM account_domains"
            " WHERE account_id = ? ORDER BY kind, position", (account_id, account_id))
        found: dict[str, list[str]] = {"alias": [], "domain": []}
        for r in rows:
            found[r["kind"]].append(r["value"])
        return {kind: tuple(values) for kind, values in found.items()}

    def _add_values(self, account_id: str, column: str, values: Sequence[str]) -> None:
        # a value already there is kept as it is (and keeps its place in the order)
        self._db.run_many(f"INSERT INTO {_LISTS[column]} (account_id, {column}) VALUES (?, ?) ON CONFLICT DO NOTHING",
                          [(account_id, v) for v in values])
