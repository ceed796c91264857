"""Issue 20: direct tests of the rule modules that kill the mutants the fast suite left alive (docs/testing.md,
"Mutation testing").  Fast: pure functions, plus one small CA home for the log chain."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ACCOUNT, CaHome, make_ca, openssl_csr
from twcactl.authority.audit import verify_log
from twcactl.errors import QuotaError, StateError, UsageError
from twcactl.pfx import MIN_PASSWORD, check_password
from twcactl.rules import pin, quota, validity, windows
from twcactl.rules.validity import Validity
from twcactl.store import Store
from twcactl.store.log import GENESIS_HASH, log_hash

UTC = dt.UTC


# ---------------------------------------------------------------- PFX password (cli-contract.md, Secrets)


def test_pfx_password_length_boundary() -> None:
    """At least 6 characters; 5 is refused with exit 2 and the message names the minimum."""
    assert MIN_PASSWORD == 6
    check_password("a" * 6)
    check_password("パスワード長い")
    with pytest.raises(UsageError) as refused:
        check_password("a" * 5)
    assert refused.value.exit_code == 2
    assert str(MIN_PASSWORD) in str(refused.value)
    with pytest.raises(UsageError):
        check_password("")


# ---------------------------------------------------------------- quota and windows (domain.md §3-§4)


def test_quota_error_names_the_account_balance_and_need() -> None:
    with pytest.raises(QuotaError) as refused:
        quota.require_balance("70759028-01", 3, 4)
    text = str(refused.value)
    assert "70759028-01" in text and "3" in text and "4" in text
    quota.require_balance("70759028-01", 4, 4)


def test_refund_of_a_free_certificate_is_zero() -> None:
    now = dt.datetime(2026, 1, 2, tzinfo=UTC)
    assert quota.refund_due(cost=0, state="valid", issued_at=now, now=now, refund_window_days=30, renewed=False) == 0
    assert quota.refund_due(cost=2, state="valid", issued_at=now, now=now, refund_window_days=30, renewed=False) == 2


def test_refund_decision_says_why_in_the_contract_words() -> None:
    """cert revoke --json's refund.why is one of quota.REFUND_REASONS; a free certificate is not_charged."""
    now = dt.datetime(2026, 1, 2, tzinfo=UTC)
    free = quota.refund_decision(cost=0, state="valid", issued_at=now, now=now, refund_window_days=30, renewed_by=None)
    assert (free.years, free.why) == (0, "not_charged")
    paid = quota.refund_decision(cost=2, state="valid", issued_at=now, now=now, refund_window_days=30, renewed_by=None)
    assert (paid.years, paid.why) == (2, "refund_window")
    assert {free.why, paid.why} <= set(quota.REFUND_REASONS)


@pytest.mark.parametrize(("status", "command"), [(None, "twcactl cert renew 0b"), ("valid", "twcactl cert renew 0b"),
                                                 ("expiring", "twcactl cert renew 0b"),
                                                 ("renewed", "twcactl cert show 0b"),
                                                 ("revoked", "twcactl cert issue")])
def test_a_second_renewal_points_at_the_successor(status: str | None, command: str) -> None:
    windows.require_not_renewed("0a", None, status)
    with pytest.raises(StateError) as refused:
        windows.require_not_renewed("0a", "0b", status)
    assert refused.value.exit_code == 5
    assert refused.value.details == {"renewed_by": "0b"}
    assert refused.value.hint is not None and command in refused.value.hint and "0b" in refused.value.hint


def test_renewal_refusals_name_the_certificate_and_the_window() -> None:
    not_after = dt.datetime(2026, 6, 30, 12, tzinfo=UTC)
    with pytest.raises(StateError) as early:
        windows.require_renewal_window("0a1b", not_after, dt.datetime(2026, 1, 1, tzinfo=UTC), 30, early=False)
    text = str(early.value)
    assert "0a1b" in text and "2026-05-31" in text and "30" in text and "2026-06-30" in text
    assert early.value.hint == "renew now anyway with --early"
    with pytest.raises(StateError) as expired:
        windows.require_renewable_status("0a1b", "expired")
    assert "0a1b" in str(expired.value) and "expired" in str(expired.value)
    assert expired.value.hint == "apply for a new certificate with: twcactl cert issue"
    with pytest.raises(StateError) as revoked:
        windows.require_renewable_status("0a1b", "revoked")
    assert revoked.value.hint is None


# ---------------------------------------------------------------- validity (cli-contract.md "Validity")


def test_validity_options() -> None:
    assert Validity.from_options(None, 1) == Validity(days=1)
    assert Validity.from_options(1, None) == Validity(years=1)
    assert Validity.from_options(None, None, default_years=2) == Validity(years=2)
    assert Validity.from_options(validity.MAX_YEARS, None) == Validity(years=100)
    assert Validity.from_options(None, validity.MAX_DAYS) == Validity(days=36_500)
    for years, days in ((1, 1), (0, None), (None, 0), (None, -1), (101, None), (None, 36_501)):
        with pytest.raises(UsageError) as refused:
            Validity.from_options(years, days)
        assert str(refused.value) not in ("", "None")
    with pytest.raises(UsageError) as both:
        Validity.from_options(1, 1)
    assert "--years" in str(both.value) and "--days" in str(both.value)
    with pytest.raises(UsageError) as low:
        Validity.from_options(None, 0)
    assert "1" in str(low.value)


@pytest.mark.parametrize(("text", "parsed"), [("1y", Validity(years=1)), ("10y", Validity(years=10)),
                                              ("30d", Validity(days=30)), ("365d", Validity(days=365)),
                                              ("y", None), ("", None), ("abc", None), ("1xy", None), ("5X", None),
                                              ("10", None), ("-1y", None)])
def test_validity_text(text: str, parsed: Validity | None) -> None:
    assert Validity.from_text(text) == parsed
    if parsed is not None:
        assert parsed.to_text() == text


def test_validity_cost_and_end() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=UTC)
    assert [Validity(days=d).cost for d in (1, 365, 366, 730, 731)] == [1, 1, 2, 2, 3]
    assert Validity(years=3).cost == 3
    assert Validity(days=10).end(start) == start + dt.timedelta(days=10)
    assert Validity(years=1).end(start) == dt.datetime(2027, 3, 1, tzinfo=UTC)
    # neither set (a record without a validity): no cost and no length, not one day
    assert validity.cost_in_certificate_years(Validity()) == 0
    assert validity.validity_end(start, Validity()) == start


# ---------------------------------------------------------------- PIN rules and wording (domain.md §8, ux.md)
# pin.py is the one place every PIN sentence is worded (its docstring); these pin the sentences per flag.

S = pin.PinState
LOCKED_USER = ("the PIN is locked after too many wrong tries.",
               "an administrator with the SO PIN can set a new one: twcactl card unblock")
LOCKED_SO = ("the SO PIN is locked after too many wrong tries.",
             "the card cannot be unblocked any more; ask the card issuer for a new card")
CHECK = "check the PIN letter before trying again"
PIN_TABLE = [
    (S(), "ok", [], [], ("wrong PIN.", None), ("wrong SO PIN.", None)),
    (S(count_low=True), "tries_low", ["a wrong PIN was entered since the last good one"],
     ["a wrong PIN was entered since the last good one"],
     ("wrong PIN; the card reports a wrong PIN since the last good one (it does not say how many tries are "
      "left).", CHECK),
     ("wrong SO PIN; the card reports a wrong SO PIN since the last good one (it does not say how many tries "
      "are left).", CHECK)),
    (S(final_try=True, count_low=True), "final_try", ["final try: one more wrong PIN locks it"],
     ["one more wrong PIN locks the card"],
     ("wrong PIN; the card says the next wrong PIN locks it (final try).", CHECK),
     ("wrong SO PIN; the card says the next wrong SO PIN locks it (final try).", CHECK)),
    (S(locked=True), "locked", ["locked after too many wrong tries"],
     ["the PIN is locked: an administrator with the SO PIN can set a new one (twcactl card unblock)"],
     LOCKED_USER, LOCKED_SO),
    (S(to_be_changed=True), "must_change", ["must be changed"],
     ["the card says the PIN must be changed: twcactl card change-pin"], ("wrong PIN.", None), ("wrong SO PIN.", None)),
    (S(initialized=False), "not_set", ["no user PIN set"], [], ("wrong PIN.", None), ("wrong SO PIN.", None)),
    (S(locked=True, to_be_changed=True, initialized=False), "locked",
     ["no user PIN set", "locked after too many wrong tries", "must be changed"],
     ["the card says the PIN must be changed: twcactl card change-pin",
      "the PIN is locked: an administrator with the SO PIN can set a new one (twcactl card unblock)"],
     LOCKED_USER, LOCKED_SO),
]


@pytest.mark.parametrize(("state", "condition", "words", "warnings", "refused", "refused_so"), PIN_TABLE,
                         ids=[row[1] + str(i) for i, row in enumerate(PIN_TABLE)])
def test_pin_flags_in_words(state: pin.PinState, condition: str, words: list[str], warnings: list[str],
                            refused: tuple[str, str | None], refused_so: tuple[str, str | None]) -> None:
    assert state.condition == condition
    assert state.words() == words
    assert pin.pin_warnings(state) == warnings
    assert pin.refused_message(state) == refused
    assert pin.refused_message(state, what="SO PIN") == refused_so


def test_pin_state_json_names_every_flag() -> None:
    default = {"count_low": False, "final_try": False, "locked": False, "to_be_changed": False, "initialized": True,
               "so_locked": False, "so_to_be_changed": False}
    assert S().to_json() == default
    for flag, value in default.items():
        assert S(**{flag: not value}).to_json() == {**default, flag: not value}, flag


def test_locked_and_must_change_messages() -> None:
    assert pin.locked_message() == LOCKED_USER
    assert pin.locked_message("user") == LOCKED_USER
    assert pin.locked_message("so") == LOCKED_SO
    assert pin.must_change_message("signing") == ("the card says its PIN must be changed before signing.",
                                                  "twcactl card change-pin")


@pytest.mark.parametrize(("failure", "action", "message"), [
    (pin.PinFailure.LENGTH_INVALID, "changed", "the card refuses a new PIN of this length; the PIN was not changed."),
    (pin.PinFailure.LENGTH_INVALID, "set", "the card refuses a new PIN of this length; the PIN was not set."),
    (pin.PinFailure.INCORRECT, "changed",
     "the card refuses this new PIN (invalid characters or a value it forbids); the PIN was not changed."),
    (pin.PinFailure.INCORRECT, "set", "the card refuses this new PIN; the PIN was not set."),
])
def test_new_pin_refused_by_the_card(failure: pin.PinFailure, action: str, message: str) -> None:
    assert pin.new_pin_refused_message(failure, action=action) == message  # type: ignore[arg-type]


@pytest.mark.parametrize(("new", "current", "problem"), [
    ("12345", None, "the new PIN has 5 characters; it must have 6 to 16."),
    ("123456", None, None),
    ("1" * 16, None, None),
    ("1" * 17, None, "the new PIN has 17 characters; it must have 6 to 16."),
    ("12345678", None, "the new PIN is the PIN letter's default; choose another."),
    ("24681357", "24681357", "the new PIN is the same as the current PIN."),
    ("24681357", "13572468", None),
])
def test_new_pin_rules(new: str, current: str | None, problem: str | None) -> None:
    assert pin.new_pin_problem(new, current=current) == problem
    if problem is not None:
        assert new not in problem, "the sentence never contains the PIN"


# ---------------------------------------------------------------- the log chain (architecture.md, "The store")


def test_log_hash_known_answer() -> None:
    """The hash format is stored in every home: SHA-256 over compact ASCII JSON of the fields, prev first."""
    details = json.dumps({"cost": 1, "note": "台灣"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = log_hash(GENESIS_HASH, 1, "2026-01-01T00:00:00Z", "alice", "cert.issue", "70759028-01", "0a", details)
    canonical = ('["' + "0" * 64 + '",1,"2026-01-01T00:00:00Z","alice","cert.issue","70759028-01","0a",'
                 '"{\\"cost\\":1,\\"note\\":\\"\\u53f0\\u7063\\"}"]')
    assert digest == hashlib.sha256(canonical.encode("ascii")).hexdigest()
    assert digest == "b366dbd5f977749528ce33a743df92147f5172f70896280b2a2dd8c9dcd1bcd0"
    assert log_hash("ab" * 32, 2, "2026-01-01T00:00:00Z", "alice", "crl", None, None, "{}") == \
        "68bc4e7cedabbe1a68fd6c7ad6313d93ac14b04c0082ddf4edccbf3e36a43437"


@pytest.fixture(scope="module")
def log_home(tmp_path_factory: pytest.TempPathFactory) -> CaHome:
    """A home with an account, one issued certificate and one CRL (so the CRL anchors the log)."""
    base = tmp_path_factory.mktemp("chain")
    home = make_ca(base / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "5").code == 0
    assert home.run("cert", "issue", openssl_csr(base), "--account", ACCOUNT).code == 0
    assert home.run("crl", "--force").code == 0
    assert home.run("account", "credit", ACCOUNT, "1").code == 0
    return home


@pytest.fixture
def chain(log_home: CaHome, tmp_path: Path) -> Iterator[Store]:
    copy = tmp_path / "home"
    shutil.copytree(log_home.path, copy)
    store = Store.open(copy)
    try:
        yield store
    finally:
        store.close()


def _sql(store: Store, sql: str, *params: object) -> list[tuple]:
    db = sqlite3.connect(store.home / "twcactl.db")
    try:
        rows = db.execute(sql, params).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def test_verify_counts_every_entry_and_finds_nothing(chain: Store) -> None:
    total = _sql(chain, "SELECT COUNT(*) FROM activity_log")[0][0]
    assert total >= 4
    assert verify_log(chain) == (total, [])


def test_append_keeps_unicode_and_canonical_details(chain: Store) -> None:
    before = verify_log(chain)[0]
    with chain.transaction():
        chain.log.append(operator="alice", action="account.note", account=ACCOUNT,
                         details={"z": 1, "note": "台灣網路認證", "a": [2, 1]})
    count, problems = verify_log(chain)
    assert (count, problems) == (before + 1, [])
    raw = list(chain.log.raw())[-1]
    assert raw.details == '{"a":[2,1],"note":"台灣網路認證","z":1}'
    assert raw.prev_hash == list(chain.log.raw())[-2].hash
    assert chain.meta("log_head") == f"{raw.seq}:{raw.hash}"


def test_entries_filters(chain: Store) -> None:
    with chain.transaction():
        chain.log.append(operator="bob", action="cert.note", account=ACCOUNT, serial="0a")
    assert [e.operator for e in chain.log.entries(operator="bob")] == ["bob"]
    assert [e.serial for e in chain.log.entries(serial="0a")] == ["0a"]
    assert [e.action for e in chain.log.entries(action="cert.note", account=ACCOUNT)] == ["cert.note"]
    assert chain.log.entries(account="70759028-99") == []
    seqs = [e.seq for e in chain.log.entries()]
    assert seqs == sorted(seqs, reverse=True)


def test_a_gap_is_named_by_the_entry_after_it(chain: Store) -> None:
    _sql(chain, "DELETE FROM activity_log WHERE seq = 2")
    count, problems = verify_log(chain)
    total = _sql(chain, "SELECT COUNT(*) FROM activity_log")[0][0]
    assert count == total
    # entry 2 is also where ca init's first root CRL anchored the log head (issue 25): that anchor is named too
    assert {p.seq for p in problems if "CRL" not in p.message} == {3}
    assert {p.seq for p in problems if "CRL" in p.message} <= {2}
    assert any("follows 1" in p.message for p in problems), "the gap names the entry before it"


def test_an_edited_entry_is_named(chain: Store) -> None:
    _sql(chain, "UPDATE activity_log SET operator = 'mallory' WHERE seq = 2")
    problems = verify_log(chain)[1]
    assert [p.seq for p in problems] == [2]


def test_a_head_that_claims_more_entries_is_found(chain: Store) -> None:
    last, digest = _sql(chain, "SELECT seq, hash FROM activity_log ORDER BY seq DESC LIMIT 1")[0]
    with chain.transaction():
        chain.set_meta("log_head", f"{last + 1}:{digest}")
    problems = verify_log(chain)[1]
    assert [p.seq for p in problems] == [last + 1]


def test_a_crl_anchor_that_does_not_match_is_found(chain: Store) -> None:
    anchors = chain.crls.anchors()
    assert anchors and all(a.log_seq for a in anchors)
    _sql(chain, "UPDATE crls SET log_hash = ? WHERE log_seq IS NOT NULL", "f" * 64)
    problems = verify_log(chain)[1]
    assert sorted(p.seq for p in problems) == sorted(a.log_seq for a in anchors)
    assert all(p.message for p in problems)
