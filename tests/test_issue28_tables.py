"""Issue 28, "Tables that fit": ``cert list``, ``log`` and ``account show`` on a real 80-column pseudo-terminal.

The tables are read back by their header's column positions (as a person reads them): the CN, status, expiry
and account of every row are whole (a long CN folded onto the next line is joined back), no line is longer than
the terminal; the short serials the table prints are accepted back by show, revoke and export; ``--wide`` prints
whole serials; ``log`` is one line per entry and ``log --csv`` parses with the csv module.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.conftest import ACCOUNT, CaHome, make_ca, require, sh

TWCACTL = Path(sys.executable).parent / "twcactl"
SUBJ = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN={cn}"
LONG_LABEL = "a-rather-long-host-label-that-fills-the-column-xxx"  # 50 characters: a 62-character CN


def _csr(directory: Path, cn: str) -> Path:
    csr = directory / f"{cn[:20]}.csr"
    proc = sh(require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-subj", SUBJ.format(cn=cn), "-keyout", directory / f"{cn[:20]}.key", "-out", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


def pty(home: CaHome, *args: str | Path, columns: int = 80) -> tuple[int, str]:
    """Run twcactl on a pseudo-terminal ``columns`` wide; its exit status and output (CRLF made LF, no SGR codes)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TWCACTL_HOME", "TWCACTL_CA_PASSPHRASE_SOURCE")}
    env.update({"TWCACTL_OPERATOR": "alice", "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"})
    child = pexpect.spawn(str(TWCACTL), ["--home", str(home.path), *[str(a) for a in args]], env=env, timeout=90,
                          encoding="utf-8", dimensions=(50, columns))
    child.expect(pexpect.EOF)
    out = re.sub(r"\x1b\[[0-9;]*m", "", (child.before or "").replace("\r\n", "\n"))  # rich's bold headers
    child.close()
    assert child.exitstatus is not None
    return child.exitstatus, out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A home (no passphrase) with five certificates: one with a 62-character CN, one with a long note, and
    one renewed."""
    assert TWCACTL.exists(), f"{TWCACTL}: the console script (pip install -e .)"
    base = tmp_path_factory.mktemp("issue28")
    home = make_ca(base / "ca", passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "60").code == 0
    names = ["www.twca.com.tw", f"{LONG_LABEL}.twca.com.tw", "mail.twca.com.tw", "api.twca.com.tw"]
    for i, cn in enumerate(names):
        extra = ["--note", "a note long enough to make the table far wider than eighty columns " * 2] if i == 2 else []
        result = home.run("cert", "issue", _csr(base, cn), "--account", ACCOUNT, *extra)
        assert result.code == 0, result.stderr
    old = home.run("--json", "cert", "list", "--cn", "api.twca.com.tw").json()["certificates"][0]
    renewed = home.run("--json", "cert", "renew", old["serial"], "--csr", _csr(base, "api.twca.com.tw"), "--early")
    assert renewed.code == 0, renewed.stderr
    return {"home": home, "base": base, "renewed": old["serial"], "new": renewed.json()["certificate"]["serial"]}


def read_table(text: str, header_start: str) -> tuple[list[str], list[dict[str, str]]]:
    """Rows of the table whose header line starts with ``header_start``: ``{header: cell}``, a row's
    continuation lines (blank under the first column) joined to its cells."""
    lines = text.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = lines[at]
    names = re.findall(r"\S+(?: \S+)*", header)  # headers may hold one space ("NOT AFTER")
    starts = [header.index(n) for n in names]
    rows: list[dict[str, str]] = []
    for line in lines[at + 1:]:
        if not line.strip() or line.startswith("(") or re.match(r"^\d+ \w+\(s\)\.$|^\d+ entr", line):
            break
        cells = [line[s:(starts[k + 1] if k + 1 < len(starts) else None)].strip() for k, s in enumerate(starts)]
        if cells[0]:
            rows.append(dict(zip(names, cells)))
        else:  # a folded cell goes on under its column
            for name, cell in zip(names, cells):
                rows[-1][name] += cell
    return names, rows


def short_or_none(serial: str | None, shown: str) -> str:
    """What the SERIAL cell of an entry must be: empty without a serial, else a prefix of it (8+ digits)."""
    if serial is None:
        return ""
    assert len(shown) >= 8 and serial.startswith(shown), (serial, shown)
    return shown


def test_cert_list_fits_80_columns_with_the_read_columns_whole(world: dict[str, Any]) -> None:
    home: CaHome = world["home"]
    records = {r["serial"]: r for r in home.run("--json", "cert", "list").json()["certificates"]}
    code, out = pty(home, "cert", "list")
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.split("\n")), out
    assert "…" not in out and "..." not in out
    names, rows = read_table(out, "SERIAL")
    assert names[:5] == ["SERIAL", "CN", "STATUS", "NOT AFTER", "ACCOUNT"]
    assert "NOTE" not in names  # the long note does not fit: dropped, not squeezed
    assert len(rows) == len(records)
    for row in rows:
        matches = [s for s in records if s.startswith(row["SERIAL"])]
        assert len(matches) == 1 and 8 <= len(row["SERIAL"]) < len(matches[0]), row
        record = records[matches[0]]
        assert row["CN"] == record["cn"]  # whole, the long one folded and joined back
        assert row["STATUS"] == record["status"]
        assert row["NOT AFTER"] == record["not_after"][:10]
        assert row["ACCOUNT"] == record["account"]
    assert any(r["CN"] == f"{LONG_LABEL}.twca.com.tw" for r in rows)


def test_cert_list_wide_shows_whole_serials_one_line_each(world: dict[str, Any]) -> None:
    home: CaHome = world["home"]
    records = {r["serial"]: r for r in home.run("--json", "cert", "list").json()["certificates"]}
    code, out = pty(home, "cert", "list", "--wide")
    assert code == 0, out
    names, rows = read_table(out, "SERIAL")
    assert "NOTE" in names and "RENEWED BY" in names
    assert {r["SERIAL"] for r in rows} == set(records)
    assert {r["SERIAL"]: r["RENEWED BY"] for r in rows}[world["renewed"]] == world["new"]
    body = out.split("\n")[1:1 + len(records)]
    assert all(line.split()[0] in records for line in body)  # one line per row


def test_short_serials_are_accepted_by_show_revoke_and_export(world: dict[str, Any], tmp_path: Path) -> None:
    home: CaHome = world["home"]
    _, out = pty(home, "cert", "list", "--cn", "mail.twca.com.tw")
    (row,) = read_table(out, "SERIAL")[1]
    short = row["SERIAL"]
    whole = home.run("--json", "cert", "list", "--cn", "mail.twca.com.tw").json()["certificates"][0]["serial"]
    assert whole.startswith(short) and short != whole
    shown = home.run("--json", "cert", "show", short)
    assert shown.code == 0 and shown.json()["certificate"]["serial"] == whole
    exported = home.run("--json", "cert", "export", short, "--out-dir", tmp_path / "out")
    assert exported.code == 0 and exported.json()["serial"] == whole
    assert (tmp_path / "out" / "server.cer").exists()
    revoked = home.run("--json", "cert", "revoke", short, "--reason", "superseded")
    assert revoked.code == 0, revoked.stderr
    assert revoked.json()["certificate"]["serial"] == whole and revoked.json()["certificate"]["status"] == "revoked"


def test_short_serial_width_grows_past_a_shared_prefix() -> None:
    from twcactl.authority.lookup import short_serials

    serials = ["abcdef0123456789", "abcdef0123999999", "1234567890abcdef"]

    class Certs:
        def neighbours(self, serial: str) -> tuple[str | None, str | None]:
            ordered = sorted(serials)
            i = ordered.index(serial)
            return (ordered[i - 1] if i else None), (ordered[i + 1] if i + 1 < len(ordered) else None)

    class Store:
        certificates = Certs()

    short = short_serials(Store(), ["1234567890abcdef"])  # type: ignore[arg-type]
    assert short == {"1234567890abcdef": "12345678"}
    short = short_serials(Store(), serials)  # type: ignore[arg-type]
    assert set(short.values()) == {"abcdef01234", "abcdef01239", "1234567890a"}  # one width, each unique
    # a long table takes every serial in one query and bisects: the same answer
    import secrets

    serials[:] = [secrets.token_hex(20) for _ in range(300)] + ["abcdef0123456789", "abcdef0123999999"]
    Certs.sorted_serials = lambda self: sorted(serials)  # type: ignore[attr-defined]
    few = {s: short_serials(Store(), [s, "abcdef0123456789"])[s] for s in serials[:5]}  # type: ignore[arg-type]
    many = short_serials(Store(), serials)  # type: ignore[arg-type]
    assert len(set(many.values())) == len(serials) and all(len(v) == 11 for v in many.values())
    assert all(many[s].startswith(few[s]) for s in few)


def test_log_is_one_line_per_entry_and_csv_parses(world: dict[str, Any]) -> None:
    home: CaHome = world["home"]
    entries = home.run("--json", "log").json()["entries"]
    code, out = pty(home, "log")
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.split("\n")), out
    names, rows = read_table(out, "SEQ")
    assert names[:3] == ["SEQ", "TIME", "ACTION"] and names[-1] == "SUMMARY"
    assert [int(r["SEQ"]) for r in rows] == [e["seq"] for e in entries]
    body = out.split("\n")[1:1 + len(entries)]
    assert [int(line.split()[0]) for line in body] == [e["seq"] for e in entries]  # one line each
    for r, e in zip(rows, entries):
        assert r["ACTION"] == e["action"] and r["OPERATOR"] == e["operator"]
        if "SERIAL" in r:  # shown when the terminal has room (not at 80 columns: the summary comes first)
            assert (e["serial"] or "").startswith(r["SERIAL"]) and (r["SERIAL"] == "") == (e["serial"] is None)
    renewal = next(r for r, e in zip(rows, entries) if e["action"] == "cert.renew")
    assert renewal["SUMMARY"].startswith("api.twca.com.tw renews ")
    _, wide_rows = read_table(pty(home, "log", columns=160)[1], "SEQ")
    assert [r["SERIAL"] for r in wide_rows] == [short_or_none(e["serial"], r["SERIAL"]) for r, e in
                                                 zip(wide_rows, entries)]

    csv_out = home.run("log", "--csv", "-")
    assert csv_out.code == 0, csv_out.stderr
    parsed = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert [int(r["seq"]) for r in parsed] == [e["seq"] for e in entries]
    for r, e in zip(parsed, entries):
        assert (r["action"], r["operator"], r["serial"] or None) == (e["action"], e["operator"], e["serial"])
        assert json.loads(r["details"]) == e["details"]


def test_log_show_and_verbose_give_the_details(world: dict[str, Any]) -> None:
    home: CaHome = world["home"]
    entry = next(e for e in home.run("--json", "log").json()["entries"] if e["action"] == "cert.renew")
    shown = home.run("--json", "log", "show", str(entry["seq"]))
    assert shown.code == 0 and shown.json() == entry
    assert home.run("--json", "log", "show", "99999").code == 5
    verbose = home.run("log", "--verbose", "--action", "cert.renew")
    assert verbose.code == 0
    for key in entry["details"]:
        assert f"    {key}: " in verbose.stdout


def test_account_show_limit_and_fitted_ledger(world: dict[str, Any]) -> None:
    home: CaHome = world["home"]
    full = home.run("--json", "account", "show", ACCOUNT).json()
    limited = home.run("--json", "account", "show", ACCOUNT, "--limit", "2").json()
    assert limited["ledger"] == full["ledger"][:2] and limited["ledger_total"] == len(full["ledger"]) > 2
    code, out = pty(home, "account", "show", ACCOUNT, "--limit", "3")
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.split("\n")), out
    _, rows = read_table(out, "TIME")
    assert [int(r["BALANCE"]) for r in rows] == [e["balance"] for e in full["ledger"][:3]]


def test_certificate_csv_has_renewed_by(world: dict[str, Any]) -> None:
    home: CaHome = world["home"]
    result = home.run("cert", "list", "--csv", "-")
    assert result.code == 0
    rows = {r["serial"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert rows[world["renewed"]]["renewed_by"] == world["new"]
    assert rows[world["new"]]["renewed_by"] == ""


def test_log_csv_to_stdout_under_json_keeps_one_document(world: dict[str, Any]) -> None:
    home: CaHome = world["home"]
    result = home.run("--json", "log", "--csv", "-")
    assert result.code == 0
    assert len(result.json()["entries"]) == len(list(csv.DictReader(io.StringIO(result.stderr))))
