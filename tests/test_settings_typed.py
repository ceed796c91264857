"""Typed settings (issue 11): config.toml is read into one frozen Settings value that refuses
unknown keys and wrong types (exit 3, naming the file and the key); ``ca config`` checks ranges
(exit 2) before anything is written; ``ca check`` reports a bad config.toml as a finding."""

from __future__ import annotations

import datetime as dt
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from cryptography import x509

from tests.conftest import ACCOUNT, CaHome, make_ca
from twcactl.errors import InputError, UsageError
from twcactl.rules.settings import MAX_DAYS, Settings, SettingsFileError, settings_problems
from twcactl.store import DEFAULT_SETTINGS


@pytest.fixture
def home(tmp_path: Path) -> CaHome:
    """A CA home without a passphrase (fast) and one account."""
    made = make_ca(tmp_path / "ca", passphrase=None)
    assert made.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "3").code == 0
    return made


def _edit_config(home: CaHome, **changes: Any) -> None:
    config = home.path / "config.toml"
    data = tomllib.loads(config.read_text("utf-8"))
    data.update(changes)
    config.write_text(tomli_w.dumps(data), "utf-8")


def _config_log(home: CaHome) -> list[tuple[str]]:
    db = sqlite3.connect(home.path / "twcactl.db")
    try:
        return db.execute("SELECT details FROM activity_log WHERE action = 'ca.config'").fetchall()
    finally:
        db.close()


# ----- config.toml read by every command -----

@pytest.mark.parametrize(("key", "value"), [
    ("crl_days", "seven"),           # wrong type
    ("crl_days", True),              # bool is not a number of days
    ("crl_days", 7.5),               # not whole
    ("crl_days", 99_999_999),        # would overflow a date
    ("renewal_window_days", -1),     # below its minimum
    ("crl_url", 5),                  # not text
    ("ocsp_url", "ftp://ocsp.example"),
    ("pkcs11_module", "libsofthsm2.so"),
    ("crl_dayz", 7),                 # misspelt key
])
def test_bad_config_refused_with_exit_3_naming_the_key(home: CaHome, key: str, value: Any) -> None:
    _edit_config(home, **{key: value})
    for command in (("cert", "list"), ("crl",), ("ca", "show"), ("ca", "config")):
        result = home.run("--json", *command)
        assert result.code == 3, (command, result.stdout, result.stderr)
        error = result.json()["error"]
        assert error["kind"] == "input"
        assert key in error["message"] and "config.toml" in error["message"], error


def test_ca_check_reports_every_problem_of_config(home: CaHome) -> None:
    assert home.run("ca", "check").code == 0
    _edit_config(home, crl_days="seven", crl_dayz=7)
    result = home.run("--json", "ca", "check")
    assert result.code == 1, result.stderr
    doc = result.json()
    assert doc["ok"] is False
    config_findings = [f for f in doc["findings"] if "config.toml" in f]
    assert len(config_findings) == 2
    assert any("crl_days" in f for f in config_findings) and any("crl_dayz" in f for f in config_findings)
    assert doc["checked"]["certificates"] == 0  # the rest of the home was still checked


def test_ca_check_reports_config_that_is_not_toml(home: CaHome) -> None:
    (home.path / "config.toml").write_text("crl_days = \n", "utf-8")
    result = home.run("--json", "ca", "check")
    assert result.code == 1
    assert any("config.toml" in f for f in result.json()["findings"])
    assert home.run("--json", "cert", "list").code == 3


def test_card_module_from_a_bad_config_is_refused(home: CaHome) -> None:
    _edit_config(home, pkcs11_module=["/usr/lib/a.so"])
    result = home.run("--json", "card", "status", env={"TWCACTL_PKCS11_MODULE": None})
    assert result.code == 3, result.stdout
    assert "pkcs11_module" in result.json()["error"]["message"]


# ----- ca config: ranges checked before anything is written -----

@pytest.mark.parametrize(("key", "value"), [
    ("crl_days", "99999999"), ("crl_days", "0"), ("crl_days", str(MAX_DAYS + 1)), ("crl_days", "seven"),
    ("crl_days", "True"), ("refund_window_days", "-1"), ("ca_issuers_url", "https:// x"),
    ("pkcs11_module", "relative/lib.so"), ("nonsense", "1"),
])
def test_ca_config_out_of_range_changes_nothing(home: CaHome, key: str, value: str) -> None:
    config = home.path / "config.toml"
    before = config.read_bytes()
    result = home.run("--json", "ca", "config", key, value)
    assert result.code == 2, result.stdout
    assert result.json()["error"]["kind"] == "usage"
    assert config.read_bytes() == before
    assert _config_log(home) == []
    assert home.run("crl").code == 0


def test_ca_config_change_is_logged_and_used(home: CaHome) -> None:
    assert home.run("ca", "config", "crl_days", "3").code == 0
    assert home.run("ca", "config", "crl_days", str(MAX_DAYS)).code == 0
    assert home.run("ca", "config", "crl_days", "3").code == 0
    assert home.run("ca", "config", "renewal_window_days", "0").code == 0
    assert home.run("ca", "config", "crl_url", "http://crl.twca.test/uca.crl").code == 0
    entries = home.run("--json", "log", "--action", "ca.config").json()["entries"]
    assert [e["details"] for e in reversed(entries)] == [
        {"key": "crl_days", "old": 7, "new": 3},
        {"key": "crl_days", "old": 3, "new": MAX_DAYS},
        {"key": "crl_days", "old": MAX_DAYS, "new": 3},
        {"key": "renewal_window_days", "old": 30, "new": 0},
        {"key": "crl_url", "old": "", "new": "http://crl.twca.test/uca.crl"},
    ]
    assert all(e["operator"] == "alice" for e in entries)
    on_disk = tomllib.loads((home.path / "config.toml").read_text("utf-8"))
    assert on_disk == {**DEFAULT_SETTINGS, "crl_days": 3, "renewal_window_days": 0,
                       "crl_url": "http://crl.twca.test/uca.crl"}
    assert home.run("--json", "ca", "config", "crl_days").json() == {"settings": {"crl_days": 3}}
    assert home.run("--json", "ca", "show").json()["settings"] == on_disk
    result = home.run("--json", "crl", "--out", home.path.parent / "uca.crl")
    assert result.code == 0, result.stderr
    crl = x509.load_der_x509_crl((home.path.parent / "uca.crl").read_bytes())
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=3)


def test_ca_config_refuses_to_build_on_a_bad_config(home: CaHome) -> None:
    _edit_config(home, crl_days="seven")
    config = home.path / "config.toml"
    before = config.read_bytes()
    assert home.run("ca", "config", "renewal_window_days", "10").code == 3
    assert config.read_bytes() == before
    assert home.run("ca", "config", "nonsense").code == 2  # an unknown key stays a usage error


def test_ca_config_by_an_auditor_is_refused(home: CaHome) -> None:
    assert home.run("operator", "add", "carol", "--role", "auditor").code == 0
    before = (home.path / "config.toml").read_bytes()
    assert home.run("ca", "config", "crl_days", "3", env={"TWCACTL_OPERATOR": "carol"}).code == 5
    assert (home.path / "config.toml").read_bytes() == before


def test_ca_init_refuses_a_bad_url_before_making_anything(tmp_path: Path, tw: Any) -> None:
    target = tmp_path / "ca"
    result = tw("--home", target, "--json", "ca", "init", "--no-passphrase", "--crl-url", "ftp://crl.example",
                env={"TWCACTL_OPERATOR": "alice"})
    assert result.code == 2, result.stdout
    assert not (target / "twcactl.db").exists()


# ----- Settings, the pure value -----

def test_defaults_and_round_trip() -> None:
    assert Settings.from_mapping({}, source="x.toml") == Settings()
    assert DEFAULT_SETTINGS == Settings().to_mapping()
    assert Settings().crl_days == 7 and Settings().renewal_window_days == 30 and Settings().refund_window_days == 30
    full = {**DEFAULT_SETTINGS, "crl_days": 2, "ocsp_url": "https://ocsp.example/", "pkcs11_module": "/usr/lib/p.so"}
    assert Settings.from_mapping(full, source="x.toml").to_mapping() == full
    with pytest.raises(AttributeError):
        Settings().crl_days = 3  # type: ignore[misc]


@pytest.mark.parametrize(("data", "key"), [
    ({"crl_days": "seven"}, "crl_days"), ({"crl_days": False}, "crl_days"), ({"crl_days": 0}, "crl_days"),
    ({"refund_window_days": MAX_DAYS + 1}, "refund_window_days"), ({"crl_url": "crl.example"}, "crl_url"),
    ({"extra": 1}, "extra"), ({"pkcs11_module": "/bad\npath"}, "pkcs11_module"),
])
def test_from_mapping_refuses_with_exit_3(data: dict[str, Any], key: str) -> None:
    with pytest.raises(SettingsFileError) as caught:
        Settings.from_mapping(data, source="/srv/ca/config.toml")
    assert isinstance(caught.value, InputError) and caught.value.exit_code == 3
    assert caught.value.key == key and caught.value.source == "/srv/ca/config.toml"
    assert caught.value.message.startswith("/srv/ca/config.toml: ") and key in caught.value.message


def test_settings_problems_lists_each_bad_key_once() -> None:
    problems = settings_problems({"crl_days": "seven", "crl_url": "", "x": 1, "renewal_window_days": 3})
    assert [key for key, _reason in problems] == ["crl_days", "x"]
    assert settings_problems(DEFAULT_SETTINGS) == []


def test_with_value_checks_ranges() -> None:
    base = Settings()
    assert base.with_value("crl_days", "1").crl_days == 1
    assert base.with_value("crl_days", str(MAX_DAYS)).crl_days == MAX_DAYS
    assert base.with_value("refund_window_days", "0").refund_window_days == 0
    assert base.with_value("crl_url", "").crl_url == ""
    assert base.with_value("pkcs11_module", "/usr/lib/p.so").pkcs11_module == "/usr/lib/p.so"
    assert base == Settings()  # with_value returns a copy
    for key, text in (("crl_days", "0"), ("crl_days", str(MAX_DAYS + 1)), ("crl_days", "1.5"),
                      ("crl_url", "ftp://x"), ("crl_url", "http://["), ("ocsp_url", "http://é.example"),
                      ("pkcs11_module", "p.so"), ("unknown", "1")):
        with pytest.raises(UsageError):
            base.with_value(key, text)


def test_the_largest_day_count_cannot_overflow_a_date() -> None:
    assert dt.datetime(9000, 1, 1) + dt.timedelta(days=MAX_DAYS) < dt.datetime.max
