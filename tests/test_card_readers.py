"""``card readers`` through the real PC/SC stack: pcscd, the vpcd reader driver and a
virtual card (tests/card_support.py) talking vpcd's socket protocol.

pcscd is one per machine: this module starts it and stops it at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.card_support import (
    VCARD_ATR,
    VPCD_READER,
    Pcscd,
    VirtualCardProcess,
    wait_card_present,
)
from tests.conftest import invoke


@pytest.fixture(scope="module")
def pcscd() -> Iterator[Pcscd]:
    daemon = Pcscd()
    try:
        yield daemon
    finally:
        daemon.stop()


def test_readers_lists_the_vpcd_reader_and_the_card_atr(pcscd: Pcscd) -> None:
    card = VirtualCardProcess()
    try:
        assert wait_card_present() == VCARD_ATR
        result = invoke("card", "readers", "--json")
        assert result.code == 0, result.stdout + result.stderr
        readers = {r["name"]: r for r in result.json()["readers"]}
        assert readers[VPCD_READER]["card_present"] is True
        assert readers[VPCD_READER]["atr"] == VCARD_ATR
        assert readers["Virtual PCD 00 01"]["card_present"] is False
        human = invoke("card", "readers")
        assert VPCD_READER in human.stdout and VCARD_ATR in human.stdout
    finally:
        card.stop()


def test_wait_card_returns_when_a_card_is_inserted(pcscd: Pcscd) -> None:
    card = VirtualCardProcess(delay=1.0)  # "inserted" while the command waits
    try:
        result = invoke("card", "readers", "--wait-card", "20", "--reader", VPCD_READER, "--json")
        assert result.code == 0, result.stdout + result.stderr
        readers = {r["name"]: r for r in result.json()["readers"]}
        assert readers[VPCD_READER]["atr"] == VCARD_ATR
    finally:
        card.stop()


def test_wait_card_without_a_card_is_exit_6(pcscd: Pcscd) -> None:
    # the reader that no card process ever connects to
    result = invoke("card", "readers", "--wait-card", "0.5", "--reader", "Virtual PCD 00 01", "--json")
    assert result.code == 6, result.stdout
    assert result.json()["error"]["kind"] == "device"


def test_no_pcscd_is_exit_6(pcscd: Pcscd) -> None:
    pcscd.stop()
    try:
        result = invoke("card", "readers", "--json")
        assert result.code == 6, result.stdout
    finally:
        pcscd.start()  # back up for the module teardown
