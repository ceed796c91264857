"""Issue 11, one home per rule: the quota, the renewal and refund windows and the validity arithmetic
(twcactl.rules.quota / windows / validity), each tested at its boundaries, and the quota error as the
CLI's JSON error document shows it."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ACCOUNT, CaHome, make_ca, openssl_csr
from twcactl.errors import QuotaError, StateError
from twcactl.rules import windows
from twcactl.rules.quota import refund_due, require_balance, require_balances
from twcactl.rules.validity import (
    Validity,
    cost_in_certificate_years,
    recorded_validity,
    renewal_end,
    validity_end,
)

UTC = dt.UTC
SECOND = dt.timedelta(seconds=1)
NOT_AFTER = dt.datetime(2027, 6, 30, 12, 0, 0, tzinfo=UTC)
ISSUED = dt.datetime(2026, 1, 10, 8, 30, 0, tzinfo=UTC)


# ---------------------------------------------------------------- validity


@pytest.mark.parametrize(("days", "cost"), [(1, 1), (365, 1), (366, 2), (730, 2), (731, 3)])
def test_cost_of_days_is_ceil_over_365(days: int, cost: int) -> None:
    assert cost_in_certificate_years(Validity(days=days)) == cost
    assert Validity(days=days).cost == cost


def test_cost_of_years_is_the_years() -> None:
    assert cost_in_certificate_years(Validity(years=3)) == 3


def test_validity_end_adds_calendar_years_or_days() -> None:
    leap = dt.datetime(2028, 2, 29, tzinfo=UTC)
    assert validity_end(leap, Validity(years=1)) == dt.datetime(2029, 2, 28, tzinfo=UTC)
    assert validity_end(ISSUED, Validity(days=30)) == ISSUED + dt.timedelta(days=30)
    assert Validity(years=2).end(ISSUED) == validity_end(ISSUED, Validity(years=2))


def test_renewal_continues_from_the_old_not_after() -> None:
    assert renewal_end(NOT_AFTER, Validity(years=1)) == dt.datetime(2028, 6, 30, 12, 0, 0, tzinfo=UTC)
    assert renewal_end(NOT_AFTER, Validity(days=90)) == NOT_AFTER + dt.timedelta(days=90)


def test_recorded_validity_reads_the_text_else_whole_days() -> None:
    assert recorded_validity("2y", ISSUED, NOT_AFTER) == Validity(years=2)
    assert recorded_validity("45d", ISSUED, NOT_AFTER) == Validity(days=45)
    assert recorded_validity("", ISSUED, ISSUED + dt.timedelta(days=100, hours=5)) == Validity(days=100)
    assert recorded_validity("", ISSUED, ISSUED) == Validity(days=1)


def test_old_import_path_is_the_same_class() -> None:
    from twcactl.issue import Validity as FromIssue

    assert FromIssue is Validity


def test_rules_import_without_cryptography() -> None:
    code = ("import sys, twcactl.rules.validity, twcactl.rules.quota, twcactl.rules.windows; "
            "print('cryptography' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# ---------------------------------------------------------------- renewal window


def test_renewal_window_opens_window_days_before_not_after() -> None:
    assert windows.renewal_window_start(NOT_AFTER, 30) == NOT_AFTER - dt.timedelta(days=30)


def test_renewal_window_boundary_exactly_at_start_and_one_second_before() -> None:
    start = windows.renewal_window_start(NOT_AFTER, 30)
    assert windows.in_renewal_window(NOT_AFTER, start, 30) is True
    assert windows.in_renewal_window(NOT_AFTER, start - SECOND, 30) is False
    windows.require_renewal_window("ab12", NOT_AFTER, start, 30, early=False)
    with pytest.raises(StateError) as refused:
        windows.require_renewal_window("ab12", NOT_AFTER, start - SECOND, 30, early=False)
    assert refused.value.exit_code == 5 and refused.value.hint is not None and "--early" in refused.value.hint
    windows.require_renewal_window("ab12", NOT_AFTER, start - SECOND, 30, early=True)


@pytest.mark.parametrize("status", ["valid", "expiring"])
def test_valid_and_expiring_are_renewable(status: str) -> None:
    windows.require_renewable_status("ab12", status)


@pytest.mark.parametrize("status", ["revoked", "suspended", "expired"])
def test_other_statuses_are_not_renewable(status: str) -> None:
    with pytest.raises(StateError) as refused:
        windows.require_renewable_status("ab12", status)
    assert refused.value.exit_code == 5
    # an expired certificate can only be applied for anew (domain.md §4)
    assert (refused.value.hint is not None and "cert issue" in refused.value.hint) == (status == "expired")


# ---------------------------------------------------------------- refund window and refund


def test_refund_window_ends_refund_days_after_issue_inclusive() -> None:
    end = windows.refund_window_end(ISSUED, 30)
    assert end == ISSUED + dt.timedelta(days=30)
    assert windows.in_refund_window(ISSUED, end, 30) is True
    assert windows.in_refund_window(ISSUED, end + SECOND, 30) is False


def _refund(now: dt.datetime, **overrides: object) -> int:
    args: dict[str, object] = {"cost": 2, "state": "valid", "issued_at": ISSUED, "now": now,
                               "refund_window_days": 30, "renewed": False}
    args.update(overrides)
    return refund_due(**args)  # type: ignore[arg-type]


def test_refund_on_the_last_day_of_the_window_and_not_the_day_after() -> None:
    last_day = ISSUED + dt.timedelta(days=30)
    assert _refund(last_day) == 2
    assert _refund(last_day + dt.timedelta(days=1)) == 0


def test_no_refund_for_revoked_free_or_renewed_certificates() -> None:
    assert _refund(ISSUED, state="suspended") == 2
    assert _refund(ISSUED, state="revoked") == 0
    assert _refund(ISSUED, cost=0) == 0
    assert _refund(ISSUED, renewed=True) == 0


# ---------------------------------------------------------------- quota


def test_require_balance_allows_exactly_the_balance() -> None:
    require_balance(ACCOUNT, 3, 3)
    require_balance(ACCOUNT, 3, 0)


def test_quota_error_carries_account_balance_and_need() -> None:
    with pytest.raises(QuotaError) as refused:
        require_balance(ACCOUNT, 1, 4)
    err = refused.value
    assert (err.account, err.balance, err.need) == (ACCOUNT, 1, 4)
    assert err.details["quota"] == {"account": ACCOUNT, "balance": 1, "need": 4}
    assert err.exit_code == 5 and err.kind == "state"
    assert err.hint is not None and ACCOUNT in err.hint


def test_require_balances_checks_every_account() -> None:
    balances = {"70759028-01": 5, "70759028-02": 1}
    require_balances({"70759028-01": 5}, balances.__getitem__)
    with pytest.raises(QuotaError) as refused:
        require_balances({"70759028-01": 2, "70759028-02": 2}, balances.__getitem__)
    assert (refused.value.account, refused.value.balance, refused.value.need) == ("70759028-02", 1, 2)


# ---------------------------------------------------------------- through the CLI


@pytest.fixture
def empty_account(tmp_path: Path) -> CaHome:
    home = make_ca(tmp_path / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw").code == 0
    return home


def test_cli_json_error_for_an_empty_account_shows_the_quota(empty_account: CaHome, tmp_path: Path) -> None:
    result = empty_account.run("--json", "cert", "issue", openssl_csr(tmp_path, name="q"), "--account", ACCOUNT,
                               "--years", "2")
    assert result.code == 5
    doc = result.json()
    assert doc["error"]["kind"] == "state" and doc["error"]["code"] == 5
    assert doc["quota"] == {"account": ACCOUNT, "balance": 0, "need": 2}


def test_store_backstop_raises_the_same_quota_error(empty_account: CaHome) -> None:
    result = empty_account.run("--json", "account", "credit", ACCOUNT, "--", "-3")
    assert result.code == 5
    assert result.json()["quota"] == {"account": ACCOUNT, "balance": 0, "need": 3}


def test_revoking_a_renewed_certificate_refunds_nothing(empty_account: CaHome, tmp_path: Path) -> None:
    home = empty_account
    assert home.run("account", "credit", ACCOUNT, "2").code == 0
    issued = home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="a"), "--account", ACCOUNT)
    assert issued.code == 0, issued.stdout + issued.stderr
    old = issued.json()["certificates"][0]["serial"]
    renewed = home.run("--json", "cert", "renew", old, "--csr", openssl_csr(tmp_path, name="b"), "--early")
    assert renewed.code == 0, renewed.stdout + renewed.stderr
    new = renewed.json()["certificate"]["serial"]
    assert renewed.json()["account"]["balance"] == 0
    # the renewal carried the old certificate's time forward: revoking the old one gives nothing back
    assert home.run("--json", "cert", "revoke", old, "--reason", "superseded").code == 0
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 0
    # the new one is newly issued and not renewed: its year comes back
    assert home.run("--json", "cert", "revoke", new, "--reason", "superseded").code == 0
    assert home.run("--json", "account", "show", ACCOUNT).json()["balance"] == 1
