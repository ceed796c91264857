"""Issue 14: nodes sharing one SoftHSM2 token.  A token another process is rewriting can be missing for an
instant (SoftHSMv2 issue 757); a signing command looks again a few times before exit 6, and a wrong PIN is
never tried twice.  The token here really disappears for a moment: its directory is moved away and back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.card_support import PIN, SoftHsm, softhsm_directory
from tests.conftest import ACCOUNT, CaHome, make_ca, openssl_csr, require
from twcactl.authority import token_keys
from twcactl.backends.p11 import P11Session, P11Token


@pytest.fixture
def hsm(tmp_path: Path) -> Iterator[SoftHsm]:
    require("softhsm2-util")
    with softhsm_directory(tmp_path / "softhsm") as h:
        yield h


def _token_home(hsm: SoftHsm, path: Path) -> CaHome:
    label = hsm.new_token(prefix="CA")
    home = make_ca(path, "--key-uri", f"pkcs11:token={label}", "--pkcs11-module", hsm.module,
                   "--key-type", "ec-p256", passphrase=PIN)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "9").code == 0
    return home


def _hide_token(hsm: SoftHsm, seconds: float | None) -> threading.Thread | None:
    """Move the token's directory away (SoftHSM2 then sees no token); back after ``seconds`` unless None."""
    (token_dir,) = [p for p in (hsm.directory / "tokens").iterdir() if p.is_dir()]
    hidden = hsm.directory / "hidden"
    token_dir.rename(hidden)
    if seconds is None:
        return None

    def back() -> None:
        time.sleep(seconds)
        hidden.rename(token_dir)

    thread = threading.Thread(target=back)
    thread.start()
    return thread


def test_a_token_missing_for_an_instant_is_found_again(hsm: SoftHsm, tmp_path: Path) -> None:
    home = _token_home(hsm, tmp_path / "ca")
    csr = openssl_csr(tmp_path, name="www")
    thread = _hide_token(hsm, 0.1)  # back well within TOKEN_RETRY_WAITS (0.75 s in all)
    try:
        result = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT)
    finally:
        assert thread is not None
        thread.join()
    assert result.code == 0, result.stdout + result.stderr
    assert home.run("--json", "ca", "check", "--no-repair").json()["ok"] is True


def test_a_token_that_stays_away_is_exit_6_after_the_retries(hsm: SoftHsm, tmp_path: Path) -> None:
    home = _token_home(hsm, tmp_path / "ca")
    csr = openssl_csr(tmp_path, name="www")
    _hide_token(hsm, None)
    started = time.monotonic()
    result = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT)
    elapsed = time.monotonic() - started
    assert result.code == 6 and result.json()["error"]["kind"] == "device", result.stdout
    assert elapsed >= sum(token_keys.TOKEN_RETRY_WAITS)  # it did look again before giving up
    assert home.run("--json", "cert", "list").json()["count"] == 0


def test_a_wrong_pin_is_tried_once(hsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong PIN is not a missing token: one C_Login, exit 4 (a retry would use up the token's tries)."""
    home = _token_home(hsm, tmp_path / "ca")
    logins: list[str | None] = []
    real = P11Token.session

    def counting(self: P11Token, pin: str | None = None, *, rw: bool = False) -> P11Session:
        logins.append(pin)
        return real(self, pin, rw=rw)

    monkeypatch.setattr(P11Token, "session", counting)
    result = home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="www"), "--account", ACCOUNT,
                      env={"TW_TEST_CA_PASS": "11110000"})
    assert result.code == 4, result.stdout
    assert logins == ["11110000"]
    logins.clear()
    assert home.run("--json", "cert", "issue", openssl_csr(tmp_path, name="www"), "--account", ACCOUNT).code == 0
    assert logins == [PIN]
