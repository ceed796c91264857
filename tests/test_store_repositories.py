"""The store as repositories (issue 11): each repository's queries on a real home made with the CLI,
transactions that roll back, and no sqlite3 object crossing the interface."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCOUNT, CaHome, issued_bundle
from twcactl.errors import NotFoundError, QuotaError, StateError
from twcactl.rules.vocab import STATUS_WORDS
from twcactl.store import SCHEMA_VERSION, Store
from twcactl.store.certificates import status_window
from twcactl.store.log import GENESIS_HASH, log_hash
from twcactl.store.records import (
    Account,
    CaRecord,
    CertRecord,
    CrlAnchor,
    LedgerTotal,
    LogEntry,
    RawLogEntry,
    RevokedRow,
    StoredCertificate,
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[CaHome, str]:
    """A home (no passphrase) with account 70759028-01 (5 certificate-years) and one issued certificate for
    www.twca.com.tw; tests work on copies of it.  Returns ``(home, serial)``."""
    home, _bundle_dir, serial = issued_bundle(tmp_path_factory.mktemp("repos"))
    return home, serial


@pytest.fixture
def store(bundle: tuple[CaHome, str], tmp_path: Path) -> Iterator[Store]:
    """A private copy of the bundle's home, opened (so that tests that write do not disturb each other)."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(bundle[0].path, home)
    opened = Store.open(home)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def serial(bundle: tuple[CaHome, str]) -> str:
    return bundle[1]


def _has_sqlite_object(value: Any, depth: int = 0) -> bool:
    """True when ``value`` or anything inside it (dataclass fields, containers) comes from the sqlite3 module."""
    if depth > 6:
        return False
    if type(value).__module__ in ("sqlite3", "_sqlite3"):
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_has_sqlite_object(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return any(_has_sqlite_object(k, depth + 1) or _has_sqlite_object(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_sqlite_object(v, depth + 1) for v in value)
    return False


# ----- CAs and operators -----

def test_cas_root_first_with_one_issuing(store: Store) -> None:
    cas = store.cas.all()
    assert [ca.position for ca in cas] == sorted(ca.position for ca in cas)
    assert cas[0].position == 0 and all(isinstance(ca, CaRecord) for ca in cas)
    issuing = store.cas.issuing()
    assert issuing.issuing and store.cas.by_name(issuing.name) == issuing
    assert issuing.cert_file.is_absolute() and issuing.cert_file.is_file()
    with pytest.raises(NotFoundError):
        store.cas.by_name("no-such-ca")


def test_operators_add_role_and_require_manager(store: Store) -> None:
    assert store.operators.role("alice") == "manager"
    with store.transaction():
        store.operators.add("bob", "auditor", by="alice")
    assert [o["name"] for o in store.operators.all()] == ["alice", "bob"]
    assert store.operators.role("bob") == "auditor"
    with pytest.raises(StateError):
        store.operators.require_manager("bob")
    with pytest.raises(StateError):
        store.operators.require_manager("nobody")
    with store.transaction():
        store.operators.set_role("bob", "manager")
    store.operators.require_manager("bob")
    with pytest.raises(StateError), store.transaction():
        store.operators.add("bob", "auditor", by="alice")  # a constraint violation, mapped to the store's error
    with pytest.raises(NotFoundError), store.transaction():
        store.operators.set_role("carol", "manager")


# ----- accounts and the ledger -----

def test_accounts_get_all_update(store: Store) -> None:
    account = store.accounts.get(ACCOUNT)
    assert isinstance(account, Account) and account.balance == 4 and account.domains == ("twca.com.tw",)
    assert [a.id for a in store.accounts.all()] == [ACCOUNT]
    with store.transaction():
        store.accounts.add("12345678-01", "Example", aliases=["EX"], domains=["example.com", "example.org"])
        store.accounts.update("12345678-01", org="Example Ltd", add_domains=["example.net"],
                              remove_domains=["example.com"], add_aliases=["EXL"])
    other = store.accounts.get("12345678-01", ledger=False)
    assert (other.org, other.domains, other.org_aliases) == ("Example Ltd", ("example.org", "example.net"),
                                                            ("EX", "EXL"))
    assert [a.id for a in store.accounts.all()] == ["12345678-01", ACCOUNT]
    with pytest.raises(NotFoundError), store.transaction():
        store.accounts.update("12345678-01", remove_domains=["not-there.example"])
    with pytest.raises(StateError), store.transaction():
        store.accounts.add(ACCOUNT, "again", aliases=[], domains=[])
    with pytest.raises(NotFoundError):
        store.accounts.get("00000000-00")


def test_balance_changes_write_the_ledger(store: Store) -> None:
    before = store.accounts.get(ACCOUNT).balance
    with store.transaction():
        assert store.accounts.change_balance(ACCOUNT, 3, action="credit", operator="alice", note="top-up") == before + 3
        assert store.accounts.change_balance_many(ACCOUNT, [(-1, "aa"), (-2, "bb")], action="issue",
                                                  operator="alice") == before
    ledger = store.accounts.ledger(ACCOUNT)
    assert [(e.delta, e.serial) for e in ledger[:3]] == [(-2, "bb"), (-1, "aa"), (3, None)]
    assert ledger[0].balance == before and ledger[2].note == "top-up"
    with pytest.raises(QuotaError), store.transaction():
        store.accounts.change_balance(ACCOUNT, -(before + 1), action="issue", operator="alice")
    totals = store.accounts.ledger_totals()
    assert totals == [LedgerTotal(account_id=ACCOUNT, balance=before, total=before, last=before)]


def test_aliases_and_domains_come_back_in_their_order_from_one_read(store: Store) -> None:
    """Issue 29 reads both lists in one query; each keeps its own insertion order, not the alphabet's."""
    with store.transaction():
        store.accounts.add("12345678-01", "Order Co", aliases=["Zeta Ltd", "Alpha Ltd"],
                           domains=["zeta.tw", "alpha.tw", "mid.tw"])
    got = store.accounts.get("12345678-01", ledger=False)
    assert (got.org_aliases, got.domains) == (("Zeta Ltd", "Alpha Ltd"), ("zeta.tw", "alpha.tw", "mid.tw"))
    with pytest.raises(NotFoundError), store.transaction():
        store.accounts.change_balance_many("00000000-00", [(-1, None)], action="issue", operator="alice")


# ----- certificates and the status words -----

def test_certificates_get_many_and_by_der(store: Store, serial: str) -> None:
    record = store.certificates.get(serial)
    assert isinstance(record, CertRecord) and record.account == ACCOUNT and record.state == "valid"
    assert record.path == str(store.cert_path(serial))
    assert record.issuer == store.cas.subjects()[record.ca_name]  # the issuer subject comes from the CA table
    assert store.certificates.get_many([serial, "ffff", serial]) == [record, record]
    assert store.certificates.find_by_der(record.der) == record
    assert store.certificates.find_by_der(b"not a certificate") is None
    with pytest.raises(NotFoundError):
        store.certificates.get("ffff")
    stored = list(store.certificates.stored())
    assert stored == [StoredCertificate(serial=serial, sha256=hashlib.sha256(record.der).hexdigest(), der=record.der)]


def test_certificates_matching_and_find_by_status(store: Store, serial: str) -> None:
    record = store.certificates.get(serial)
    assert store.certificates.matching(account=ACCOUNT) == [record]
    assert store.certificates.matching(domain="twca.com.tw") == [record]
    assert store.certificates.matching(cn_glob="WWW.*") == [record]
    assert store.certificates.matching(cn_glob="mail.*") == []
    assert store.certificates.matching(states=[]) == []
    now = record.not_before + dt.timedelta(hours=1)
    window = store.settings().renewal_window_days
    found = {word: store.certificates.find(now=now, status=word) for word in STATUS_WORDS}
    assert found == {w: ([record] if w == record.status(now, window) else []) for w in STATUS_WORDS}
    late = record.not_after + dt.timedelta(seconds=1)
    assert store.certificates.find(now=late, status="expired") == [record]
    assert store.certificates.find(now=now, expiring_within=1) == []


def test_status_window_covers_every_status_word() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    windows = {word: status_window(word, now, 30) for word in STATUS_WORDS}
    assert windows["revoked"].states == ("revoked",) and windows["suspended"].states == ("suspended",)
    assert windows["expired"].high == now
    assert windows["expiring"].low == now + dt.timedelta(seconds=1)
    assert windows["expiring"].high == now + dt.timedelta(days=30)
    assert windows["valid"].low == now + dt.timedelta(days=30, seconds=1)
    assert status_window(None, now, 30).states is None
    with pytest.raises(ValueError):
        status_window("fine", now, 30)


def test_states_revoked_entries_and_crls(store: Store, serial: str) -> None:
    ca = store.cas.issuing()
    first = store.crls.next_number(ca.name)
    at = dt.datetime(2026, 2, 1, 12, 0, tzinfo=dt.UTC)
    with store.transaction():
        store.certificates.set_state(serial, "revoked", revoked_at=at, reason="keyCompromise")
        store.log.append(operator="alice", action="revoke", serial=serial)
        store.crls.add(ca_name=ca.name, number=first, this_update=at, next_update=at + dt.timedelta(days=7),
                       entries=1, der=b"\x30\x00")
    assert store.certificates.revoked_entries(ca.name) == [RevokedRow(serial, "2026-02-01T12:00:00Z",
                                                                      "keyCompromise", None)]
    assert store.certificates.count_revoked(ca.name) == 1
    assert store.certificates.renewals_of(serial) == []
    latest = store.crls.latest(ca.name)
    assert latest is not None and (latest["number"], latest["der"], latest["entries"]) == (first, b"\x30\x00", 1)
    assert store.crls.next_number(ca.name) == first + 1
    head_seq, head_hash = (store.meta("log_head") or "").split(":")
    assert store.crls.anchors()[-1] == CrlAnchor(ca.name, first, int(head_seq), head_hash)


# ----- the activity log -----

def test_log_append_entries_and_raw_chain(store: Store, serial: str) -> None:
    with store.transaction():
        one = store.log.append(operator="alice", action="note", serial=serial, details={"k": 1})
        two, three = store.log.append_many([("alice", "note", ACCOUNT, None, None), ("bob", "other", None, None, {})])
    assert isinstance(one, LogEntry) and (two.seq, three.seq) == (one.seq + 1, one.seq + 2)
    assert store.log.entries(action="note", limit=2) == [two, one]
    assert store.log.entries(operator="bob") == [three]
    raw = list(store.log.raw())
    assert all(isinstance(r, RawLogEntry) for r in raw) and [r.seq for r in raw] == list(range(1, len(raw) + 1))
    prev = GENESIS_HASH
    for r in raw:
        assert r.prev_hash == prev
        assert log_hash(r.prev_hash, r.seq, r.time, r.operator, r.action, r.account, r.serial, r.details) == r.hash
        prev = r.hash
    assert store.meta("log_head") == f"{raw[-1].seq}:{raw[-1].hash}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        raw[0].hash = "x"  # type: ignore[misc]


# ----- the engine -----

def test_a_transaction_that_raises_rolls_back(store: Store) -> None:
    balance = store.accounts.get(ACCOUNT).balance
    entries = len(list(store.log.raw()))
    ledger = store.accounts.ledger(ACCOUNT)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction() as yielded:
        assert yielded is None  # nothing engine-specific is handed out
        store.accounts.change_balance(ACCOUNT, 7, action="credit", operator="alice")
        store.log.append(operator="alice", action="credit", account=ACCOUNT)
        raise Boom
    assert store.accounts.get(ACCOUNT).balance == balance
    assert len(list(store.log.raw())) == entries
    assert store.accounts.ledger(ACCOUNT) == ledger


def test_engine_integrity_backup_and_reopen(store: Store, tmp_path: Path) -> None:
    assert store.engine.integrity_check() is None
    assert store.schema_version() == SCHEMA_VERSION  # 1 plus every forward step (issue 12 made it 2)
    copy = tmp_path / "copy.db"
    assert store.engine.backup_to(copy) == 1
    with sqlite3.connect(copy) as conn:  # the copy is one self-contained file with the same schema
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT COUNT(*) FROM certificates").fetchone()[0] == 1
    store.close()
    reopened = Store.open(store.home)
    try:
        assert reopened.accounts.get(ACCOUNT).id == ACCOUNT
    finally:
        reopened.close()


def test_no_sqlite_object_crosses_the_interface(store: Store, serial: str) -> None:
    ca = store.cas.issuing()
    results: list[Any] = [
        store.cas.all(), ca, store.operators.all(), store.operators.role("alice"),
        store.accounts.get(ACCOUNT), store.accounts.all(), store.accounts.ledger(ACCOUNT),
        store.accounts.ledger_totals(), store.certificates.get(serial), store.certificates.get_many([serial]),
        store.certificates.matching(), store.certificates.find(now=dt.datetime.now(dt.UTC), status="valid"),
        store.certificates.revoked_entries(ca.name), store.certificates.count_revoked(ca.name),
        list(store.certificates.stored()), store.crls.next_number(ca.name), store.crls.latest(ca.name),
        store.crls.anchors(), store.log.entries(), list(store.log.raw()), store.meta("log_head"),
        store.schema_version(), store.engine.integrity_check(),
    ]
    with store.transaction() as yielded:
        results.append(yielded)
        results.append(store.log.append(operator="alice", action="probe"))
        results.append(store.accounts.change_balance(ACCOUNT, 1, action="credit", operator="alice"))
    offenders = [r for r in results if _has_sqlite_object(r)]
    assert offenders == []
    assert not hasattr(store, "conn")


def test_the_sqlite_probe_can_fail() -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT 1 AS one").fetchone()
    assert _has_sqlite_object([{"x": (row,)}]) and _has_sqlite_object(conn)
    conn.close()
