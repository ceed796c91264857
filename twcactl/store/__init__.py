"""The on-disk CA home: layout, SQLite database, transactions, schema version.

Layout (architecture.md, "The store")::

    HOME/config.toml          settings (tomllib / tomli-w)
    HOME/twcactl.db           SQLite: the single source of truth
    HOME/ca/root.cer ...      CA certificates (PEM)
    HOME/ca/private/*.key     CA keys, encrypted PKCS#8, 0600 in a 0700 directory
    HOME/certs/<serial>.pem   issued certificates, written after the commit
    HOME/crl/                 CRLs (DER)

Every state change is one ``BEGIN IMMEDIATE`` transaction on a connection
opened with ``isolation_level=None``, WAL journal and ``synchronous=FULL``;
a busy home is waited for up to the lock timeout and then reported as
:class:`BusyError` (exit 75).  SQLite's locking needs a local filesystem.
All SQL lives in this module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import sqlite3
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twcactl.errors import BusyError, InputError, NotFoundError, StateError
from twcactl.rules.times import parse_rfc3339, rfc3339, utcnow
from twcactl.store.records import Account, CertRecord, LedgerEntry, LogEntry

SCHEMA_VERSION = 1
DB_NAME = "twcactl.db"
GENESIS_HASH = "0" * 64

#: Settings of config.toml and their defaults (issue 4 adds ``ca config``).
DEFAULT_SETTINGS: dict[str, Any] = {
    "renewal_window_days": 30,
    "refund_window_days": 30,
    "crl_days": 7,
    "crl_url": "",
    "ocsp_url": "",
    "ca_issuers_url": "",
    "pkcs11_module": "",
}

# Version 1: the whole lifecycle from the start (ledger, operators, hash-chained log, CRL numbers).
_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cas (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    issuing INTEGER NOT NULL DEFAULT 0,
    subject TEXT NOT NULL,
    serial TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    cert_file TEXT NOT NULL,
    key_file TEXT NOT NULL,
    der BLOB NOT NULL
);
CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('manager', 'auditor')),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    contact TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE account_aliases (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    alias TEXT NOT NULL,
    PRIMARY KEY (account_id, alias)
);
CREATE TABLE account_domains (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    domain TEXT NOT NULL,
    PRIMARY KEY (account_id, domain)
);
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    time TEXT NOT NULL,
    delta INTEGER NOT NULL,
    balance INTEGER NOT NULL,
    action TEXT NOT NULL,
    serial TEXT,
    operator TEXT NOT NULL,
    note TEXT
);
CREATE INDEX ledger_account ON ledger (account_id, id);
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    ca_name TEXT NOT NULL REFERENCES cas(name),
    account_id TEXT REFERENCES accounts(id),
    profile TEXT NOT NULL,
    cn TEXT,
    cn_lower TEXT,
    subject TEXT NOT NULL,
    sans TEXT NOT NULL DEFAULT '[]',
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'valid' CHECK (state IN ('valid', 'suspended', 'revoked')),
    revoked_at TEXT,
    reason TEXT,
    invalidity_date TEXT,
    cost INTEGER NOT NULL DEFAULT 0,
    validity TEXT NOT NULL DEFAULT '',
    contact TEXT,
    note TEXT,
    renewed_from TEXT REFERENCES certificates(serial),
    operator TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    der BLOB NOT NULL
);
CREATE INDEX cert_account ON certificates (account_id, not_after);
CREATE INDEX cert_cn ON certificates (cn_lower);
CREATE INDEX cert_not_after ON certificates (not_after);
CREATE INDEX cert_state ON certificates (state, not_after);
CREATE INDEX cert_ca_state ON certificates (ca_name, state);
CREATE INDEX cert_renewed_from ON certificates (renewed_from);
CREATE TABLE activity_log (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    operator TEXT NOT NULL,
    action TEXT NOT NULL,
    account TEXT,
    serial TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX log_account ON activity_log (account, seq);
CREATE INDEX log_serial ON activity_log (serial);
CREATE TABLE crls (
    id INTEGER PRIMARY KEY,
    ca_name TEXT NOT NULL REFERENCES cas(name),
    number INTEGER NOT NULL,
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL,
    entries INTEGER NOT NULL,
    log_seq INTEGER,
    log_hash TEXT,
    der BLOB,
    UNIQUE (ca_name, number)
);
"""

# Forward migrations: index N upgrades version N to N + 1.
_MIGRATIONS: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaRecord:
    """One CA certificate of the home (root first: position 0)."""

    name: str
    position: int
    issuing: bool
    cert_file: Path
    key_file: Path
    der: bytes

    def certificate(self) -> Any:
        """The parsed ``x509.Certificate``."""
        from cryptography import x509

        return x509.load_der_x509_certificate(self.der)


def log_hash(prev_hash: str, seq: int, time: str, operator: str, action: str, account: str | None,
             serial: str | None, details_json: str) -> str:
    """SHA-256 over an entry's content and the previous entry's hash (hex).

    The content is canonical JSON, so the hash does not depend on how SQLite
    returns the columns.
    """
    content = json.dumps([prev_hash, seq, time, operator, action, account, serial, details_json],
                         separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(content.encode("ascii")).hexdigest()


def default_home() -> Path:
    """``$TWCACTL_HOME`` is read by the CLI; this is the platform's user data directory for twcactl."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "twcactl"
    if os.uname().sysname == "Darwin":
        return Path.home() / "Library" / "Application Support" / "twcactl"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "twcactl"


class Store:
    """An open CA home.  Use :meth:`open` or :meth:`create`; close with :meth:`close`."""

    def __init__(self, home: Path, conn: sqlite3.Connection) -> None:
        self.home = home
        self.conn = conn
        self._settings: dict[str, Any] | None = None

    # ----- paths -----
    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.home / DB_NAME

    @property
    def config_path(self) -> Path:
        """``config.toml``."""
        return self.home / "config.toml"

    @property
    def ca_dir(self) -> Path:
        """CA certificates."""
        return self.home / "ca"

    @property
    def private_dir(self) -> Path:
        """CA keys (0700)."""
        return self.home / "ca" / "private"

    @property
    def certs_dir(self) -> Path:
        """Issued certificates (PEM, derived from the database)."""
        return self.home / "certs"

    @property
    def crl_dir(self) -> Path:
        """CRLs (DER)."""
        return self.home / "crl"

    @contextlib.contextmanager
    def files_lock(self) -> Iterator[None]:
        """Hold the lock for derived files (``certs/``, ``crl/``).

        Files are written after their transaction commits, so two writers (or a
        writer and ``ca check``) could otherwise interleave and leave an older
        CRL on disk; under this lock each writer reads the newest record first.
        """
        import fcntl

        fd = os.open(self.home / ".files.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def cert_path(self, serial: str) -> Path:
        """Where the PEM of certificate ``serial`` lives."""
        return self.certs_dir / f"{serial}.pem"

    # ----- opening -----
    @staticmethod
    def _connect(db_path: Path, lock_timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=lock_timeout)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # A big home's index pages stay in memory across a batch: with 2 MB (the default) each insert
            # into 200,000-row indexes re-reads pages through system calls; 16 MB is enough (measured).
            conn.execute("PRAGMA cache_size=-16384")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise BusyError("the CA home is busy (another twcactl is writing).", hint="retry, or raise --lock-timeout") from exc
            raise
        return conn

    @classmethod
    def exists(cls, home: Path) -> bool:
        """True when ``home`` holds a CA database."""
        return (home / DB_NAME).is_file()

    @classmethod
    def open(cls, home: Path, *, lock_timeout: float = 30.0) -> Store:
        """Open an existing CA home, migrating its schema forward when needed.

        Raises:
            NotFoundError: no CA home at ``home`` (exit 5).
            StateError: the home was written by a newer twcactl (exit 5).
            BusyError: locked past ``lock_timeout`` seconds (exit 75).
        """
        if not cls.exists(home):
            raise NotFoundError(f"no CA home at {home}.", hint="create one with: twcactl ca init (or pass --home DIR)")
        try:
            store = cls(home, cls._connect(home / DB_NAME, lock_timeout))
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{home / DB_NAME} is not a twcactl database.") from exc
        store._migrate()
        return store

    @classmethod
    def create(cls, home: Path, *, lock_timeout: float = 30.0) -> Store:
        """Create the directories and an empty database with the current schema.

        Raises:
            StateError: ``home`` already holds a CA (exit 5).
        """
        if cls.exists(home):
            raise StateError(f"{home} already holds a CA.", hint="use another --home, or remove it first")
        home.mkdir(parents=True, exist_ok=True)
        for sub in ("ca", "certs", "crl"):
            (home / sub).mkdir(exist_ok=True)
        from twcactl.fsutil import ensure_private_dir

        ensure_private_dir(home / "ca" / "private")
        conn = cls._connect(home / DB_NAME, lock_timeout)
        store = cls(home, conn)
        # DDL is transactional in SQLite: a crash leaves either no schema or all of it
        with store.transaction():
            _execute_script(conn, _SCHEMA_V1)
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT INTO meta (key, value) VALUES ('created_at', ?)", (rfc3339(utcnow()),))
        return store

    def _migrate(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise StateError(
                f"this CA home has schema version {version}; this twcactl knows up to {SCHEMA_VERSION}.",
                hint="upgrade twcactl",
            )
        while version < SCHEMA_VERSION:
            with self.transaction():
                _execute_script(self.conn, _MIGRATIONS[version - 1])
                version += 1
                self.conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

    def schema_version(self) -> int:
        """The database's schema version."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception.

        Raises:
            BusyError: the write lock was not had within the lock timeout (exit 75).
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise BusyError(
                    "the CA home is busy (another twcactl is writing); nothing was changed.",
                    hint="retry, or raise --lock-timeout",
                ) from exc
            raise
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # ----- meta and settings -----
    def meta(self, key: str) -> str | None:
        """A value of the ``meta`` table."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Set a ``meta`` value (inside a transaction)."""
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                          (key, value))

    @property
    def ca_key_encrypted(self) -> bool:
        """True when the CA keys need ``--ca-passphrase``."""
        return self.meta("ca_key_encrypted") != "0"

    def settings(self) -> dict[str, Any]:
        """config.toml merged over :data:`DEFAULT_SETTINGS`.

        Raises:
            InputError: config.toml is not valid TOML (exit 3).
        """
        if self._settings is None:
            merged = dict(DEFAULT_SETTINGS)
            if self.config_path.exists():
                try:
                    merged.update(tomllib.loads(self.config_path.read_text("utf-8")))
                except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                    raise InputError(f"{self.config_path} is not valid TOML: {exc}.") from exc
            self._settings = merged
        return self._settings

    def write_settings(self, settings: dict[str, Any]) -> None:
        """Write config.toml atomically (tomli-w)."""
        import tomli_w

        from twcactl.fsutil import write_file

        write_file(self.config_path, tomli_w.dumps(settings).encode("utf-8"), mode=0o644, force=True)
        self._settings = None

    # ----- CAs -----
    def add_ca(self, *, name: str, position: int, issuing: bool, subject: str, serial: str,
               not_before: dt.datetime, not_after: dt.datetime, cert_file: str, key_file: str, der: bytes) -> None:
        """Record a CA certificate (inside a transaction)."""
        self.conn.execute(
            "INSERT INTO cas (name, position, issuing, subject, serial, not_before, not_after, cert_file, key_file, der)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, position, int(issuing), subject, serial, rfc3339(not_before), rfc3339(not_after),
             cert_file, key_file, der),
        )

    def cas(self) -> list[CaRecord]:
        """The CA certificates, root first."""
        rows = self.conn.execute("SELECT * FROM cas ORDER BY position").fetchall()
        return [
            CaRecord(
                name=r["name"], position=r["position"], issuing=bool(r["issuing"]),
                cert_file=self.home / r["cert_file"], key_file=self.home / r["key_file"], der=r["der"],
            )
            for r in rows
        ]

    def issuing_ca(self) -> CaRecord:
        """The CA that signs end-entity certificates.

        Raises:
            StateError: the home has no issuing CA (exit 5).
        """
        for ca in self.cas():
            if ca.issuing:
                return ca
        raise StateError("this CA home has no issuing CA.")

    def ca_by_name(self, name: str) -> CaRecord:
        """The CA record named ``name`` (``root``, ``uca``, ``uca_1``...)."""
        for ca in self.cas():
            if ca.name == name:
                return ca
        raise NotFoundError(f"no CA named {name} in this home.")

    # ----- operators -----
    def add_operator(self, name: str, role: str, *, by: str) -> None:
        """Record an operator (inside a transaction).

        Raises:
            StateError: the operator exists (exit 5).
        """
        try:
            self.conn.execute("INSERT INTO operators (name, role, created_at, created_by) VALUES (?, ?, ?, ?)",
                              (name, role, rfc3339(utcnow()), by))
        except sqlite3.IntegrityError as exc:
            raise StateError(f"operator {name} already exists.") from exc

    def operator_role(self, name: str) -> str | None:
        """The role of operator ``name``, or None when unknown or inactive."""
        row = self.conn.execute("SELECT role FROM operators WHERE name = ? AND active = 1", (name,)).fetchone()
        return row[0] if row else None

    def operators(self) -> list[dict[str, Any]]:
        """All operators: ``[{"name", "role", "created_at", "created_by", "active"}]``."""
        return [dict(r) for r in self.conn.execute("SELECT * FROM operators ORDER BY name")]

    def require_manager(self, operator: str) -> None:
        """Refuse a state change by anyone but a manager (domain.md §3, roles).

        Raises:
            StateError: unknown operator or an auditor (exit 5).
        """
        role = self.operator_role(operator)
        if role is None:
            raise StateError(f"operator {operator} is not registered in this CA home.",
                             hint="a manager can add it: twcactl operator add NAME --role manager")
        if role != "manager":
            raise StateError(f"operator {operator} is an {role} and may only query.")

    # ----- accounts -----
    def add_account(self, account_id: str, org: str, *, aliases: Sequence[str], domains: Sequence[str]) -> None:
        """Record a new account with a zero balance (inside a transaction).

        Raises:
            StateError: the account exists (exit 5).
        """
        try:
            self.conn.execute("INSERT INTO accounts (id, org, balance, created_at) VALUES (?, ?, 0, ?)",
                              (account_id, org, rfc3339(utcnow())))
        except sqlite3.IntegrityError as exc:
            raise StateError(f"account {account_id} already exists.") from exc
        self.conn.executemany("INSERT OR IGNORE INTO account_aliases (account_id, alias) VALUES (?, ?)",
                              [(account_id, a) for a in aliases])
        self.conn.executemany("INSERT OR IGNORE INTO account_domains (account_id, domain) VALUES (?, ?)",
                              [(account_id, d) for d in domains])

    def get_account(self, account_id: str, *, ledger: bool = True) -> Account:
        """An account with its aliases, domains and (newest first) ledger.

        Raises:
            NotFoundError: no such account (exit 5).
        """
        row = self.conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"account {account_id} does not exist.", hint="list them with: twcactl account list")
        aliases = tuple(r[0] for r in self.conn.execute(
            "SELECT alias FROM account_aliases WHERE account_id = ? ORDER BY rowid", (account_id,)))
        domains = tuple(r[0] for r in self.conn.execute(
            "SELECT domain FROM account_domains WHERE account_id = ? ORDER BY rowid", (account_id,)))
        entries: tuple[LedgerEntry, ...] = ()
        if ledger:
            entries = tuple(
                LedgerEntry(time=r["time"], delta=r["delta"], balance=r["balance"], action=r["action"],
                            serial=r["serial"], operator=r["operator"], note=r["note"])
                for r in self.conn.execute("SELECT * FROM ledger WHERE account_id = ? ORDER BY id DESC", (account_id,))
            )
        return Account(id=row["id"], org=row["org"], org_aliases=aliases, domains=domains,
                       balance=row["balance"], ledger=entries)

    def list_accounts(self) -> list[Account]:
        """Every account (without ledgers), by ID."""
        ids = [r[0] for r in self.conn.execute("SELECT id FROM accounts ORDER BY id")]
        return [self.get_account(i, ledger=False) for i in ids]

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
        from twcactl.errors import QuotaError

        row = self.conn.execute("SELECT balance FROM accounts WHERE id = ?", (account_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"account {account_id} does not exist.")
        balance = row[0]
        time = rfc3339(utcnow())
        entries = []
        for delta, serial in changes:
            if balance + delta < 0:
                raise QuotaError(
                    f"account {account_id} has {balance} certificate-years; this needs {-delta}.",
                    hint=f"add more with: twcactl account credit {account_id} N",
                )
            balance += delta
            entries.append((account_id, time, delta, balance, action, serial, operator, note))
        self.conn.execute("UPDATE accounts SET balance = ? WHERE id = ?", (balance, account_id))
        self.conn.executemany(
            "INSERT INTO ledger (account_id, time, delta, balance, action, serial, operator, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", entries)
        return int(balance)

    # ----- certificates -----
    def add_certificate(self, *, serial: str, ca_name: str, account_id: str | None, profile: str, cn: str | None,
                        subject: str, sans: Sequence[str], not_before: dt.datetime, not_after: dt.datetime,
                        cost: int, contact: str | None, note: str | None, renewed_from: str | None,
                        operator: str, der: bytes, validity: str = "") -> None:
        """Record an issued certificate (inside a transaction).

        Raises:
            StateError: the serial is already taken (exit 5; a 64-bit random collision).
        """
        try:
            self.conn.execute(
                "INSERT INTO certificates (serial, ca_name, account_id, profile, cn, cn_lower, subject, sans,"
                " not_before, not_after, issued_at, cost, validity, contact, note, renewed_from, operator, sha256, der)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (serial, ca_name, account_id, profile, cn, cn.lower() if cn else None, subject, json.dumps(list(sans)),
                 rfc3339(not_before), rfc3339(not_after), rfc3339(utcnow()), cost, validity, contact, note,
                 renewed_from, operator, hashlib.sha256(der).hexdigest(), der),
            )
        except sqlite3.IntegrityError as exc:
            raise StateError(f"serial {serial} is already in use.") from exc

    def bulk_add_certificates(self, rows: Iterable[dict[str, Any]], *, batch: int = 10_000) -> int:
        """Load many certificate records at once, for benchmarks and imports (not for issuing).

        Each row holds the ``certificates`` columns: ``serial``, ``ca_name``,
        ``account_id``, ``profile``, ``cn``, ``subject``, ``not_before``,
        ``not_after`` (RFC 3339 text), ``der`` and optionally ``state``,
        ``revoked_at``, ``reason``, ``sans`` (list), ``cost``, ``validity``,
        ``operator``.  One transaction per ``batch`` rows; no ledger or log
        entries are written, so use it only on homes made for the purpose.

        Returns:
            The number of rows inserted.
        """
        now = rfc3339(utcnow())
        sql = ("INSERT INTO certificates (serial, ca_name, account_id, profile, cn, cn_lower, subject, sans,"
               " not_before, not_after, issued_at, state, revoked_at, reason, cost, validity, operator, sha256, der)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        total = 0
        chunk: list[tuple[Any, ...]] = []

        def flush() -> None:
            with self.transaction():
                self.conn.executemany(sql, chunk)
            chunk.clear()

        for r in rows:
            cn = r.get("cn")
            chunk.append((
                r["serial"], r["ca_name"], r.get("account_id"), r.get("profile", "ssl"), cn,
                cn.lower() if cn else None, r["subject"], json.dumps(list(r.get("sans", []))), r["not_before"],
                r["not_after"], r.get("issued_at", now), r.get("state", "valid"), r.get("revoked_at"), r.get("reason"),
                r.get("cost", 0), r.get("validity", ""), r.get("operator", "bulk"),
                hashlib.sha256(r["der"]).hexdigest(), r["der"],
            ))
            total += 1
            if len(chunk) >= batch:
                flush()
        if chunk:
            flush()
        # fold the WAL back into the database: a WAL of several hundred MB slows every later reader
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return total

    def _cert_from_row(self, r: sqlite3.Row, issuers: dict[str, str]) -> CertRecord:
        return CertRecord(
            serial=r["serial"], ca_name=r["ca_name"], account=r["account_id"], profile=r["profile"], cn=r["cn"],
            subject=r["subject"], sans=tuple(json.loads(r["sans"])),
            not_before=parse_rfc3339(r["not_before"]), not_after=parse_rfc3339(r["not_after"]),
            issued_at=r["issued_at"], state=r["state"], revoked_at=r["revoked_at"], reason=r["reason"],
            contact=r["contact"], note=r["note"], renewed_from=r["renewed_from"], cost=r["cost"],
            validity=r["validity"], invalidity_date=r["invalidity_date"],
            issuer=issuers.get(r["ca_name"], r["ca_name"]), path=str(self.cert_path(r["serial"])), der=r["der"],
        )

    def _issuer_subjects(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT name, subject FROM cas")}

    def get_certificate(self, serial: str) -> CertRecord:
        """The record of certificate ``serial`` (lowercase hex).

        Raises:
            NotFoundError: no such certificate (exit 5).
        """
        row = self.conn.execute("SELECT * FROM certificates WHERE serial = ?", (serial,)).fetchone()
        if row is None:
            raise NotFoundError(f"no certificate with serial {serial} in this CA home.")
        return self._cert_from_row(row, self._issuer_subjects())

    def get_certificates(self, serials: Sequence[str]) -> list[CertRecord]:
        """The records of ``serials``, in that order (unknown serials are left out)."""
        issuers = self._issuer_subjects()
        found: dict[str, CertRecord] = {}
        for start in range(0, len(serials), 500):
            chunk = list(serials[start:start + 500])
            rows = self.conn.execute(f"SELECT * FROM certificates WHERE serial IN ({','.join('?' * len(chunk))})", chunk)
            found.update((r["serial"], self._cert_from_row(r, issuers)) for r in rows)
        return [found[s] for s in serials if s in found]

    def find_certificate_by_der(self, der: bytes) -> CertRecord | None:
        """The record holding exactly this certificate, or None.

        Looked up by its serial (the primary key), then compared whole, so a
        certificate from another CA that happens to share a serial is not taken.
        """
        from cryptography import x509

        try:
            serial = format(x509.load_der_x509_certificate(der).serial_number, "x")
        except ValueError:
            return None
        row = self.conn.execute("SELECT * FROM certificates WHERE serial = ?", (serial,)).fetchone()
        if row is None or bytes(row["der"]) != der:
            return None
        return self._cert_from_row(row, self._issuer_subjects())

    def list_certificates(self, *, account: str | None = None, cn_glob: str | None = None,
                          domain: str | None = None, states: Sequence[str] | None = None,
                          not_after_min: dt.datetime | None = None, not_after_max: dt.datetime | None = None,
                          limit: int | None = None) -> list[CertRecord]:
        """Certificates matching every given filter, newest notAfter first.

        Args:
            account: the account ID.
            cn_glob: a shell-style glob on the CN, case-insensitive.
            domain: CN equal to the domain or ending in ``.domain``.
            states: stored states to include (``valid``, ``suspended``, ``revoked``).
            not_after_min / not_after_max: a notAfter range (inclusive).
            limit: at most this many rows.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if account is not None:
            clauses.append("account_id = ?")
            params.append(account)
        if cn_glob is not None:
            clauses.append("cn_lower GLOB ?")
            params.append(cn_glob.lower())
        if domain is not None:
            d = domain.lower().rstrip(".")
            clauses.append("(cn_lower = ? OR cn_lower GLOB ?)")
            params.extend([d, "*." + _glob_escape(d)])
        if states is not None:
            if not states:
                return []
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if not_after_min is not None:
            clauses.append("not_after >= ?")
            params.append(rfc3339(not_after_min))
        if not_after_max is not None:
            clauses.append("not_after <= ?")
            params.append(rfc3339(not_after_max))
        sql = "SELECT * FROM certificates"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY not_after DESC, serial"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        issuers = self._issuer_subjects()
        return [self._cert_from_row(r, issuers) for r in self.conn.execute(sql, params)]

    def set_certificate_state(self, serial: str, state: str, *, revoked_at: dt.datetime | None = None,
                              reason: str | None = None, invalidity_date: dt.datetime | None = None) -> None:
        """Change a certificate's stored state (inside a transaction); ``valid`` clears the revocation fields."""
        self.conn.execute(
            "UPDATE certificates SET state = ?, revoked_at = ?, reason = ?, invalidity_date = ? WHERE serial = ?",
            (state, rfc3339(revoked_at) if revoked_at else None, reason,
             rfc3339(invalidity_date) if invalidity_date else None, serial),
        )

    def revoked_entries(self, ca_name: str) -> list[tuple[str, str, str, str | None]]:
        """``(serial, revoked_at, reason, invalidity_date)`` of every revoked or held certificate of a CA."""
        return [tuple(r) for r in self.conn.execute(  # type: ignore[misc]
            "SELECT serial, revoked_at, reason, invalidity_date FROM certificates"
            " WHERE ca_name = ? AND state IN ('revoked', 'suspended')", (ca_name,))]

    def count_revoked(self, ca_name: str) -> int:
        """How many certificates of ``ca_name`` are revoked or held (the entries its CRL must list)."""
        row = self.conn.execute("SELECT COUNT(*) FROM certificates WHERE ca_name = ? AND state IN ('revoked', 'suspended')",
                                (ca_name,)).fetchone()
        return int(row[0])

    def renewals_of(self, serial: str) -> list[str]:
        """Serials of the certificates that renewed ``serial``."""
        return [r[0] for r in self.conn.execute("SELECT serial FROM certificates WHERE renewed_from = ?", (serial,))]

    # ----- CRLs -----
    def next_crl_number(self, ca_name: str) -> int:
        """One more than the highest cRLNumber issued for ``ca_name`` (1 for the first CRL)."""
        row = self.conn.execute("SELECT MAX(number) FROM crls WHERE ca_name = ?", (ca_name,)).fetchone()
        return (row[0] or 0) + 1

    def add_crl(self, *, ca_name: str, number: int, this_update: dt.datetime, next_update: dt.datetime,
                entries: int, der: bytes) -> None:
        """Record a generated CRL with the activity log's head (inside a transaction), so a
        truncated log shows against the newest CRL record (architecture.md, "The store")."""
        head = self.meta("log_head") or f"0:{GENESIS_HASH}"
        seq, digest = head.split(":", 1)
        self.conn.execute(
            "INSERT INTO crls (ca_name, number, this_update, next_update, entries, log_seq, log_hash, der)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ca_name, number, rfc3339(this_update), rfc3339(next_update), entries, int(seq), digest, der),
        )

    def latest_crl(self, ca_name: str) -> dict[str, Any] | None:
        """The newest CRL record of ``ca_name`` (``number``, ``this_update``, ``next_update``, ``entries``, ``der``)."""
        row = self.conn.execute("SELECT * FROM crls WHERE ca_name = ? ORDER BY number DESC LIMIT 1",
                                (ca_name,)).fetchone()
        return dict(row) if row else None

    def crl_path(self, ca_name: str) -> Path:
        """Where the current CRL (DER) of ``ca_name`` lives."""
        return self.crl_dir / f"{ca_name}.crl"

    # ----- account changes -----
    def update_account(self, account_id: str, *, org: str | None = None, add_domains: Sequence[str] = (),
                       remove_domains: Sequence[str] = (), add_aliases: Sequence[str] = (),
                       remove_aliases: Sequence[str] = ()) -> None:
        """Change an account's organisation, domains and aliases (inside a transaction).

        Raises:
            NotFoundError: no such account, or a domain/alias to remove is not there (exit 5).
        """
        self.get_account(account_id, ledger=False)
        if org is not None:
            self.conn.execute("UPDATE accounts SET org = ? WHERE id = ?", (org, account_id))
        for table, column, values in (("account_domains", "domain", remove_domains),
                                      ("account_aliases", "alias", remove_aliases)):
            for value in values:
                cur = self.conn.execute(f"DELETE FROM {table} WHERE account_id = ? AND {column} = ?",
                                        (account_id, value))
                if cur.rowcount == 0:
                    raise NotFoundError(f"account {account_id} has no {column} {value}.")
        self.conn.executemany("INSERT OR IGNORE INTO account_domains (account_id, domain) VALUES (?, ?)",
                              [(account_id, d) for d in add_domains])
        self.conn.executemany("INSERT OR IGNORE INTO account_aliases (account_id, alias) VALUES (?, ?)",
                              [(account_id, a) for a in add_aliases])

    def set_operator_role(self, name: str, role: str) -> None:
        """Change an existing operator's role (inside a transaction)."""
        cur = self.conn.execute("UPDATE operators SET role = ?, active = 1 WHERE name = ?", (role, name))
        if cur.rowcount == 0:
            raise NotFoundError(f"operator {name} does not exist.")

    def find_certificates(self, *, now: dt.datetime, status: str | None = None, expiring_within: int | None = None,
                          account: str | None = None, cn_glob: str | None = None, domain: str | None = None,
                          limit: int | None = None) -> list[CertRecord]:
        """Certificates by the contract's status words (cli-contract.md, JSON shapes), as indexed queries.

        Args:
            now: the time the status words are judged at.
            status: ``valid``, ``expiring`` (valid and inside the renewal window),
                ``suspended``, ``revoked`` or ``expired``.
            expiring_within: valid and ending within this many days (combines with ``status``).
            account / cn_glob / domain / limit: as :meth:`list_certificates`.
        """
        window = int(self.settings()["renewal_window_days"])
        second = dt.timedelta(seconds=1)
        horizon = now + dt.timedelta(days=window)
        states: list[str] | None = None
        low: dt.datetime | None = None
        high: dt.datetime | None = None
        if status in ("revoked", "suspended"):
            states = [status]
        elif status == "expired":
            states, high = ["valid"], now
        elif status == "expiring":
            states, low, high = ["valid"], now + second, horizon
        elif status == "valid":
            states, low = ["valid"], horizon + second
        if expiring_within is not None:
            end = now + dt.timedelta(days=expiring_within)
            states = ["valid"] if states in (None, ["valid"]) else []
            low = max(low or now + second, now + second)
            high = min(high or end, end)
        return self.list_certificates(account=account, cn_glob=cn_glob, domain=domain, states=states,
                                      not_after_min=low, not_after_max=high, limit=limit)

    # ----- activity log -----
    def append_log(self, *, operator: str, action: str, account: str | None = None, serial: str | None = None,
                   details: dict[str, Any] | None = None) -> LogEntry:
        """Append a hash-chained entry (inside a transaction); never holds a secret."""
        return self.append_logs([(operator, action, account, serial, details)])[0]

    def append_logs(self, entries: Sequence[tuple[str, str, str | None, str | None, dict[str, Any] | None]]
                    ) -> list[LogEntry]:
        """Append several hash-chained entries ``(operator, action, account, serial, details)`` in order
        (inside a transaction), with one read of the head and one write of it."""
        row = self.conn.execute("SELECT seq, hash FROM activity_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0], row[1]) if row else (0, GENESIS_HASH)
        time = rfc3339(utcnow())
        rows = []
        out = []
        for operator, action, account, serial, details in entries:
            seq += 1
            details_json = json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            digest = log_hash(prev, seq, time, operator, action, account, serial, details_json)
            rows.append((seq, time, operator, action, account, serial, details_json, prev, digest))
            out.append(LogEntry(seq=seq, time=time, operator=operator, action=action, account=account, serial=serial,
                                details=details or {}))
            prev = digest
        self.conn.executemany(
            "INSERT INTO activity_log (seq, time, operator, action, account, serial, details, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if rows:
            self.set_meta("log_head", f"{seq}:{prev}")
        return out

    def log_entries(self, *, account: str | None = None, action: str | None = None, operator: str | None = None,
                    serial: str | None = None, limit: int | None = None) -> list[LogEntry]:
        """Activity-log entries, newest first, filtered by account, action, operator and serial."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("account", account), ("action", action), ("operator", operator), ("serial", serial)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM activity_log"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [
            LogEntry(seq=r["seq"], time=r["time"], operator=r["operator"], action=r["action"], account=r["account"],
                     serial=r["serial"], details=json.loads(r["details"]))
            for r in self.conn.execute(sql, params)
        ]


    def raw_log(self) -> Iterator[sqlite3.Row]:
        """Every activity-log row in ``seq`` order, with its stored hashes (for verification)."""
        yield from self.conn.execute("SELECT * FROM activity_log ORDER BY seq")

    def crl_anchors(self) -> list[tuple[str, int, int, str]]:
        """``(ca_name, crl number, log_seq, log_hash)`` of every CRL record: log heads seen at CRL time."""
        return [tuple(r) for r in self.conn.execute(  # type: ignore[misc]
            "SELECT ca_name, number, log_seq, log_hash FROM crls WHERE log_seq IS NOT NULL ORDER BY id")]


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated DDL inside the caller's transaction (``executescript`` would commit)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _glob_escape(text: str) -> str:
    """Escape GLOB metacharacters so a domain matches literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
