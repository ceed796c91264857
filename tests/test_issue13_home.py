"""Issue 13, home hardening: modes whatever the umask, homes another user could subvert, contract exit codes
for environment problems (not-a-database, out-of-range values, a full disk), an atomic ``ca init``, read-only
homes, ``ca restore`` limits and cleanup, ``ca check``'s repair guards, ``--debug``.

Real homes, real SQLite files, real permissions (os.chmod / os.chown / umask), a real read-only bind mount
and a real small tmpfs.  The tests run as root, which bypasses permission checks on files: ownership is
tested by chown to uid 65534 (nobody), and read-only homes by a read-only mount, where root cannot write.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ACCOUNT, CaHome, invoke, make_ca, openssl_csr
from twcactl.errors import InputError, StateError, UsageError
from twcactl.rules.validity import MAX_DAYS, MAX_YEARS, Validity

NOBODY = 65534


@pytest.fixture
def home(tmp_path: Path) -> CaHome:
    """A CA home (no passphrase) with account 70759028-01 holding 10 certificate-years."""
    made = make_ca(tmp_path / "ca", passphrase=None)
    assert made.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "10").code == 0
    return made


def _balance(home: CaHome) -> int:
    result = home.run("--json", "account", "show", ACCOUNT)
    assert result.code == 0, result.stderr
    return int(result.json()["balance"])


def _serials(home: CaHome) -> list[str]:
    result = home.run("--json", "cert", "list")
    assert result.code == 0, result.stderr
    return sorted(c["serial"] for c in result.json()["certificates"])


def _issue(home: CaHome, base: Path, name: str = "www") -> str:
    result = home.run("--json", "cert", "issue", openssl_csr(base, name=name), "--account", ACCOUNT)
    assert result.code == 0, result.stderr
    return str(result.json()["certificates"][0]["serial"])


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


@contextlib.contextmanager
def _umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


# ------------------------------------------------------------------ modes and owners


@pytest.mark.parametrize("group_readable", [False, True])
def test_home_modes_whatever_the_umask(tmp_path: Path, group_readable: bool) -> None:
    extra = ("--group-readable",) if group_readable else ()
    with _umask(0o000):
        made = make_ca(tmp_path / "ca", *extra, passphrase=None)
        assert made.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "3").code == 0
        _issue(made, tmp_path)
    dirs = 0o750 if group_readable else 0o700
    for sub in ("", "ca", "certs", "crl"):
        assert _mode(made.path / sub) == dirs, sub
    assert _mode(made.path / "ca" / "private") == 0o700
    assert _mode(made.path / "twcactl.db") == (0o640 if group_readable else 0o600)
    for key in (made.path / "ca" / "private").iterdir():
        assert _mode(key) == 0o600
    for path in made.path.rglob("*"):
        assert not _mode(path) & 0o022, path  # nothing in the home is writable by group or others
    assert made.run("--json", "ca", "check", "--no-repair").json()["ok"] is True


@pytest.mark.parametrize("target", ["", "twcactl.db", "ca/private", "ca/private/uca.key"])
def test_a_home_another_user_owns_is_refused_and_reported(home: CaHome, tmp_path: Path, target: str) -> None:
    path = home.path / target
    before = _balance(home)
    os.chown(path, NOBODY, -1)
    try:
        for args in (("cert", "list"), ("account", "credit", ACCOUNT, "5"),
                     ("cert", "issue", openssl_csr(tmp_path), "--account", ACCOUNT)):
            result = home.run("--json", *args)
            assert result.code == 5, (args, result.stderr)
            assert result.json()["error"]["kind"] == "state"
        report = home.run("--json", "ca", "check")
        assert report.code == 1
        doc = report.json()
        assert any(str(path) in f for f in doc["findings"]), doc
        assert doc["repairs"] == []  # nothing is repaired in a home another user could change
    finally:
        os.chown(path, 0, -1)
    assert _balance(home) == before and _serials(home) == []


@pytest.mark.parametrize(("target", "mode"), [("", 0o777), ("", 0o720), ("twcactl.db", 0o666),
                                              ("ca/private", 0o702)])
def test_a_home_others_can_write_is_refused(home: CaHome, target: str, mode: int) -> None:
    path = home.path / target
    os.chmod(path, mode)
    result = home.run("--json", "account", "list")
    assert result.code == 5, result.stderr
    report = home.run("--json", "ca", "check", "--no-repair")
    assert report.code == 1 and any(str(path) in f for f in report.json()["findings"])
    os.chmod(path, 0o700 if target != "twcactl.db" else 0o600)
    assert home.run("account", "list").code == 0


def test_configured_pkcs11_module_must_be_root_owned(home: CaHome, tmp_path: Path) -> None:
    from twcactl.backends.p11 import MODULE_CANDIDATES, configured_module_path

    evil_dir = tmp_path / "mods"
    evil_dir.mkdir(mode=0o755)
    evil = evil_dir / "evil.so"
    evil.write_bytes(b"\x7fELF not really")
    os.chmod(evil, 0o755)
    os.chown(evil, NOBODY, -1)
    env: dict[str, str | None] = {"TWCACTL_PKCS11_MODULE": None}
    assert home.run("ca", "config", "pkcs11_module", "evil.so").code == 2  # relative: refused when set
    assert home.run("ca", "config", "pkcs11_module", str(evil)).code == 0  # another user's file
    result = home.run("--json", "card", "status", env=env)
    assert result.code == 5, result.stderr
    assert result.json()["error"]["kind"] == "state"
    config = home.path / "config.toml"  # a relative path written by hand: refused when read
    config.write_text(config.read_text().replace(str(evil), "evil.so"))
    assert home.run("--json", "card", "status", env=env).code in (3, 5)
    os.chown(evil, 0, -1)
    os.chmod(evil, 0o757)  # root's, but anyone may replace its content
    with pytest.raises(StateError):
        configured_module_path(str(evil))
    os.chmod(evil, 0o755)
    os.chmod(evil_dir, 0o777)  # root's file in a directory anyone may write: it can be swapped
    with pytest.raises(StateError):
        configured_module_path(str(evil))
    os.chmod(evil_dir, 0o755)
    if os.stat(tmp_path).st_uid == 0 and not os.stat(tmp_path).st_mode & 0o022:
        assert configured_module_path(str(evil)) == str(evil.resolve())
    assert configured_module_path(MODULE_CANDIDATES[0]) == MODULE_CANDIDATES[0]


# ------------------------------------------------------------------ contract exit codes


@pytest.mark.parametrize("content", [b"", b"\x00" * 4096, os.urandom(8192), "foreign"])
def test_a_file_that_is_not_a_twcactl_database_exits_3(home: CaHome, content: bytes | str) -> None:
    db = home.path / "twcactl.db"
    db.unlink()
    if content == "foreign":
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE contacts (name TEXT)")
        conn.execute("INSERT INTO contacts VALUES ('x')")
        conn.commit()
        conn.close()
    else:
        assert isinstance(content, bytes)
        db.write_bytes(content)
    os.chmod(db, 0o600)
    before = db.read_bytes()
    for args in (("cert", "list"), ("account", "credit", ACCOUNT, "1"), ("log", "verify"), ("ca", "check")):
        result = home.run("--json", *args)
        assert result.code == 3, (args, result.stderr)
        error = result.json()["error"]
        assert error["kind"] == "input" and str(db) in error["message"]
    assert db.read_bytes() == before  # not converted to WAL, nothing written into it
    assert not (home.path / "twcactl.db-wal").exists()


@pytest.mark.parametrize("args", [
    ("cert", "issue", "CSR", "--account", ACCOUNT, "--years", "8000"),
    ("cert", "issue", "CSR", "--account", ACCOUNT, "--years", "99999999999999999999"),
    ("cert", "issue", "CSR", "--account", ACCOUNT, "--days", str(MAX_DAYS + 1)),
    ("account", "credit", ACCOUNT, "12345678901234567890"),
    ("account", "credit", ACCOUNT, "--", "-12345678901234567890"),
    ("account", "credit", ACCOUNT, "1000000001"),
    ("account", "add", "70759028-09", "--org", "X", "--domain", "x.com.tw", "--quota", "99999999999999999999"),
])
def test_out_of_range_values_exit_2_before_any_work(home: CaHome, tmp_path: Path, args: tuple[str, ...]) -> None:
    argv = [str(openssl_csr(tmp_path)) if a == "CSR" else a for a in args]
    log_before = home.run("--json", "log").json()
    result = home.run("--json", *argv)
    assert result.code == 2, result.stderr
    assert result.json()["error"]["kind"] == "usage"
    assert _balance(home) == 10 and _serials(home) == []
    assert home.run("--json", "log").json() == log_before


def test_validity_and_ca_years_bounds(tmp_path: Path) -> None:
    assert Validity.from_options(MAX_YEARS, None).years == MAX_YEARS
    assert Validity.from_options(None, MAX_DAYS).days == MAX_DAYS
    for years, days in ((MAX_YEARS + 1, None), (None, MAX_DAYS + 1), (10**20, None)):
        with pytest.raises(UsageError):
            Validity.from_options(years, days)
    result = invoke("--home", tmp_path / "x", "--json", "ca", "init", "--no-passphrase", "--root-years", "8000")
    assert result.code == 2 and not (tmp_path / "x").exists()


def test_debug_traceback_only_for_internal_errors(home: CaHome, monkeypatch: pytest.MonkeyPatch) -> None:
    result = home.run("--debug", "cert", "show", "abcdef")
    assert result.code == 5 and "Traceback" not in result.stderr
    result = home.run("--debug", "account", "credit", ACCOUNT, "99999999999")
    assert result.code == 2 and "Traceback" not in result.stderr
    (home.path / "twcactl.db").write_bytes(b"")  # an input error with a library cause: no traceback either
    result = home.run("--debug", "cert", "list")
    assert result.code == 3 and "Traceback" not in result.stderr

    import twcactl.authority.audit as audit

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(audit, "verify_log", broken)
    made = make_ca(home.path.parent / "second", passphrase=None)
    result = made.run("--debug", "log", "verify")
    assert result.code == 70 and "Traceback" in result.stderr
    result = made.run("log", "verify")
    assert result.code == 70 and "Traceback" not in result.stderr


def test_chain_verify_self_signed_leaf_is_a_finding_not_a_crash(home: CaHome, tmp_path: Path) -> None:
    key, leaf = tmp_path / "self.key", tmp_path / "self.pem"
    proc = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=www.twca.com.tw",
                           "-keyout", key, "-out", leaf, "-days", "30"], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    result = invoke("--json", "chain", "verify", leaf, "--root", home.path / "ca" / "root.cer")
    assert result.code == 1, result.stderr


# ------------------------------------------------------------------ disk full


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system of ``directory`` to the last byte (or all but ``leave`` bytes); the filler file."""
    filler = directory / "filler"
    if leave:
        st = os.statvfs(directory)
        filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - leave))
        return filler
    with open(filler, "wb", buffering=0) as fh:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * size)
    return filler


@pytest.mark.parametrize("leave", [0, 40_000, 60_000])  # full when opening; full inside the transaction
def test_disk_full_exits_3_with_nothing_changed_and_a_retry_charges_once(home: CaHome, tmp_path: Path,
                                                                         leave: int) -> None:
    csr = openssl_csr(tmp_path)
    with _tmpfs(tmp_path / "small", "2m") as mnt:
        copy = mnt / "ca"
        shutil.copytree(home.path, copy)
        small = CaHome(copy, None)
        filler = _fill(mnt, leave)
        issued = small.run("--json", "cert", "issue", csr, "--account", ACCOUNT)
        credited = small.run("--json", "account", "credit", ACCOUNT, "5")
        if leave == 0:  # a full disk: both refused
            assert (issued.code, credited.code) in {(3, 3), (3, 75), (75, 3), (75, 75)}, issued.stderr
        for result in (issued, credited):
            assert result.code in (0, 3, 75), result.stderr
            if result.code:
                assert result.json()["error"]["kind"] in ("input", "busy")
        filler.unlink()
        # whatever happened, the books hold exactly the acknowledged changes
        expected = 10 - (issued.code == 0) + 5 * (credited.code == 0)
        assert _balance(small) == expected and len(_serials(small)) == (issued.code == 0)
        assert small.run("--json", "ca", "check", "--no-repair").json()["ok"] is True
        if issued.code:  # the retry charges once
            serial = _issue(small, tmp_path, "again")
            assert _balance(small) == expected - 1 and _serials(small) == [serial]


def test_ca_init_on_a_full_disk_leaves_nothing(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", "1m") as mnt:
        filler = _fill(mnt, 300_000)  # leaves less than a home needs
        result = invoke("--home", mnt / "ca", "--json", "ca", "init", "--no-passphrase", "--root-key-type", "rsa2048")
        assert result.code == 3, result.stderr
        assert result.json()["error"]["kind"] == "input"
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]  # no home, no temporary directory
        filler.unlink()
        make_ca(mnt / "ca", passphrase=None)  # and the same --home can be initialised afterwards


# ------------------------------------------------------------------ ca init interrupted


def test_a_killed_ca_init_leaves_a_complete_home_or_none(tmp_path: Path) -> None:
    outcomes = set()
    for attempt, delay in enumerate((0.15, 0.3, 0.45, 0.6, 0.8, 1.0, 1.4)):
        target = tmp_path / f"h{attempt}"
        proc = subprocess.Popen([sys.executable, "-m", "twcactl", "--home", str(target), "ca", "init",
                                 "--no-passphrase", "--root-key-type", "rsa2048"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ,
                                                                                          "TWCACTL_OPERATOR": "alice"})
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.exists():
            outcomes.add("complete")
            assert invoke("--home", target, "--json", "ca", "show").code == 0
            assert invoke("--home", target, "--json", "ca", "check", "--no-repair",
                          env={"TWCACTL_OPERATOR": "alice"}).json()["ok"] is True
        else:
            outcomes.add("none")
            make_ca(target, passphrase=None)  # re-initialisable
    assert "none" in outcomes  # a kill at 0.15 s always lands before the rename; every attempt ended in one state


# ------------------------------------------------------------------ read-only homes


@contextlib.contextmanager
def _read_only_view(source: Path, view: Path) -> Iterator[Path]:
    view.mkdir()
    proc = subprocess.run(["mount", "--bind", str(source), str(view)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"bind mounts are not available: {proc.stderr.decode(errors='replace').strip()}")
    try:
        proc = subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True)
        assert proc.returncode == 0, proc.stderr
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], capture_output=True)


_READ_COMMANDS = [("cert", "list"), ("account", "list"), ("account", "show", ACCOUNT), ("log",), ("log", "verify"),
                  ("ca", "show"), ("ca", "check", "--no-repair"), ("cert", "show", "SERIAL")]


def test_a_read_only_home_answers_queries_and_refuses_writes(home: CaHome, tmp_path: Path) -> None:
    serial = _issue(home, tmp_path)
    writable = {args: home.run("--json", *[serial if a == "SERIAL" else a for a in args]).json()
                for args in _READ_COMMANDS if args[:2] != ("ca", "check")}
    with _read_only_view(home.path, tmp_path / "ro") as view:
        ro = CaHome(view, None)
        for args in _READ_COMMANDS:
            result = ro.run("--json", *[serial if a == "SERIAL" else a for a in args])
            assert result.code == 0, (args, result.stderr)
            if args in writable:  # the same answer as the writable home (paths aside)
                assert json.loads(result.stdout.replace(str(view), str(home.path))) == writable[args], args
        writes: list[tuple[str | Path, ...]] = [
            ("account", "credit", ACCOUNT, "5"), ("cert", "revoke", serial, "--reason", "superseded"),
            ("cert", "issue", openssl_csr(tmp_path, name="ro"), "--account", ACCOUNT), ("ca", "check")]
        for write in writes:
            result = ro.run("--json", *write)
            assert result.code in (3, 5), (write, result.stderr)
            assert result.json()["error"]["kind"] in ("state", "input")
    assert _balance(home) == 9 and _serials(home) == [serial]


def test_a_read_only_snapshot_with_a_live_wal_shows_its_committed_changes(home: CaHome, tmp_path: Path) -> None:
    db = home.path / "twcactl.db"
    # a second process keeps the database open, so the committed credit stays in the -wal file
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys, time\n"
                               f"c = sqlite3.connect({str(db)!r}); c.execute('PRAGMA wal_autocheckpoint=0')\n"
                               "c.execute('SELECT 1 FROM meta').fetchall(); print('ready', flush=True)\n"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert home.run("account", "credit", ACCOUNT, "7").code == 0
        snapshot = tmp_path / "snap"
        shutil.copytree(home.path, snapshot)
    finally:
        holder.kill()
        holder.wait()
    assert (snapshot / "twcactl.db-wal").stat().st_size > 0
    with _read_only_view(snapshot, tmp_path / "ro") as view:
        result = CaHome(view, None).run("--json", "account", "show", ACCOUNT)
        assert result.code == 0, result.stderr
        assert result.json()["balance"] == 17


def test_a_reader_may_read_another_owners_home_read_only(home: CaHome, tmp_path: Path) -> None:
    serial = _issue(home, tmp_path)
    for path in (home.path, home.path / "twcactl.db", home.path / "ca", home.path / "ca" / "private"):
        os.chown(path, NOBODY, -1)
    try:
        assert home.run("cert", "list").code == 5  # writable: another owner could subvert it
        with _read_only_view(home.path, tmp_path / "ro") as view:  # an auditor's read-only view
            ro = CaHome(view, None)
            result = ro.run("--json", "cert", "list")
            assert result.code == 0, result.stderr
            assert [c["serial"] for c in result.json()["certificates"]] == [serial]
            assert ro.run("--json", "ca", "check", "--no-repair").json()["ok"] is True
            os.chmod(home.path / "twcactl.db", 0o666)  # writable by others: refused even for a reader
            assert ro.run("--json", "cert", "list").code == 5
            os.chmod(home.path / "twcactl.db", 0o600)
    finally:
        for path in (home.path, home.path / "twcactl.db", home.path / "ca", home.path / "ca" / "private"):
            os.chown(path, 0, -1)


# ------------------------------------------------------------------ ca restore


def _tar_gz(members: list[tuple[str, bytes | int]]) -> bytes:
    """A tar.gz of ``(name, content)``; an int content writes only a header claiming that size."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, int):
                info.size = content
                raw.write(info.tobuf())
                raw.write(b"\0" * 4096)
                break
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())


def test_restore_limits_and_cleanup(home: CaHome, tmp_path: Path) -> None:
    from twcactl.authority.maintenance import restore_home

    db = (home.path / "twcactl.db").read_bytes()
    cases = {
        "huge-header": _tar_gz([("twcactl.db", db), ("certs/big.pem", 300 * 1024 * 1024)]),
        "bad-member-last": _tar_gz([("twcactl.db", db), ("config.toml", b""), ("../evil", b"x")]),
        "no-db": _tar_gz([("config.toml", b"")]),
        "truncated": _tar_gz([("twcactl.db", db), ("ca/root.cer", b"x" * 5000)])[:-200],
    }
    for name, data in cases.items():
        archive = tmp_path / f"{name}.tar.gz"
        archive.write_bytes(data)
        target = tmp_path / "restored" / name
        result = invoke("--home", target, "--json", "ca", "restore", archive)
        assert result.code == 3, (name, result.stderr)
        assert not target.exists(), name
        assert not list((tmp_path / "restored").glob(f".{name}.*")), name  # no temporary directory left
    archive = tmp_path / "small-limits.tar.gz"
    archive.write_bytes(_tar_gz([("twcactl.db", db), ("certs/a.pem", b"a" * 3000)]))
    for limits in ({"max_member_bytes": 2000}, {"max_total_bytes": len(db) + 1000}):
        with pytest.raises(InputError):
            restore_home(archive, tmp_path / "lim", **limits)
        assert not (tmp_path / "lim").exists()
    assert restore_home(archive, tmp_path / "lim") == 2


def test_backup_restore_round_trip_still_works(home: CaHome, tmp_path: Path) -> None:
    serial = _issue(home, tmp_path)
    assert home.run("ca", "backup", tmp_path / "b.tar.gz").code == 0
    result = invoke("--home", tmp_path / "new", "--json", "ca", "restore", tmp_path / "b.tar.gz")
    assert result.code == 0, result.stderr
    restored = CaHome(tmp_path / "new", None)
    assert _serials(restored) == [serial] and _balance(restored) == 9
    assert _mode(restored.path) == 0o700 and _mode(restored.path / "twcactl.db") == 0o600


def test_restore_into_a_full_disk_leaves_nothing(home: CaHome, tmp_path: Path) -> None:
    _issue(home, tmp_path)
    assert home.run("ca", "backup", tmp_path / "b.tar.gz").code == 0
    with _tmpfs(tmp_path / "small", "400k") as mnt:
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * 250_000)  # leaves less than the restored home needs
        result = invoke("--home", mnt / "new", "--json", "ca", "restore", tmp_path / "b.tar.gz")
        assert result.code == 3, result.stderr
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]
        filler.unlink()
        assert invoke("--home", mnt / "new", "--json", "ca", "restore", tmp_path / "b.tar.gz").code == 0


# ------------------------------------------------------------------ ca check repairs


def test_check_repairs_only_files_it_owns(home: CaHome, tmp_path: Path) -> None:
    serial = _issue(home, tmp_path)
    certs = home.path / "certs"
    (certs / "notes.pem").write_bytes(b"mine")
    (certs / "ABC.pem").write_bytes(b"mine too")
    (certs / "abc123.pem").write_bytes(b"an orphan named by a serial")
    result = home.run("--json", "ca", "check")
    doc = result.json()
    assert (certs / "notes.pem").read_bytes() == b"mine" and (certs / "ABC.pem").read_bytes() == b"mine too"
    assert not (certs / "abc123.pem").exists()
    assert result.code == 1 and sum("notes.pem" in f or "ABC.pem" in f for f in doc["findings"]) == 2
    assert (certs / f"{serial}.pem").exists()


def test_check_never_repairs_through_a_symlinked_certs_dir(home: CaHome, tmp_path: Path) -> None:
    serial = _issue(home, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(home.path / "certs"), elsewhere)
    (elsewhere / f"{serial}.pem").unlink()
    (elsewhere / "abc123.pem").write_bytes(b"someone else's")
    os.symlink(elsewhere, home.path / "certs")
    result = home.run("--json", "ca", "check")
    assert result.code == 1
    assert sorted(p.name for p in elsewhere.iterdir()) == ["abc123.pem"]  # nothing written or removed there
    assert result.json()["repairs"] == [] or all("certs" not in r for r in result.json()["repairs"])


def test_repairs_need_a_manager(home: CaHome, tmp_path: Path) -> None:
    serial = _issue(home, tmp_path)
    assert home.run("operator", "add", "bob", "--role", "auditor").code == 0
    (home.path / "certs" / f"{serial}.pem").unlink()
    for who in ("bob", "mallory"):
        result = home.run("--json", "ca", "check", env={"TWCACTL_OPERATOR": who})
        assert result.code == 5, (who, result.stderr)
        assert not (home.path / "certs" / f"{serial}.pem").exists()
        result = home.run("--json", "ca", "check", "--no-repair", env={"TWCACTL_OPERATOR": who})
        assert result.code == 1 and result.json()["repairs"] == []
    result = home.run("--json", "ca", "check")
    assert result.code == 0 and (home.path / "certs" / f"{serial}.pem").exists()
