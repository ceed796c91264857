"""PIN lockout and SO unblock on opencryptoki's software token, which really locks.

Machine-global state (pkcsslotd and /var/lib/opencryptoki): the fixture
starts the daemon for this module, gives each test a fresh token, and stops
the daemon at the end.  The tests run one after another.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.card_support import OPENCRYPTOKI_PIN, SO_PIN, Opencryptoki, stop_pkcsslotd
from tests.conftest import invoke, require


@pytest.fixture(scope="module")
def ock_daemon() -> Iterator[Opencryptoki]:
    require("pkcsconf")
    if not Path(Opencryptoki.module).is_file():
        pytest.fail("opencryptoki is not installed; scripts/test.sh installs it")
    ock = Opencryptoki()
    try:
        yield ock
    finally:
        ock.release()
        stop_pkcsslotd()


@pytest.fixture
def ock(ock_daemon: Opencryptoki) -> Opencryptoki:
    ock_daemon.reset_token()
    return ock_daemon


def verify(ock: Opencryptoki, pin: str) -> tuple[int, dict]:
    result = invoke("card", "verify-pin", "--pin", f"pass:{pin}", "--json", env=ock.env())
    return result.code, result.json()


def test_three_wrong_pins_lock_and_the_so_pin_unblocks(ock: Opencryptoki) -> None:
    code, doc = verify(ock, "99990000")
    assert code == 4 and "since the last good one" in doc["error"]["message"]
    code, doc = verify(ock, "99990000")
    assert code == 4 and "final try" in doc["error"]["message"]
    code, doc = verify(ock, "99990000")
    assert code == 4 and "locked" in doc["error"]["message"]
    assert "card unblock" in doc["error"]["hint"]

    code, doc = verify(ock, OPENCRYPTOKI_PIN)  # the right PIN, refused: locked
    assert code == 4 and "locked" in doc["error"]["message"] and "card unblock" in doc["error"]["hint"]
    status = invoke("card", "status", "--json", env=ock.env()).json()
    assert status["token"]["pin"]["locked"] is True

    new = "24681357"
    wrong_so = invoke("card", "unblock", "--so-pin", "pass:00000000", "--new-pin", f"pass:{new}", env=ock.env())
    assert wrong_so.code == 4
    result = invoke("card", "unblock", "--so-pin", f"pass:{SO_PIN}", "--new-pin", f"pass:{new}", "--json",
                    env=ock.env())
    assert result.code == 0, result.stdout + result.stderr
    code, doc = verify(ock, new)
    assert code == 0 and doc["token"]["pin"]["locked"] is False


def test_a_good_pin_resets_the_count(ock: Opencryptoki) -> None:
    assert verify(ock, "99990000")[0] == 4
    code, doc = verify(ock, OPENCRYPTOKI_PIN)
    assert code == 0 and doc["token"]["pin"]["count_low"] is False


def test_pin_length_refused_by_the_token_is_exit_1_and_not_retried(ock: Opencryptoki) -> None:
    # ten characters pass twcactl's 6..16 rule; this token takes 4..8
    result = invoke("card", "change-pin", "--pin", f"pass:{OPENCRYPTOKI_PIN}", "--new-pin", "pass:1234567890",
                    "--json", env=ock.env())
    assert result.code == 1 and result.json()["error"]["kind"] == "policy"
    assert verify(ock, OPENCRYPTOKI_PIN)[0] == 0  # the old PIN still works: nothing changed, no try lost


def test_signing_without_sha256_rsa_pkcs_hashes_on_the_host(ock: Opencryptoki) -> None:
    """opencryptoki lacks CKM_SHA256_RSA_PKCS: the token key signs a DigestInfo with CKM_RSA_PKCS."""
    from twcactl import card
    from twcactl.backends.p11 import Pkcs11Module

    token = Pkcs11Module(ock.module).open_token(None)
    assert "SHA256_RSA_PKCS" not in token.info.mechanisms and not token.info.has_ec
    with token.session(OPENCRYPTOKI_PIN, rw=True) as session:
        key = session.generate_key_pair("rsa2048", label="host-hash")
        csr = card.build_token_csr(key, x509.Name([]), [])
        assert csr.is_signature_valid
