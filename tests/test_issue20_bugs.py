"""Issue 20: one test per single-line bug that used to survive the whole suite.

Each test names the bug it catches; docs/testing.md records how each was put in by hand and which test failed.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import ACCOUNT, CaHome, make_ca, openssl_csr
from twcactl.store.log import log_hash

SUBJ = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/OU=SYSTEM/CN={cn}"


@pytest.fixture
def home(tmp_path: Path) -> CaHome:
    """A CA home without a passphrase and an account of 20 certificate-years."""
    home = make_ca(tmp_path / "ca", passphrase=None)
    result = home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "20")
    assert result.code == 0, result.stderr
    return home


@pytest.fixture
def www(tmp_path: Path) -> Path:
    return openssl_csr(tmp_path, SUBJ.format(cn="www.twca.com.tw"), name="www")


def _issue(home: CaHome, csr: Path, *extra: str) -> dict:
    result = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, *extra)
    assert result.code == 0, result.stdout + result.stderr
    return result.json()["certificates"][0]


def _balance(home: CaHome) -> int:
    return int(home.run("--json", "account", "show", ACCOUNT).json()["balance"])


def _ledger(home: CaHome) -> list[dict]:
    return list(home.run("--json", "account", "show", ACCOUNT).json()["ledger"])


def _db(home: CaHome) -> sqlite3.Connection:
    return sqlite3.connect(home.path / "twcactl.db")


# -- bug 1: a refund outside the refund window ------------------------------------------------------------------


def test_no_refund_outside_the_refund_window(home: CaHome, www: Path) -> None:
    """domain.md §3: only a *newly issued* certificate (inside refund_window_days) is refunded."""
    inside = _issue(home, www, "--years", "2")
    outside = _issue(home, www, "--years", "2")
    assert _balance(home) == 16
    # `outside` was issued 31 days ago (the default window is 30 days); `inside` 29 days ago
    db = _db(home)
    for serial, days in ((outside["serial"], 31), (inside["serial"], 29)):
        when = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        db.execute("UPDATE certificates SET issued_at = ? WHERE serial = ?", (when, serial))
    db.commit()
    db.close()
    revoked = home.run("--json", "cert", "revoke", outside["serial"], "--reason", "superseded")
    assert revoked.code == 0, revoked.stderr
    assert _balance(home) == 16
    assert [e["action"] for e in _ledger(home)].count("refund") == 0
    revoked = home.run("--json", "cert", "revoke", inside["serial"], "--reason", "superseded")
    assert revoked.code == 0, revoked.stderr
    assert _balance(home) == 18
    assert [(e["action"], e["delta"]) for e in _ledger(home)][0] == ("refund", 2)


def test_refund_window_setting_zero_refunds_nothing(home: CaHome, www: Path) -> None:
    assert home.run("ca", "config", "refund_window_days", "0").code == 0
    record = _issue(home, www)
    db = _db(home)
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    db.execute("UPDATE certificates SET issued_at = ? WHERE serial = ?", (when, record["serial"]))
    db.commit()
    db.close()
    assert home.run("cert", "revoke", record["serial"], "--reason", "superseded").code == 0
    assert _balance(home) == 19


# -- bug 2: an edited log entry with its own hash recomputed ----------------------------------------------------


def test_edited_entry_with_recomputed_hash_breaks_the_next_link(home: CaHome, www: Path) -> None:
    """The entry's own hash matches again, so only the link check (entry k+1's prev_hash) can see the edit."""
    for _ in range(2):
        _issue(home, www)
    assert home.run("account", "credit", ACCOUNT, "1").code == 0
    db = _db(home)
    last = db.execute("SELECT MAX(seq) FROM activity_log").fetchone()[0]
    k = 3
    assert last > k + 1
    prev_hash, time, operator, action, account, serial = db.execute(
        "SELECT prev_hash, time, operator, action, account, serial FROM activity_log WHERE seq = ?", (k,)).fetchone()
    details = json.dumps({"forged": True}, sort_keys=True, separators=(",", ":"))
    digest = log_hash(prev_hash, k, time, operator, action, account, serial, details)
    db.execute("UPDATE activity_log SET details = ?, hash = ? WHERE seq = ?", (details, digest, k))
    db.commit()
    db.close()
    verify = home.run("--json", "log", "verify")
    assert verify.code == 1
    findings = verify.json()["findings"]
    assert k + 1 in {f["seq"] for f in findings}, findings
    assert k not in {f["seq"] for f in findings}, "entry k's own hash matches: only the link shows the edit"
    check = home.run("--json", "ca", "check", "--no-repair")
    assert check.code == 1
    assert any(f"entry {k + 1} does not chain" in f for f in check.json()["findings"]), check.json()["findings"]


# -- bug 3: a renewal charged nothing ------------------------------------------------------------------------------


@pytest.mark.parametrize("years", [1, 2])
def test_renewal_charges_its_cost(home: CaHome, www: Path, years: int) -> None:
    """domain.md §3-§4: renewing for N years deducts N certificate-years, in one ledger entry."""
    record = _issue(home, www, "--years", "1")
    before = _balance(home)
    renewed = home.run("--json", "cert", "renew", record["serial"], "--csr", www, "--early", "--years", str(years))
    assert renewed.code == 0, renewed.stderr
    new_serial = renewed.json()["certificate"]["serial"]
    assert _balance(home) == before - years
    top = _ledger(home)[0]
    assert (top["action"], top["delta"], top["balance"], top["serial"]) == ("renew", -years, before - years,
                                                                             new_serial)
    entry = home.run("--json", "log", "--action", "cert.renew").json()["entries"][0]
    assert entry["details"]["cost"] == years


# -- bug 4: the configured renewal window ignored in favour of 30 days ------------------------------------------


def _expiring(home: CaHome) -> set[str]:
    result = home.run("--json", "cert", "list", "--status", "expiring")
    assert result.code == 0, result.stderr
    return {c["serial"] for c in result.json()["certificates"]}


def test_renewal_window_of_60_days_is_honoured(home: CaHome, www: Path) -> None:
    assert home.run("ca", "config", "renewal_window_days", "60").code == 0
    record = _issue(home, www, "--days", "45")
    assert home.run("--json", "cert", "show", record["serial"]).json()["certificate"]["status"] == "expiring"
    assert _expiring(home) == {record["serial"]}
    renewed = home.run("--json", "cert", "renew", record["serial"], "--csr", www)
    assert renewed.code == 0, renewed.stderr
    assert renewed.json()["renewed"] == record["serial"]


def test_renewal_window_of_10_days_is_honoured(home: CaHome, www: Path) -> None:
    assert home.run("ca", "config", "renewal_window_days", "10").code == 0
    record = _issue(home, www, "--days", "25")
    assert home.run("--json", "cert", "show", record["serial"]).json()["certificate"]["status"] == "valid"
    assert _expiring(home) == set()
    refused = home.run("--json", "cert", "renew", record["serial"], "--csr", www)
    assert refused.code == 5
    assert refused.json()["error"]["kind"] == "state"
    early = home.run("--json", "cert", "renew", record["serial"], "--csr", www, "--early")
    assert early.code == 0, early.stderr
