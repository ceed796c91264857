"""Card rules that need no device: new-PIN checks, PIN-flag wording, module search."""

from __future__ import annotations

from pathlib import Path

import pytest

from twcactl.backends import PinState, TokenInfo, wrong_pin_error
from twcactl.backends.p11 import find_module
from twcactl.card import check_new_pin, pin_warnings, require_pin_usable
from twcactl.errors import DeviceError, PolicyError, StateError


@pytest.mark.parametrize("pin", ["12345", "x" * 17, "12345678"])
def test_bad_new_pins_are_refused_before_the_card(pin: str) -> None:
    with pytest.raises(PolicyError) as err:
        check_new_pin(pin, current="24681357")
    assert pin not in err.value.message


def test_new_pin_equal_to_the_current_one_is_refused() -> None:
    with pytest.raises(PolicyError):
        check_new_pin("24681357", current="24681357")
    check_new_pin("24681357", current="13572468")
    check_new_pin("abcdef")
    check_new_pin("x" * 16)


def test_wrong_pin_wording_follows_the_flags() -> None:
    count_low = wrong_pin_error(PinState(count_low=True)).message  # only what COUNT_LOW says (issue 27)
    assert "since the last good one" in count_low and "few tries" not in count_low
    assert "final try" in wrong_pin_error(PinState(count_low=True, final_try=True)).message
    locked = wrong_pin_error(PinState(final_try=True, locked=True))
    assert "locked" in locked.message and "card unblock" in (locked.hint or "")
    assert wrong_pin_error(PinState()).message == "wrong PIN."
    assert all(e.exit_code == 4 for e in (locked, wrong_pin_error(PinState())))


def test_a_pin_to_be_changed_blocks_key_work() -> None:
    info = TokenInfo(module="m", slot_id=0, slot_description="", label="t", manufacturer="", model="", serial="",
                     pin=PinState(to_be_changed=True))
    with pytest.raises(StateError) as err:
        require_pin_usable(info, for_what="enrolment")
    assert "change-pin" in (err.value.hint or "")
    assert any("must be changed" in w for w in pin_warnings(info.pin))
    assert "must be changed" in info.pin.words()


def test_module_search(tmp_path: Path) -> None:
    with pytest.raises(DeviceError):
        find_module(str(tmp_path / "missing.so"))
    with pytest.raises(DeviceError):
        find_module(None, candidates=[str(tmp_path / "a.so")])
    present = tmp_path / "b.so"
    present.write_bytes(b"")
    assert find_module(None, candidates=[str(tmp_path / "a.so"), str(present)]) == str(present)
    assert find_module(str(present)) == str(present)
