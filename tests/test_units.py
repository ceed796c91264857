"""Small pure pieces: serials, validity and cost, bundle names, secrets, CSV cells, atomic files."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from twcactl.cli.cert_cmd import _csv_cell
from twcactl.cli.secrets import read_source
from twcactl.errors import AuthError, InputError, StateError, UsageError
from twcactl.fsutil import read_input, write_file
from twcactl.issue import Validity, sequence_validity
from twcactl.pkix.chain import bundle_names, zip_bytes
from twcactl.rules.serials import format_serial, parse_serial


@pytest.mark.parametrize("text", ["5f1c0a9e3b7d2c41", "5F1C0A9E3B7D2C41", "0x5f1c0a9e3b7d2c41",
                                  "5f:1c:0a:9e:3b:7d:2c:41", "005f1c0a9e3b7d2c41"])
def test_serial_forms(text: str) -> None:
    assert format_serial(parse_serial(text)) == "5f1c0a9e3b7d2c41"


@pytest.mark.parametrize("text", ["", "xyz", "0x", "12 34"])
def test_bad_serial(text: str) -> None:
    with pytest.raises(UsageError):
        parse_serial(text)


def test_validity_cost_and_end() -> None:
    start = dt.datetime(2024, 2, 29, tzinfo=dt.UTC)
    assert Validity.from_options(None, None).cost == 1
    assert Validity.from_options(3, None).cost == 3
    assert Validity.from_options(None, 365).cost == 1
    assert Validity.from_options(None, 366).cost == 2
    assert Validity.from_options(None, 20).cost == 1
    assert Validity(years=1).end(start) == dt.datetime(2025, 2, 28, tzinfo=dt.UTC)
    assert Validity(days=30).end(start) == start + dt.timedelta(days=30)
    with pytest.raises(UsageError):
        Validity.from_options(1, 30)
    with pytest.raises(UsageError):
        Validity.from_options(0, None)


def test_nested_ca_validity_never_outlives_issuer() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    periods = sequence_validity(start, [5, 10, 3])
    assert periods[1][1] == periods[0][1]
    assert periods[2][1] <= periods[1][1]


def test_bundle_names() -> None:
    assert bundle_names(1) == ["root.cer", "uca.cer", "server.cer"]
    assert bundle_names(2) == ["root.cer", "uca_1.cer", "uca_2.cer", "server.cer"]


def test_zip_is_deterministic() -> None:
    files = [("root.cer", b"a"), ("server.cer", b"b")]
    assert zip_bytes(files) == zip_bytes(files)


def test_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_SECRET", "from-env")
    assert read_source("env:TW_SECRET", option="--x") == "from-env"
    f = tmp_path / "s"
    f.write_text("first-line\r\nsecond\n")
    assert read_source(f"file:{f}", option="--x") == "first-line"
    assert read_source("pass:literal", option="--x") == "literal"
    r, w = os.pipe()
    os.write(w, b"from-fd\n")
    os.close(w)
    try:
        assert read_source(f"fd:{r}", option="--x") == "from-fd"
    finally:
        os.close(r)
    with pytest.raises(AuthError) as info:
        read_source("env:TW_NOT_SET_ANYWHERE", option="--x")
    assert info.value.exit_code == 4
    with pytest.raises(UsageError):
        read_source("plaintext-secret", option="--x")
    with pytest.raises(InputError):
        read_source(f"file:{tmp_path / 'missing'}", option="--x")
    with pytest.raises(AuthError):
        read_source("pass:", option="--x")


def test_usage_error_never_echoes_a_bare_secret() -> None:
    with pytest.raises(UsageError) as info:
        read_source("hunter2hunter2", option="--password")
    assert "hunter2" not in info.value.message


@pytest.mark.parametrize("value,expected", [("=1+2", "'=1+2"), ("+x", "'+x"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"),
                                            ("www.twca.com.tw", "www.twca.com.tw"), (None, "")])
def test_csv_cells_are_neutralised(value: object, expected: str) -> None:
    assert _csv_cell(value) == expected


def test_write_file_is_exclusive_and_private(tmp_path: Path) -> None:
    target = tmp_path / "k.pem"
    write_file(target, b"one", mode=0o600)
    assert target.read_bytes() == b"one"
    assert target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(StateError):
        write_file(target, b"two")
    assert target.read_bytes() == b"one"
    write_file(target, b"two", force=True)
    assert target.read_bytes() == b"two"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateError):
        write_file(link, b"x")
    assert not (tmp_path / "elsewhere").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_read_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_input(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.write_bytes(b"  \n")
    with pytest.raises(InputError, match="empty"):
        read_input(empty)
    with pytest.raises(InputError, match="directory"):
        read_input(tmp_path)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(InputError, match="larger"):
        read_input(big, max_bytes=1024)
