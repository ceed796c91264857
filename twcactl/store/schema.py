"""The database schema and its forward migrations (architecture.md, "The store").

The DDL is SQLite's; a PostgreSQL engine keeps its own DDL with the same
tables and columns (``BLOB`` -> ``bytea``, ``INTEGER PRIMARY KEY`` -> an
identity column) so that the repositories' SQL runs on both.  Changing a
table here needs a migration: homes made before must keep opening.
"""

from __future__ import annotations

from collections.abc import Iterator

from twcactl.errors import StateError

SCHEMA_VERSION = 9

# Version 1: the whole lifecycle from the start (ledger, operators, hash-chained log, CRL numbers).
SCHEMA_V1 = """
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

# Version 2 (issue 12): an account's EV identity (jurisdiction and business category; the business number is
# the account ID's first 8 digits), each certificate's key (SHA-256 of its DER SubjectPublicKeyInfo, for
# "same key" lookups) and the keys blocked by a keyCompromise revocation (CA/B Forum BR §6.1.1.3).
# Existing accounts get TW (a unified business number is Taiwan's) and "Private Organization" (what EV
# certificates carried before when the CSR gave none); existing certificates' keys are filled in by
# ``store.keys.index_missing`` on the first open after the migration (SQL cannot parse a certificate).
SCHEMA_V2 = """
ALTER TABLE accounts ADD COLUMN jurisdiction_country TEXT NOT NULL DEFAULT 'TW';
ALTER TABLE accounts ADD COLUMN jurisdiction_state TEXT;
ALTER TABLE accounts ADD COLUMN jurisdiction_locality TEXT;
ALTER TABLE accounts ADD COLUMN business_category TEXT NOT NULL DEFAULT 'Private Organization';
ALTER TABLE certificates ADD COLUMN spki_sha256 TEXT;
CREATE INDEX cert_spki ON certificates (spki_sha256);
CREATE TABLE blocked_keys (
    spki_sha256 TEXT PRIMARY KEY,
    serial TEXT,
    reason TEXT NOT NULL,
    blocked_at TEXT NOT NULL,
    operator TEXT NOT NULL
);
"""

# Version 3 (issue 15): the ACME server's state (store/acme.py): nonces, EAB keys, ACME accounts, orders,
# authorizations and challenges, so that any `twcactl serve` process over the store answers any request.
SCHEMA_V3 = """
CREATE TABLE acme_nonces (
    nonce TEXT PRIMARY KEY,
    expires TEXT NOT NULL
);
CREATE INDEX acme_nonces_expires ON acme_nonces (expires);
CREATE TABLE acme_eab_keys (
    kid TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    hmac_sealed TEXT,
    operator TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'issued' CHECK (state IN ('issued', 'bound', 'revoked')),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE acme_accounts (
    id TEXT PRIMARY KEY,
    thumbprint TEXT NOT NULL UNIQUE,
    jwk TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    eab_kid TEXT NOT NULL UNIQUE REFERENCES acme_eab_keys(kid),
    status TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'deactivated', 'revoked')),
    contact TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL
);
CREATE TABLE acme_orders (
    id TEXT PRIMARY KEY,
    acme_account TEXT NOT NULL REFERENCES acme_accounts(id),
    status TEXT NOT NULL,
    identifiers TEXT NOT NULL,
    expires TEXT NOT NULL,
    replaces TEXT,
    serial TEXT REFERENCES certificates(serial),
    error TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX acme_orders_account ON acme_orders (acme_account);
CREATE TABLE acme_authorizations (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES acme_orders(id),
    acme_account TEXT NOT NULL REFERENCES acme_accounts(id),
    identifier TEXT NOT NULL,
    status TEXT NOT NULL,
    expires TEXT NOT NULL,
    wildcard INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX acme_authz_order ON acme_authorizations (order_id);
CREATE TABLE acme_challenges (
    id TEXT PRIMARY KEY,
    authz_id TEXT NOT NULL REFERENCES acme_authorizations(id),
    type TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL,
    validated TEXT,
    error TEXT
);
CREATE INDEX acme_chall_authz ON acme_challenges (authz_id)
"""

# Version 4 (issue 16, public trust): certificate-years sold as subscriptions of short certificates.  Each
# certificate of a subscription records the end of the paid time it serves (RFC 3339, UTC); NULL for a
# certificate that is not part of one (every certificate issued before).  A renewal inside the paid time is
# re-issued at no charge (rules/quota.py subscription_charge).
SCHEMA_V4 = """
ALTER TABLE certificates ADD COLUMN paid_until TEXT
"""

# Version 5 (issue 17): the notices mailed to technical contacts (store/notices.py): one row per certificate,
# kind ("issued" or "reminder") and window (days before notAfter; 0 for "issued"), so that a nightly
# `twcactl notify due` never mails the same reminder twice.
SCHEMA_V5 = """
CREATE TABLE notices (
    serial TEXT NOT NULL REFERENCES certificates(serial),
    kind TEXT NOT NULL CHECK (kind IN ('issued', 'reminder')),
    window_days INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    message_id TEXT NOT NULL,
    operator TEXT NOT NULL,
    PRIMARY KEY (serial, kind, window_days)
)
"""

# Version 6 (issue 24, ACME profiles, draft-ietf-acme-profiles): the profile an order asked for (NULL: the
# default profile, every order made before).
SCHEMA_ISSUE24 = """
ALTER TABLE acme_orders ADD COLUMN profile TEXT
"""

# Version 9 (issue 25): several issuing CAs under one root.  Each CA names the CA that signed it (``issuer``;
# NULL for the root; existing homes: the CA one position above), and an issuing CA may be retired (issues no
# more; its CRL and OCSP go on) or revoked by its issuer (``revoked_at``, ``reason``: the issuer's CRL lists it).
SCHEMA_ISSUE25 = """
ALTER TABLE cas ADD COLUMN issuer TEXT;
ALTER TABLE cas ADD COLUMN retired_at TEXT;
ALTER TABLE cas ADD COLUMN revoked_at TEXT;
ALTER TABLE cas ADD COLUMN reason TEXT;
UPDATE cas SET issuer = (SELECT above.name FROM cas above WHERE above.position = cas.position - 1)
"""

# Version 7 (issue 27: people prove who they are): operators may be RA operators and are bound to a certificate
# (its DER and SHA-256; the role check is widened by rebuilding the table, the one way SQLite changes a CHECK);
# each log entry may hold the operator's signature over its statement (JSON: algorithm, certificate digest, signature);
# an issue notice the relay did not take waits in notices_pending for the next `notify due`; a subscriber's
# password is kept as a slow hash with its failure count and lock (store/subscribers.py).
SCHEMA_ISSUE27 = """
ALTER TABLE operators RENAME TO operators_before_issue27;
CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('manager', 'auditor', 'ra')),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    cert_der BLOB,
    cert_sha256 TEXT
);
INSERT INTO operators (name, role, created_at, created_by, active)
    SELECT name, role, created_at, created_by, active FROM operators_before_issue27;
DROP TABLE operators_before_issue27;
ALTER TABLE activity_log ADD COLUMN signature TEXT;
CREATE TABLE notices_pending (
    serial TEXT NOT NULL REFERENCES certificates(serial),
    kind TEXT NOT NULL CHECK (kind IN ('issued', 'reminder')),
    window_days INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    failed_at TEXT NOT NULL,
    error TEXT NOT NULL,
    operator TEXT NOT NULL,
    PRIMARY KEY (serial, kind, window_days)
);
CREATE TABLE subscriber_secrets (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    hash TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT,
    updated_at TEXT NOT NULL
)
"""

# Version 8 (issue 26, public-trust process): domain validations (store/validations.py): one row per random
# value made for an account's domain (BR 3.2.2.4.7 dns-txt, 3.2.2.4.18 http-file) or per ACME challenge that succeeded;
# validated_at is NULL until the value was seen.  caa_checks: each CAA answer relied on (BR 3.2.2.8), reused for
# at most 8 hours.
SCHEMA_ISSUE26 = """
CREATE TABLE domain_validations (
    id INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL,
    domain TEXT NOT NULL,
    method TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    validated_at TEXT,
    operator TEXT NOT NULL,
    seen TEXT NOT NULL DEFAULT ''
);
CREATE INDEX domain_validations_domain ON domain_validations (account_id, domain);
CREATE TABLE caa_checks (
    id INTEGER PRIMARY KEY,
    domain TEXT NOT NULL,
    wildcard INTEGER NOT NULL,
    checked_at TEXT NOT NULL,
    allowed INTEGER NOT NULL,
    answer TEXT NOT NULL
);
CREATE INDEX caa_checks_domain ON caa_checks (domain, wildcard)
"""

# Forward migrations: index N - 1 upgrades version N to N + 1.  A new home runs SCHEMA_V1 and then every step.
MIGRATIONS: tuple[str, ...] = (SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_ISSUE24, SCHEMA_ISSUE27,
                               SCHEMA_ISSUE26, SCHEMA_ISSUE25)


def statements(script: str) -> Iterator[str]:
    """The ``;``-separated statements of a DDL script (none holds a ``;`` inside)."""
    for statement in script.split(";"):
        if statement.strip():
            yield statement


def migration_steps(version: int, *, what: str) -> list[tuple[int, str]]:
    """The forward steps from ``version`` to :data:`SCHEMA_VERSION`: ``[(new version, script), ...]``.

    Each engine runs each step in its own transaction and records the new
    version in ``meta`` with it, so an interrupted upgrade resumes where it stopped.

    Raises:
        StateError: ``what`` (the home or database) was written by a newer twcactl (exit 5).
    """
    if version > SCHEMA_VERSION:
        raise StateError(f"this {what} has schema version {version}; this twcactl knows up to {SCHEMA_VERSION}.",
                         hint="upgrade twcactl")
    return [(step + 1, MIGRATIONS[step - 1]) for step in range(max(version, 1), SCHEMA_VERSION)]


def new_schema() -> tuple[list[str], dict[str, str]]:
    """What a new store is made of: the scripts to run in one transaction (version 1 plus every forward
    step, so a new store and an upgraded one have the same tables) and the ``meta`` rows to set
    (``schema_version`` = :data:`SCHEMA_VERSION`, ``created_at`` now, RFC 3339)."""
    from twcactl.rules.times import rfc3339, utcnow

    return [SCHEMA_V1, *MIGRATIONS], {"schema_version": str(SCHEMA_VERSION), "created_at": rfc3339(utcnow())}

