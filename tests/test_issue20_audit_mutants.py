"""Issue 20: the record replay of ``ca check`` (twcactl.authority.audit, issue 13) field by field.

Mutation testing (docs/testing.md) showed the tamper tests of issue 13 pass with many fields of the
replay changed.  These tests feed hand-built activity-log entries to :func:`replay_log` and
:func:`check_records` through a stand-in store (the same repository methods the real one offers) and
assert on what the replay rebuilt and on which record and field each finding names.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from twcactl.authority.audit import (
    CERT_FIELDS,
    RecordCheck,
    certificate_state,
    check_records,
    log_head,
    replay_log,
    verify_log,
)
from twcactl.errors import NotFoundError
from twcactl.rules.settings import Settings
from twcactl.store.log import GENESIS_HASH, log_hash
from twcactl.store.records import Account, RawLogEntry

A = "70759028-01"
B = "12345675-01"
NA = "2027-01-01T00:00:00Z"


def entry(seq: int, action: str, account: str | None = None, serial: str | None = None,
          details: Any = None, raw: str | None = None) -> RawLogEntry:
    text = raw if raw is not None else json.dumps(details if details is not None else {})
    return RawLogEntry(seq=seq, time="2026-01-01T00:00:00Z", operator="admin", action=action, account=account,
                       serial=serial, details=text, prev_hash=f"{seq - 1:064x}", hash=f"{seq:064x}")


class _Log:
    def __init__(self, entries: list[RawLogEntry]) -> None:
        self.entries = entries

    def raw(self) -> Iterator[RawLogEntry]:
        return iter(self.entries)


class _Certs:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def states(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)


class _Accounts:
    def __init__(self, accounts: list[Account]) -> None:
        self.accounts = accounts

    def all(self) -> list[Account]:
        return list(self.accounts)


class _Operators:
    def __init__(self, operators: list[dict[str, Any]]) -> None:
        self.operators = operators

    def all(self) -> list[dict[str, Any]]:
        return list(self.operators)


class _Crls:
    def anchors(self) -> list[tuple[str, int, int, str]]:
        return []


class FakeStore:
    """The repositories check_records reads, holding hand-built rows."""

    def __init__(self, entries: list[RawLogEntry], *, certs: list[dict[str, Any]] | None = None,
                 accounts: list[Account] | None = None, operators: list[dict[str, Any]] | None = None,
                 settings: dict[str, Any] | None = None, shared: bool = False,
                 problems: list[str] | None = None) -> None:
        self.log = _Log(entries)
        self.certificates = _Certs(certs or [])
        self.accounts = _Accounts(accounts or [])
        self.operators = _Operators(operators or [])
        self._settings = Settings.from_mapping(settings or {}, source="config.toml")
        self.shared = shared
        self._problems = problems or []
        self.crls = _Crls()
        self.head: str | None = None

    def meta(self, key: str) -> str | None:
        return self.head if key == "log_head" else None

    def settings_problems(self) -> list[str]:
        return list(self._problems)

    def settings(self) -> Settings:
        return self._settings


def replay(*entries: RawLogEntry) -> Any:
    return replay_log(FakeStore(list(entries)))  # type: ignore[arg-type]


def check(entries: list[RawLogEntry], **kw: Any) -> RecordCheck:
    return check_records(FakeStore(entries, **kw))  # type: ignore[arg-type]


def named(out: RecordCheck) -> list[str]:
    """Each finding's record: the words before its first colon (``certificate 0A``, ``account X``)."""
    return [f.split(":", 1)[0] for f in out.findings]


RECORD = {"state": "valid", "reason": None, "revoked_at": None, "not_after": NA, "account": A, "sha256": "ab" * 32}


# ----- certificates -----

def test_a_stated_record_is_taken_whole_and_marks_the_certificate_fully_stated() -> None:
    r = replay(entry(1, "cert.issue", A, "0A", {"record": RECORD, "cost": 1}))
    assert r.certs == {"0A": RECORD}
    assert r.full == {"0A"}


def test_a_record_on_a_non_cert_action_is_still_applied_and_none_without_serial() -> None:
    r = replay(entry(1, "import.cert", A, "0B", {"record": RECORD}), entry(2, "cert.issue", A, None, {"record": RECORD}))
    assert r.certs == {"0B": RECORD}
    assert r.full == {"0B"}


def test_a_non_cert_action_without_record_leaves_certificates_alone() -> None:
    r = replay(entry(1, "account.credit", A, "0C", {"delta": 1}))
    assert r.certs == {}


@pytest.mark.parametrize("action", ["cert.issue", "cert.renew"])
def test_old_issue_entries_state_valid_account_and_not_after(action: str) -> None:
    r = replay(entry(1, action, A, "0D", {"not_after": NA, "record": "not a dict"}))
    assert r.certs == {"0D": {"state": "valid", "reason": None, "revoked_at": None, "account": A, "not_after": NA}}
    assert r.full == set()


def test_old_issue_entry_without_not_after_does_not_state_it() -> None:
    r = replay(entry(1, "cert.issue", A, "0E", {}))
    assert r.certs["0E"] == {"state": "valid", "reason": None, "revoked_at": None, "account": A}
    assert "not_after" not in r.certs["0E"]


def test_old_revoke_hold_release_on_an_unknown_certificate_state_nothing() -> None:
    r = replay(entry(1, "cert.revoke", A, "0F", {"reason": "keyCompromise"}), entry(2, "cert.hold", A, "0F"),
               entry(3, "cert.release", A, "0F"))
    assert r.certs == {}


def test_old_revoke_states_revoked_with_its_reason_and_leaves_revoked_at_unstated() -> None:
    r = replay(entry(1, "cert.issue", A, "10", {"not_after": NA}), entry(2, "cert.revoke", A, "10",
                                                                          {"reason": "keyCompromise"}))
    assert r.certs["10"] == {"state": "revoked", "reason": "keyCompromise", "account": A, "not_after": NA}


def test_old_hold_states_suspended_certificate_hold_and_release_states_valid() -> None:
    r = replay(entry(1, "cert.issue", A, "11", {"not_after": NA}), entry(2, "cert.hold", A, "11"))
    assert r.certs["11"] == {"state": "suspended", "reason": "certificateHold", "account": A, "not_after": NA}
    r = replay(entry(1, "cert.issue", A, "11", {"not_after": NA}), entry(2, "cert.hold", A, "11"),
               entry(3, "cert.release", A, "11"))
    assert r.certs["11"] == {"state": "valid", "reason": None, "revoked_at": None, "account": A, "not_after": NA}


def test_an_unknown_cert_action_changes_nothing() -> None:
    r = replay(entry(1, "cert.issue", A, "12", {"not_after": NA}), entry(2, "cert.note", A, "12", {"reason": "x"}))
    assert r.certs["12"]["state"] == "valid"
    assert r.certs["12"]["reason"] is None


def test_unreadable_or_non_object_details_are_skipped() -> None:
    r = replay(entry(1, "cert.issue", A, "13", raw="{not json"), entry(2, "cert.issue", A, "14", raw="[1, 2]"),
               entry(3, "cert.issue", A, "15", {"record": RECORD}))
    assert r.certs == {"15": RECORD}


# ----- balances -----

def test_a_stated_balance_wins_on_any_action_with_an_account() -> None:
    r = replay(entry(1, "account.set", A, None, {"balance": 7}), entry(2, "cert.issue", None, "16", {"balance": 3}))
    assert r.balances == {A: 7}


def test_a_non_integer_balance_falls_back_to_the_change() -> None:
    r = replay(entry(1, "account.add", A, None, {"quota": 5}), entry(2, "account.credit", A, None,
                                                                     {"balance": "9", "delta": 2}))
    assert r.balances == {A: 7}


def test_old_entries_rebuild_the_balance_from_each_change() -> None:
    steps = [entry(1, "account.add", A, None, {"quota": 10}), entry(2, "account.credit", A, None, {"delta": 3}),
             entry(3, "cert.issue", A, "17", {"cost": 2}), entry(4, "cert.renew", A, "18", {"cost": 4}),
             entry(5, "cert.revoke", A, "17", {"refund": 1}), entry(6, "cert.revoke", A, "18", {}),
             entry(7, "cert.issue", A, "19", {}), entry(8, "cert.renew", A, "1A", {"cost": None})]
    expected = [10, 13, 11, 7, 8, 8, 8, 8]
    for n, want in enumerate(expected, start=1):
        assert replay(*steps[:n]).balances == {A: want}, steps[n - 1].action


def test_an_account_added_without_quota_starts_at_zero() -> None:
    assert replay(entry(1, "account.add", A, None, {})).balances == {A: 0}


def test_changes_to_an_account_never_added_and_non_integer_deltas_are_ignored() -> None:
    r = replay(entry(1, "account.credit", B, None, {"delta": 3}), entry(2, "account.add", A, None, {"quota": 2}),
               entry(3, "account.credit", A, None, {"delta": "4"}), entry(4, "account.set", A, None, {"delta": 5}))
    assert r.balances == {A: 2}


# ----- accounts -----

def test_a_stated_result_is_the_account() -> None:
    r = replay(entry(1, "account.add", A, None, {"result": {"org": "TWCA", "domains": ["a.tw", "b.tw"],
                                                            "aliases": ["T"]}}),
               entry(2, "account.add", B, None, {"result": {}}))
    assert r.accounts == {A: {"org": "TWCA", "domains": {"a.tw", "b.tw"}, "aliases": {"T"}},
                          B: {"org": None, "domains": set(), "aliases": set()}}


def test_old_account_add_collapses_the_org_whitespace() -> None:
    r = replay(entry(1, "account.add", A, None, {"org": "  Taiwan   CA ", "domains": ["a.tw"],
                                                 "org_aliases": ["T"]}),
               entry(2, "account.add", B, None, {}))
    assert r.accounts == {A: {"org": "Taiwan CA", "domains": {"a.tw"}, "aliases": {"T"}},
                          B: {"org": "", "domains": set(), "aliases": set()}}


def test_old_account_set_adds_and_removes_domains_and_aliases_and_renames() -> None:
    add = entry(1, "account.add", A, None, {"org": "TWCA", "domains": ["a.tw", "b.tw"], "org_aliases": ["T", "U"]})
    r = replay(add, entry(2, "account.set", A, None, {"add_domains": ["c.tw"], "remove_domains": ["a.tw"],
                                                      "add_aliases": ["V"], "remove_aliases": ["T"]}))
    assert r.accounts[A] == {"org": "TWCA", "domains": {"b.tw", "c.tw"}, "aliases": {"U", "V"}}
    r = replay(add, entry(2, "account.set", A, None, {"org": " New   Name "}))
    assert r.accounts[A] == {"org": "New Name", "domains": {"a.tw", "b.tw"}, "aliases": {"T", "U"}}


def test_account_set_on_an_unknown_account_and_other_actions_state_nothing() -> None:
    r = replay(entry(1, "account.set", A, None, {"org": "X", "add_domains": ["a.tw"]}),
               entry(2, "account.credit", B, None, {"org": "Y", "result": {"org": "Y"}}),
               entry(3, "account.add", None, None, {"org": "Z"}))
    assert r.accounts == {}


# ----- operators and settings -----

def test_operators_and_settings_are_replayed() -> None:
    r = replay(entry(1, "operator.add", None, None, {"name": "alice", "role": "ra"}),
               entry(2, "operator.update", None, None, {"name": "alice", "role": "admin"}),
               entry(3, "operator.add", None, None, {"name": "bob"}),
               entry(4, "operator.add", None, None, {"name": 5, "role": "ra"}),
               entry(5, "operator.remove", None, None, {"name": "carol", "role": "ra"}),
               entry(6, "ca.config", None, None, {"key": "crl_days", "old": 7, "new": 9}),
               entry(7, "ca.config", None, None, {"key": 3, "new": 1}),
               entry(8, "ca.other", None, None, {"key": "max_sans", "new": 5}))
    assert r.operators == {"alice": "admin", "bob": "None"}
    assert r.settings == {"crl_days": 9}


# ----- check_records: certificates -----

def _row(serial: str, **changes: Any) -> dict[str, Any]:
    return {"serial": serial, **RECORD, **changes}


def test_matching_certificates_give_no_finding_and_are_counted() -> None:
    logs = [entry(1, "cert.issue", A, "20", {"record": RECORD}), entry(2, "cert.issue", A, "21", {"not_after": NA})]
    out = check(logs, certs=[_row("20"), _row("21", sha256=None, not_after="2027-01-01T00:00:00+00:00")])
    assert out.findings == []
    assert out.checked["certificates against the log"] == 2
    assert out.checked["certificates the log states only partly (entries before issue 13)"] == 1


@pytest.mark.parametrize("name, stored", [("state", "revoked"), ("reason", "keyCompromise"),
                                          ("revoked_at", "2026-02-01T00:00:00Z"), ("not_after", "2028-01-01T00:00:00Z"),
                                          ("account", B), ("sha256", "cd" * 32)])
def test_each_certificate_field_that_differs_is_named(name: str, stored: str) -> None:
    out = check([entry(1, "cert.issue", A, "22", {"record": RECORD})], certs=[_row("22", **{name: stored})])
    assert named(out) == ["certificate 22"]
    assert f"its {name} is" in out.findings[0]
    assert repr(stored) in out.findings[0]
    assert name in CERT_FIELDS


def test_times_are_compared_as_instants_and_an_unreadable_one_differs() -> None:
    logged = {**RECORD, "revoked_at": "2026-02-01T08:00:00+08:00", "state": "revoked"}
    good = check([entry(1, "cert.revoke", A, "23", {"record": logged})],
                 certs=[_row("23", state="revoked", revoked_at="2026-02-01T00:00:00Z")])
    assert good.findings == []
    bad = check([entry(1, "cert.revoke", A, "23", {"record": logged})],
                certs=[_row("23", state="revoked", revoked_at="garbage")])
    assert named(bad) == ["certificate 23"]
    assert "revoked_at" in bad.findings[0]


def test_a_certificate_without_its_entry_and_a_logged_one_gone_are_both_named() -> None:
    out = check([entry(1, "cert.issue", A, "25", {"record": RECORD}), entry(2, "cert.issue", A, "24",
                                                                            {"record": RECORD})],
                certs=[_row("26"), _row("27")])
    assert named(out) == ["certificate 26", "certificate 27", "certificate 24", "certificate 25"]
    assert out.checked["certificates against the log"] == 2


# ----- check_records: accounts and balances -----

def _account(**changes: Any) -> Account:
    base: dict[str, Any] = {"id": A, "org": "TWCA", "org_aliases": ("T",), "domains": ("a.tw",), "balance": 5}
    return Account(**{**base, **changes})


ADD = entry(1, "account.add", A, None, {"result": {"org": "TWCA", "domains": ["a.tw"], "aliases": ["T"]},
                                        "balance": 5})


def test_a_matching_account_gives_no_finding_and_its_balance_is_counted() -> None:
    out = check([ADD], accounts=[_account()])
    assert out.findings == []
    assert out.checked["balances against the log"] == 1


def test_an_account_without_a_logged_balance_is_not_counted() -> None:
    add = entry(1, "account.add", A, None, {"result": {"org": "TWCA", "domains": ["a.tw"], "aliases": ["T"]}})
    out = check([add, entry(2, "account.credit", A, None, {"delta": "x"})], accounts=[_account(balance=0)])
    assert out.findings == []
    out = check([entry(1, "account.set", A, None, {"result": {"org": "TWCA", "domains": ["a.tw"], "aliases": ["T"]}})],
                accounts=[_account(balance=99)])
    assert out.findings == []
    assert out.checked["balances against the log"] == 0


def test_organisation_and_balance_that_differ_are_named_with_both_values() -> None:
    out = check([ADD], accounts=[_account(org="Other", balance=6)])
    assert named(out) == [f"account {A}", f"account {A}"]
    assert "'Other'" in out.findings[0] and "'TWCA'" in out.findings[0]
    assert " 6 " in out.findings[1] and " 5 " in out.findings[1]


def test_domains_and_aliases_that_differ_name_the_extra_and_missing_values() -> None:
    out = check([ADD], accounts=[_account(domains=("b.tw", "c.tw"), org_aliases=())])
    assert named(out) == [f"account {A}", f"account {A}"]
    domains, aliases = out.findings
    assert "agreed domains" in domains and "(not logged: b.tw, c.tw)" in domains and "(logged but missing: a.tw)" in domains
    assert "O aliases" in aliases and "not logged" not in aliases and "(logged but missing: T)" in aliases
    out = check([ADD], accounts=[_account(org_aliases=("T", "V"))])
    assert len(out.findings) == 1
    assert "O aliases" in out.findings[0] and "(not logged: V)" in out.findings[0]
    assert "missing" not in out.findings[0]


def test_an_account_without_its_entry_and_a_logged_one_gone_are_named() -> None:
    gone = entry(2, "account.add", B, None, {"result": {"org": "B", "domains": [], "aliases": []}})
    out = check([gone], accounts=[_account()])
    assert named(out) == [f"account {A}", f"account {B}"]
    assert out.checked["balances against the log"] == 0


# ----- check_records: operators and settings -----

def test_operators_each_difference_is_named() -> None:
    logs = [entry(1, "operator.add", None, None, {"name": "alice", "role": "ra"}),
            entry(2, "operator.add", None, None, {"name": "bob", "role": "admin"}),
            entry(3, "operator.add", None, None, {"name": "dave", "role": "ra"})]
    ops = [{"name": "alice", "role": "ra"}, {"name": "bob", "role": "ra"}, {"name": "carol", "role": "admin"}]
    out = check(logs, operators=ops)
    assert named(out) == ["operator bob", "operator carol", "operator dave"]
    assert "admin" in out.findings[0] and "ra" in out.findings[0]
    assert "admin" in out.findings[1]
    assert out.checked["operators against the log"] == 3


def test_settings_that_differ_are_named_and_equal_ones_are_not() -> None:
    logs = [entry(1, "ca.config", None, None, {"key": "crl_days", "new": 9}),
            entry(2, "ca.config", None, None, {"key": "max_sans", "new": 100}),
            entry(3, "ca.config", None, None, {"key": "no_such_key", "new": 1}),
            entry(4, "ca.config", None, None, {"key": "pkcs11_module", "new": "/x.so"})]
    out = check(logs, settings={"crl_days": 7})
    assert named(out) == ["setting crl_days", "setting pkcs11_module"]
    assert "7" in out.findings[0] and "9" in out.findings[0]
    assert out.checked["settings against the log"] == 4
    shared = check(logs, settings={"crl_days": 9}, shared=True)
    assert shared.findings == []


def test_settings_are_not_compared_when_config_toml_has_problems() -> None:
    out = check([entry(1, "ca.config", None, None, {"key": "crl_days", "new": 9})], problems=["bad"])
    assert out.findings == []
    assert "settings against the log" not in out.checked


# ----- certificate_state and log_head -----

def test_certificate_state_states_each_field_and_the_der_hash() -> None:
    when = dt.datetime(2026, 2, 1, 12, 0, 0, tzinfo=dt.UTC)
    na = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    out = certificate_state(state="revoked", reason="keyCompromise", revoked_at=when, not_after=na, account=A,
                            der=b"DER")
    assert out == {"state": "revoked", "reason": "keyCompromise", "revoked_at": "2026-02-01T12:00:00Z",
                   "not_after": "2027-01-01T00:00:00Z", "account": A, "sha256": hashlib.sha256(b"DER").hexdigest()}
    out = certificate_state(state="valid", reason=None, revoked_at="2026-02-01T20:00:00+08:00", not_after=na,
                            account=None)
    assert out == {"state": "valid", "reason": None, "revoked_at": "2026-02-01T12:00:00Z",
                   "not_after": "2027-01-01T00:00:00Z", "account": None}
    assert certificate_state(state="valid", reason=None, revoked_at=None, not_after=na, account=A)["revoked_at"] is None


def test_log_head_is_the_newest_or_the_named_entry() -> None:
    store: Any = FakeStore([entry(1, "a"), entry(2, "b"), entry(3, "c")])
    assert log_head(store).to_json() == {"seq": 3, "hash": f"{3:064x}"}
    assert log_head(store, 2).to_json() == {"seq": 2, "hash": f"{2:064x}"}
    assert log_head(store, 1).seq == 1
    with pytest.raises(NotFoundError):
        log_head(store, 4)
    empty: Any = FakeStore([])
    assert log_head(empty).to_json() == {"seq": 0, "hash": GENESIS_HASH}
    with pytest.raises(NotFoundError):
        log_head(empty, 1)


def test_log_head_names_the_missing_entry() -> None:
    store: Any = FakeStore([entry(1, "a")])
    with pytest.raises(NotFoundError) as caught:
        log_head(store, 7)
    assert "7" in str(caught.value)


# ----- the rest of the replay and comparison edges -----

def test_revoking_or_holding_twice_keeps_revoked_at_unstated() -> None:
    r = replay(entry(1, "cert.issue", A, "30", {"not_after": NA}), entry(2, "cert.revoke", A, "30", {"reason": "x"}),
               entry(3, "cert.revoke", A, "30", {"reason": "keyCompromise"}))
    assert r.certs["30"] == {"state": "revoked", "reason": "keyCompromise", "account": A, "not_after": NA}
    r = replay(entry(1, "cert.issue", A, "31", {"not_after": NA}), entry(2, "cert.hold", A, "31"),
               entry(3, "cert.hold", A, "31"))
    assert r.certs["31"] == {"state": "suspended", "reason": "certificateHold", "account": A, "not_after": NA}


def test_an_unlogged_account_does_not_hide_the_next_one() -> None:
    logged = entry(1, "account.add", B, None, {"result": {"org": "B", "domains": ["a.tw", "b.tw"], "aliases": []},
                                               "balance": 1})
    out = check([logged], accounts=[_account(), _account(id=B, org="B", domains=(), org_aliases=(), balance=2)])
    assert named(out) == [f"account {A}", f"account {B}", f"account {B}"]
    assert "a.tw, b.tw" in out.findings[1]


def test_a_node_local_setting_does_not_hide_the_settings_after_it() -> None:
    logs = [entry(1, "ca.config", None, None, {"key": "pkcs11_module", "new": "/x.so"}),
            entry(2, "ca.config", None, None, {"key": "renewal_window_days", "new": 1})]
    assert named(check(logs, shared=True)) == ["setting renewal_window_days"]


def chain(*actions: str) -> list[RawLogEntry]:
    out: list[RawLogEntry] = []
    prev = GENESIS_HASH
    for seq, action in enumerate(actions, start=1):
        digest = log_hash(prev, seq, "2026-01-01T00:00:00Z", "admin", action, None, None, "{}")
        out.append(RawLogEntry(seq=seq, time="2026-01-01T00:00:00Z", operator="admin", action=action, account=None,
                               serial=None, details="{}", prev_hash=prev, hash=digest))
        prev = digest
    return out


def test_verify_log_accepts_its_own_exported_head_in_any_case() -> None:
    entries = chain("a", "b", "c")
    store: Any = FakeStore(entries)
    store.head = f"3:{entries[2].hash}"
    assert verify_log(store, expected=[(2, entries[1].hash)]) == (3, [])
    assert verify_log(store, expected=[(2, entries[1].hash.upper())]) == (3, [])
    count, problems = verify_log(store, expected=[(2, entries[0].hash)])
    assert [p.seq for p in problems] == [2]
    assert "2" in problems[0].message


def test_verify_log_findings_name_their_entry() -> None:
    entries = chain("a", "b", "c")
    entries[1] = RawLogEntry(**{**entries[1].__dict__, "action": "forged"})
    store: Any = FakeStore(entries)
    store.head = f"4:{entries[2].hash}"
    count, problems = verify_log(store)
    assert [p.seq for p in problems] == [2, 4]
    assert "2" in problems[0].message and "forged" in problems[0].message
    assert "4" in problems[1].message and "3" in problems[1].message
    entries = chain("a", "b", "c")
    entries[2] = RawLogEntry(**{**entries[2].__dict__, "prev_hash": "0" * 64})
    count, problems = verify_log(FakeStore(entries))  # type: ignore[arg-type]
    assert [p.seq for p in problems][0] == 3
    assert "3" in problems[0].message
