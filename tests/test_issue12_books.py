"""Issue 12, the books: one accounting rule for time (used, carried forward or refunded, never two),
renewal once per certificate, the ``renewed`` status word, ``ca check`` on balances and carried-and-refunded
time, and ``pfx rekey --new-key`` as one unit of work.  Everything through the CLI on real homes."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.conftest import ACCOUNT, CaHome, make_ca, openssl_csr

SUBJ = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN={cn}"
PW, NEW_PW = "old-pfx-secret", "new-pfx-secret"


@pytest.fixture
def home(tmp_path: Path) -> CaHome:
    """A CA home without a CA passphrase and an account of 10 certificate-years."""
    ca = make_ca(tmp_path / "ca", passphrase=None)
    assert ca.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10").code == 0
    return ca


@pytest.fixture
def www(tmp_path: Path) -> Path:
    return openssl_csr(tmp_path, SUBJ.format(cn="www.twca.com.tw"), name="www")


def _ok(result: Any) -> Any:
    assert result.code == 0, result.stdout + result.stderr
    return result.json()


def _issue(home: CaHome, csr: Path, *extra: str) -> dict[str, Any]:
    return _ok(home.run("--json", "cert", "issue", csr, "--account", ACCOUNT, *extra))["certificates"][0]


def _renew(home: CaHome, serial: str, csr: Path, *extra: str) -> dict[str, Any]:
    return _ok(home.run("--json", "cert", "renew", serial, "--csr", csr, *extra))


def _account(home: CaHome) -> dict[str, Any]:
    return _ok(home.run("--json", "account", "show", ACCOUNT))


def _assert_balance_is_ledger(home: CaHome) -> int:
    account = _account(home)
    assert account["balance"] == sum(e["delta"] for e in account["ledger"])
    return int(account["balance"])


def _check(home: CaHome) -> dict[str, Any]:
    result = home.run("--json", "ca", "check", "--no-repair")
    return result.json()


# ---------------------------------------------------------------- one accounting rule for time


def test_early_renew_then_revoke_the_old_as_superseded_refunds_nothing(home: CaHome, www: Path) -> None:
    old = _issue(home, www, "--years", "1")
    new = _renew(home, old["serial"], www, "--early", "--years", "1")["certificate"]
    assert _assert_balance_is_ledger(home) == 8
    revoked = _ok(home.run("--json", "cert", "revoke", old["serial"], "--reason", "superseded"))
    assert revoked["refund"] == {"years": 0, "why": "renewed", "renewed_by": new["serial"]}
    assert _assert_balance_is_ledger(home) == 8  # the old year went to the successor, not back to the account
    steps = [(e["action"], e["delta"], e["serial"]) for e in reversed(_account(home)["ledger"])]
    assert steps[-3:] == [("issue", -1, old["serial"]), ("renew", -1, new["serial"]), ("carried", 0, old["serial"])]
    log = _ok(home.run("--json", "log", "--action", "cert.revoke"))["entries"][0]["details"]
    assert (log["refund"], log["refund_why"]) == (0, "renewed")
    assert _check(home)["ok"] is True


def test_revoking_the_successor_in_its_window_refunds_only_its_own_cost(home: CaHome, www: Path) -> None:
    old = _issue(home, www, "--years", "1")
    new = _renew(home, old["serial"], www, "--early", "--years", "2")["certificate"]
    assert _ok(home.run("--json", "cert", "revoke", old["serial"], "--reason", "superseded"))["refund"]["years"] == 0
    revoked = _ok(home.run("--json", "cert", "revoke", new["serial"], "--reason", "cessationOfOperation"))
    assert revoked["refund"] == {"years": 2, "why": "refund_window", "renewed_by": None}
    assert _assert_balance_is_ledger(home) == 10 - 1 - 2 + 2
    assert _check(home)["ok"] is True


def test_a_plain_revocation_in_the_window_still_refunds(home: CaHome, www: Path) -> None:
    cert = _issue(home, www, "--years", "3")
    revoked = _ok(home.run("--json", "cert", "revoke", cert["serial"], "--reason", "unspecified"))
    assert revoked["refund"] == {"years": 3, "why": "refund_window", "renewed_by": None}
    assert _assert_balance_is_ledger(home) == 10
    again = _ok(home.run("--json", "cert", "revoke", cert["serial"], "--reason", "keyCompromise"))
    assert again["refund"]["years"] == 0 and again["refund"]["why"] == "already_revoked"


# ---------------------------------------------------------------- renewal once per certificate


def test_a_second_renewal_exits_5_naming_the_successor(home: CaHome, www: Path) -> None:
    old = _issue(home, www)
    new = _renew(home, old["serial"], www, "--early")["certificate"]
    before = _assert_balance_is_ledger(home)
    again = home.run("--json", "cert", "renew", old["serial"], "--csr", www, "--early")
    assert again.code == 5
    doc = again.json()
    assert new["serial"] in doc["error"]["message"] and doc["renewed_by"] == new["serial"]
    assert _assert_balance_is_ledger(home) == before  # nothing charged
    # the successor itself may be renewed, once
    third = _renew(home, new["serial"], www, "--early")["certificate"]
    assert third["renewed_by"] is None
    assert home.run("cert", "renew", new["serial"], "--csr", www, "--early").code == 5


def test_renewed_status_word_list_and_show(home: CaHome, www: Path) -> None:
    old = _issue(home, www, "--days", "10")  # inside the 30-day renewal window: expiring
    assert old["status"] == "expiring" and old["renewed_by"] is None
    new = _renew(home, old["serial"], www, "--days", "365")["certificate"]

    def serials(*args: str) -> set[str]:
        return {c["serial"] for c in _ok(home.run("--json", "cert", "list", *args))["certificates"]}

    assert serials("--status", "expiring") == set()
    assert serials("--status", "renewed") == {old["serial"]}
    assert serials("--status", "valid") == {new["serial"]}
    assert serials("--expiring-within", "30") == set()
    assert serials("--status", "renewed", "--expiring-within", "30") == {old["serial"]}
    listed = {c["serial"]: c for c in _ok(home.run("--json", "cert", "list"))["certificates"]}
    assert listed[old["serial"]]["status"] == "renewed"
    assert listed[old["serial"]]["renewed_by"] == new["serial"]
    assert listed[new["serial"]]["renewed_by"] is None
    shown = _ok(home.run("--json", "cert", "show", old["serial"]))
    assert shown["certificate"]["renewed_by"] == new["serial"] and shown["renewed_by"] == [new["serial"]]
    # human output carries the successor's serial too
    assert new["serial"] in home.run("cert", "show", old["serial"]).stdout
    assert new["serial"] in home.run("cert", "list", "--status", "renewed").stdout
    # a renewed certificate that is revoked is revoked (precedence), and can still be held before that
    assert _ok(home.run("--json", "cert", "hold", old["serial"]))["certificate"]["status"] == "suspended"
    assert _ok(home.run("--json", "cert", "release", old["serial"]))["certificate"]["status"] == "renewed"
    assert home.run("cert", "revoke", old["serial"], "--reason", "superseded").code == 0
    assert serials("--status", "renewed") == set() and serials("--status", "revoked") == {old["serial"]}


# ---------------------------------------------------------------- ca check


def test_ca_check_reports_an_edited_balance(home: CaHome, www: Path) -> None:
    _issue(home, www)
    assert _check(home)["ok"] is True
    with sqlite3.connect(home.path / "twcactl.db") as db:
        db.execute("UPDATE accounts SET balance = balance + 5 WHERE id = ?", (ACCOUNT,))
    doc = _check(home)
    assert doc["ok"] is False
    assert any(ACCOUNT in f and "ledger" in f for f in doc["findings"])


def test_ca_check_reports_time_both_carried_and_refunded(home: CaHome, www: Path) -> None:
    old = _issue(home, www)
    _renew(home, old["serial"], www, "--early")
    assert _check(home)["ok"] is True
    with sqlite3.connect(home.path / "twcactl.db") as db:  # the old loophole, written by hand: balance kept equal
        db.execute("UPDATE accounts SET balance = balance + 1 WHERE id = ?", (ACCOUNT,))
        (balance,) = db.execute("SELECT balance FROM accounts WHERE id = ?", (ACCOUNT,)).fetchone()
        db.execute("INSERT INTO ledger (account_id, time, delta, balance, action, serial, operator, note)"
                   " VALUES (?, '2026-01-01T00:00:00Z', 1, ?, 'refund', ?, 'mallory', NULL)",
                   (ACCOUNT, balance, old["serial"]))
    doc = _check(home)
    assert doc["ok"] is False
    assert [f for f in doc["findings"] if old["serial"] in f and "carried" in f]


# ---------------------------------------------------------------- pfx rekey --new-key: one unit of work


@pytest.fixture
def old_pfx(home: CaHome, www: Path, tmp_path: Path) -> tuple[str, Path]:
    cert = _issue(home, www)
    bundle = tmp_path / "bundle"
    assert home.run("cert", "export", cert["serial"], "--out-dir", bundle).code == 0
    out = tmp_path / "old.pfx"
    assert home.run("pfx", "export", "--cert", bundle / "server.cer", "--key", tmp_path / "www.key", "--out", out,
                    "--password", f"pass:{PW}").code == 0
    return cert["serial"], out


def _rekey(home: CaHome, pfx: Path, out: Path, *extra: str) -> Any:
    return home.run("--json", "pfx", "rekey", pfx, "--out", out, "--new-key", "--early", "--password",
                    f"pass:{PW}", "--new-password", f"pass:{NEW_PW}", *extra)


def test_rekey_new_key_revoke_old_refunds_nothing(home: CaHome, old_pfx: tuple[str, Path], tmp_path: Path) -> None:
    serial, pfx = old_pfx
    before = _assert_balance_is_ledger(home)
    doc = _ok(_rekey(home, pfx, tmp_path / "new.pfx", "--revoke-old"))
    assert doc["new_key"]["refund"] == {"years": 0, "why": "renewed", "renewed_by": doc["new_key"]["serial"]}
    assert doc["warnings"] == [] and doc["file"] == str(tmp_path / "new.pfx")
    assert _assert_balance_is_ledger(home) == before - 1
    assert _ok(home.run("--json", "cert", "show", serial))["certificate"]["status"] == "revoked"
    assert _check(home)["ok"] is True
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_rekey_new_key_failing_before_the_commit_charges_nothing(home: CaHome, old_pfx: tuple[str, Path],
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    serial, pfx = old_pfx
    before = _assert_balance_is_ledger(home)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def unwritable(*_args: Any, **_kwargs: Any) -> Any:  # the directory refuses new files (EACCES), as for non-root
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", unwritable)
    result = _rekey(home, pfx, out_dir / "new.pfx", "--revoke-old")
    monkeypatch.undo()
    assert result.code == 3
    assert _assert_balance_is_ledger(home) == before
    certs = _ok(home.run("--json", "cert", "list"))["certificates"]
    assert [(c["serial"], c["status"], c["renewed_by"]) for c in certs] == [(serial, "valid", None)]
    assert list(out_dir.iterdir()) == []
    # the directory missing altogether: refused before anything (exit 3), nothing charged either
    assert _rekey(home, pfx, tmp_path / "gone" / "new.pfx").code == 3
    assert _assert_balance_is_ledger(home) == before


def test_rekey_new_key_failing_after_the_commit_names_what_exists(home: CaHome, old_pfx: tuple[str, Path],
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from twcactl.authority import rekey

    serial, pfx = old_pfx
    target = tmp_path / "new.pfx"
    real = rekey.renew_and_revoke

    def then_someone_takes_the_name(*args: Any, **kwargs: Any) -> Any:
        outcome = real(*args, **kwargs)
        target.write_bytes(b"another process wrote this meanwhile")
        return outcome

    monkeypatch.setattr(rekey, "renew_and_revoke", then_someone_takes_the_name)
    result = _rekey(home, pfx, target, "--revoke-old")
    monkeypatch.undo()
    doc = _ok(result)  # committed: exit 0, with the truth on stderr and in the document
    new_serial = doc["new_key"]["serial"]
    assert len(doc["warnings"]) == 1 and new_serial in doc["warnings"][0] and doc["file"] in doc["warnings"][0]
    assert new_serial in result.stderr and doc["file"] in result.stderr
    assert target.read_bytes() == b"another process wrote this meanwhile"
    staged = Path(doc["file"])
    assert staged.parent == tmp_path and staged.stat().st_mode & 0o777 == 0o600
    kept = pkcs12.load_pkcs12(staged.read_bytes(), NEW_PW.encode())
    assert kept.cert is not None and format(kept.cert.certificate.serial_number, "x") == new_serial
    assert _assert_balance_is_ledger(home) == 10 - 1 - 1  # charged once
    # running it again renews nothing twice: the old certificate already has its successor
    again = _rekey(home, pfx, tmp_path / "again.pfx")
    assert again.code == 5 and again.json()["renewed_by"] == new_serial
    assert _assert_balance_is_ledger(home) == 8
    assert serial != new_serial
