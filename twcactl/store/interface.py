"""What a store engine and each repository provide (typing Protocols).

:class:`twcactl.store.Store` composes one :class:`Engine` (the connection,
transactions, schema, ``meta``) with one object per repository, reached as
``store.accounts``, ``store.certificates``, ``store.crls``,
``store.operators``, ``store.log`` and ``store.cas``.  SQLite is the engine
today (:mod:`twcactl.store.sqlite`); a PostgreSQL engine implements
:class:`Engine` and :class:`Executor` and reuses the repositories as they are
(see :mod:`twcactl.store.executor` for the SQL conventions that allow it).

Nothing engine-specific crosses these interfaces: records are the frozen
dataclasses of :mod:`twcactl.store.records`, times are aware datetimes or
RFC 3339 text, blobs are ``bytes``, and a transaction yields nothing.  Every
write runs inside :meth:`Engine.transaction`; reads may run outside one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from twcactl.store.executor import Dialect, Row

if TYPE_CHECKING:
    from twcactl.store.records import (
        Account,
        BlockedKey,
        CaRecord,
        CertRecord,
        CrlAnchor,
        LedgerEntry,
        LedgerTotal,
        LogEntry,
        RawLogEntry,
        RevokedRow,
        StoredCertificate,
    )

#: ``(operator, action, account, serial, details)`` of one activity-log entry to append.
LogItem = tuple[str, str, "str | None", "str | None", "dict[str, Any] | None"]


class Executor(Protocol):
    """Runs qmark-style SQL for the repositories (:mod:`twcactl.store.executor`)."""

    @property
    def dialect(self) -> Dialect:
        """The engine's SQL fragments."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row, or None."""

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row."""

    def iterate(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Row]:
        """Rows one at a time."""

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write; rows changed.  Raises ConstraintViolation."""

    def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """One write per parameter row.  Raises ConstraintViolation."""


class Engine(Protocol):
    """The unit of work: one connection, its transactions, the schema and ``meta``."""

    @property
    def db(self) -> Executor:
        """The executor the repositories run their SQL through."""

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction, rolled back on any exception.  Raises BusyError (exit 75)."""

    def schema_version(self) -> int:
        """The database's schema version (0 when none)."""

    def create_schema(self) -> None:
        """Create every table at the current version (one transaction)."""

    def migrate(self) -> None:
        """Bring an older schema forward.  Raises StateError for a newer one."""

    def meta(self, key: str) -> str | None:
        """A ``meta`` value."""

    def set_meta(self, key: str, value: str) -> None:
        """Set a ``meta`` value (inside a transaction)."""

    def integrity_check(self) -> str | None:
        """None when the database engine finds itself sound, else its complaint."""

    def backup_to(self, target: Path) -> int:
        """A consistent, self-contained copy of the database; the certificate records it holds."""

    def checkpoint(self) -> None:
        """Fold pending journal pages into the database (after a bulk load)."""

    def close(self) -> None:
        """Close the connection."""


class CaRepository(Protocol):
    """The CA certificates of the home (root first)."""

    def add(self, *, name: str, position: int, issuing: bool, subject: str, serial: str, not_before: dt.datetime,
            not_after: dt.datetime, cert_file: str, key_file: str, der: bytes, issuer: str | None = None) -> None: ...

    def all(self) -> list[CaRecord]: ...

    def issuing(self) -> CaRecord: ...

    def by_name(self, name: str) -> CaRecord: ...

    def chain(self, name: str) -> list[CaRecord]: ...

    def set_active(self, name: str) -> None: ...

    def retire(self, name: str, when: dt.datetime) -> None: ...

    def revoke(self, name: str, when: dt.datetime, reason: str) -> None: ...

    def revoked_entries(self, issuer: str) -> list[tuple[str, str, str, None]]: ...

    def next_position(self) -> int: ...


class OperatorRepository(Protocol):
    """Operators and their roles (domain.md §3)."""

    def add(self, name: str, role: str, *, by: str) -> None: ...

    def role(self, name: str) -> str | None: ...

    def all(self) -> list[dict[str, Any]]: ...

    def set_role(self, name: str, role: str) -> None: ...

    def require_manager(self, operator: str) -> None: ...


class AccountRepository(Protocol):
    """RA accounts, their domains and aliases, and the certificate-year ledger (domain.md §2-§3)."""

    def add(self, account_id: str, org: str, *, aliases: Sequence[str], domains: Sequence[str],
            identity: Mapping[str, str | None] | None = None) -> None: ...

    def get(self, account_id: str, *, ledger: bool = True) -> Account: ...

    def all(self) -> list[Account]: ...

    def update(self, account_id: str, *, org: str | None = None, add_domains: Sequence[str] = (),
               remove_domains: Sequence[str] = (), add_aliases: Sequence[str] = (),
               remove_aliases: Sequence[str] = (), identity: Mapping[str, str | None] | None = None) -> None: ...

    def change_balance(self, account_id: str, delta: int, *, action: str, operator: str,
                       serial: str | None = None, note: str | None = None) -> int: ...

    def change_balance_many(self, account_id: str, changes: Sequence[tuple[int, str | None]], *, action: str,
                            operator: str, note: str | None = None) -> int: ...

    def ledger(self, account_id: str) -> tuple[LedgerEntry, ...]: ...

    def ledger_totals(self) -> list[LedgerTotal]: ...


class CertificateRepository(Protocol):
    """Issued certificates, their states and the status-word queries (domain.md §5)."""

    def add(self, *, serial: str, ca_name: str, account_id: str | None, profile: str, cn: str | None,
            subject: str, sans: Sequence[str], not_before: dt.datetime, not_after: dt.datetime, cost: int,
            contact: str | None, note: str | None, renewed_from: str | None, operator: str, der: bytes,
            validity: str = "", paid_until: dt.datetime | None = None) -> None: ...

    def bulk_add(self, rows: Iterable[dict[str, Any]], *, batch: int = 10_000) -> int: ...

    def get(self, serial: str) -> CertRecord: ...

    def with_prefix(self, prefix: str, *, limit: int = 10) -> list[str]: ...

    def get_many(self, serials: Sequence[str]) -> list[CertRecord]: ...

    def find_by_der(self, der: bytes) -> CertRecord | None: ...

    def matching(self, *, account: str | None = None, cn_glob: str | None = None, domain: str | None = None,
                 states: Sequence[str] | None = None, not_after_min: dt.datetime | None = None,
                 not_after_max: dt.datetime | None = None, limit: int | None = None,
                 renewed: bool | None = None, soonest_first: bool = False) -> list[CertRecord]: ...

    def find(self, *, now: dt.datetime, status: str | None = None, expiring_within: int | None = None,
             account: str | None = None, cn_glob: str | None = None, domain: str | None = None,
             limit: int | None = None, soonest_first: bool = False) -> list[CertRecord]: ...

    def set_state(self, serial: str, state: str, *, revoked_at: dt.datetime | None = None,
                  reason: str | None = None, invalidity_date: dt.datetime | None = None) -> None: ...

    def revoked_entries(self, ca_name: str) -> list[RevokedRow]: ...

    def count_revoked(self, ca_name: str) -> int: ...

    def renewals_of(self, serial: str) -> list[str]: ...

    def carried_and_refunded(self) -> list[str]: ...

    def stored(self) -> Iterator[StoredCertificate]: ...

    def states(self) -> Iterator[dict[str, Any]]: ...


class CrlRepository(Protocol):
    """CRL numbers and the CRLs generated (RFC 5280 §5.2.3)."""

    def next_number(self, ca_name: str) -> int: ...

    def add(self, *, ca_name: str, number: int, this_update: dt.datetime, next_update: dt.datetime,
            entries: int, der: bytes) -> None: ...

    def latest(self, ca_name: str) -> dict[str, Any] | None: ...

    def anchors(self) -> list[CrlAnchor]: ...


class LogRepository(Protocol):
    """The hash-chained activity log (architecture.md, "The store")."""

    def append(self, *, operator: str, action: str, account: str | None = None, serial: str | None = None,
               details: dict[str, Any] | None = None) -> LogEntry: ...

    def append_many(self, entries: Sequence[LogItem]) -> list[LogEntry]: ...

    def entries(self, *, account: str | None = None, action: str | None = None, operator: str | None = None,
                serial: str | None = None, limit: int | None = None) -> list[LogEntry]: ...

    def raw(self) -> Iterator[RawLogEntry]: ...


class KeyRepository(Protocol):
    """Certificate key fingerprints and the keys blocked by a keyCompromise revocation (BR §6.1.1.3)."""

    def set_key(self, serial: str, spki_sha256: str) -> None: ...

    def serials_with_key(self, spki_sha256: str) -> list[str]: ...

    def block(self, spki_sha256: str, *, serial: str, reason: str, operator: str,
              when: dt.datetime | None = None) -> bool: ...

    def blocked(self, spki_sha256: str) -> BlockedKey | None: ...

    def all_blocked(self) -> list[BlockedKey]: ...

    def index_missing(self) -> int: ...
