"""Keeping a CA home sound: ``ca check`` (verify and repair), ``ca backup`` and ``ca restore``.

The database is the single source of truth; the PEM files in ``certs/`` and
the CRL in ``crl/`` are derived and can always be rebuilt from it
(architecture.md, "The store").  ``check_home`` repairs exactly those:
missing or stale derived files and leftover temporary files.  Everything
else it finds (hash mismatches, ledgers that do not add up, a CRL that does
not match the records, a broken activity log, loose permissions) is a
finding for a person to look at.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.authority.audit import verify_log
from twcactl.errors import InputError, StateError
from twcactl.fsutil import atomic_writer
from twcactl.rules.serials import format_serial
from twcactl.store import Store
from twcactl.store.home import DB_NAME, HomeLayout

_DERIVED_DIRS = ("certs", "crl")


@dataclass
class CheckReport:
    """What ``check_home`` found and what it repaired (one sentence each)."""

    findings: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing is left for a person to look at."""
        return not self.findings


def check_home(store: Store, *, repair: bool = True, progress: Callable[[int], None] | None = None) -> CheckReport:
    """Verify the whole CA home and repair its derived files.

    Checks: SQLite integrity; config.toml's keys, types and ranges
    (``twcactl.rules.settings``); every certificate record's stored hash and
    serial against its DER, and its PEM file; files in ``certs/`` without a
    record; each account's ledger against its balance; each CA's newest CRL
    (signature, entries equal to the revoked and held records, the file on
    disk); the activity log's hash chain and head; key and directory modes.

    Args:
        store: the open home.
        repair: rewrite missing/stale PEM and CRL files, remove leftovers and
            temporary files, tighten key modes.
        progress: called with the number of certificate records checked so far.
    """
    report = CheckReport()
    complaint = store.engine.integrity_check()
    if complaint is not None:
        report.findings.append(f"the database fails SQLite's integrity check: {complaint}")
    # every other command refuses a bad config.toml; here it is one finding among the rest
    report.findings.extend(store.settings_problems())
    with store.files_lock():
        _check_certificates(store, report, repair, progress)
        _check_crls(store, report, repair)
        _remove_temporary_files(store, report, repair)
    _check_ledgers(store, report)
    count, problems = verify_log(store)
    report.checked["log entries"] = count
    report.findings.extend(f"activity log: {p.message}" for p in problems)
    _check_permissions(store, report, repair)
    return report


def _check_certificates(store: Store, report: CheckReport, repair: bool,
                        progress: Callable[[int], None] | None) -> None:
    known: set[str] = set()
    count = 0
    for stored in store.certificates.stored():
        serial, sha, der = stored.serial, stored.sha256, stored.der
        count += 1
        if progress is not None and count % 1000 == 0:
            progress(count)
        known.add(f"{serial}.pem")
        if hashlib.sha256(der).hexdigest() != sha:
            report.findings.append(f"certificate {serial}: its stored hash does not match its DER")
            continue
        try:
            cert = x509.load_der_x509_certificate(der)
            real_serial = format_serial(cert.serial_number)
        except ValueError:
            report.findings.append(f"certificate {serial}: the stored DER is not a certificate")
            continue
        if real_serial != serial:
            report.findings.append(f"certificate {serial}: the stored DER has serial {real_serial}")
            continue
        path = store.cert_path(serial)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        try:
            on_disk = path.read_bytes()
        except FileNotFoundError:
            on_disk = None
        if on_disk != pem:
            what = "missing" if on_disk is None else "different from the record"
            if repair:
                _rewrite(path, pem)
                report.repairs.append(f"rebuilt {path.name} ({what}) from the database")
            else:
                report.findings.append(f"{path.name} is {what}")
    report.checked["certificates"] = count
    for path in sorted(store.certs_dir.glob("*.pem")):
        if path.name not in known:
            if repair:
                path.unlink()
                report.repairs.append(f"removed {path.name}: no such certificate in the database")
            else:
                report.findings.append(f"{path.name} has no record in the database")


def _check_crls(store: Store, report: CheckReport, repair: bool) -> None:
    checked = 0
    for ca in store.cas.all():
        latest = store.crls.latest(ca.name)
        revoked = store.certificates.count_revoked(ca.name)
        if latest is None or not latest.get("der"):
            if revoked:
                report.findings.append(f"CA {ca.name} has {revoked} revoked or held certificates but no CRL")
            continue
        checked += 1
        crl = x509.load_der_x509_crl(latest["der"])
        ca_cert = ca.certificate()
        if not crl.is_signature_valid(ca_cert.public_key()):  # type: ignore[arg-type]
            report.findings.append(f"CRL #{latest['number']} of {ca.name} does not verify with the CA's key")
        expected = {int(s, 16): reason for s, _at, reason, _inv in store.certificates.revoked_entries(ca.name)}
        listed: dict[int, str] = {}
        for entry in crl:
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = "unspecified"
            listed[entry.serial_number] = reason
        if listed != expected:
            missing = sorted(set(expected) - set(listed))
            extra = sorted(set(listed) - set(expected))
            changed = sorted(s for s in set(listed) & set(expected) if listed[s] != expected[s])
            parts = []
            if missing:
                parts.append(f"{len(missing)} revoked record(s) missing, e.g. {format_serial(missing[0])}")
            if extra:
                parts.append(f"{len(extra)} entr(ies) not revoked in the records, e.g. {format_serial(extra[0])}")
            if changed:
                parts.append(f"{len(changed)} reason(s) differ, e.g. {format_serial(changed[0])}")
            report.findings.append(f"CRL #{latest['number']} of {ca.name} does not match the records: "
                                   + "; ".join(parts))
        path = store.crl_path(ca.name)
        try:
            on_disk = path.read_bytes()
        except FileNotFoundError:
            on_disk = None
        if on_disk != latest["der"]:
            what = "missing" if on_disk is None else "not the newest CRL"
            if repair:
                _rewrite(path, latest["der"])
                report.repairs.append(f"rewrote crl/{path.name} ({what}) from CRL #{latest['number']}")
            else:
                report.findings.append(f"crl/{path.name} is {what}")
    report.checked["CRLs"] = checked


def _remove_temporary_files(store: Store, report: CheckReport, repair: bool) -> None:
    # fsutil writes ".<name>.<random>.tmp" next to the target; a killed writer leaves one behind
    for directory in (store.home / d for d in (*_DERIVED_DIRS, "ca", "ca/private")):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob(".*.tmp")):
            if repair:
                path.unlink()
                report.repairs.append(f"removed the leftover temporary file {directory.name}/{path.name}")
            else:
                report.findings.append(f"leftover temporary file {directory.name}/{path.name}")


def _check_ledgers(store: Store, report: CheckReport) -> None:
    totals = store.accounts.ledger_totals()
    for t in totals:
        if t.total != t.balance:
            report.findings.append(f"account {t.account_id}: the ledger adds up to {t.total}, "
                                   f"the balance is {t.balance}")
        elif t.last is not None and t.last != t.balance:
            report.findings.append(f"account {t.account_id}: the newest ledger entry says {t.last}, "
                                   f"the balance is {t.balance}")
    report.checked["accounts"] = len(totals)


def _check_permissions(store: Store, report: CheckReport, repair: bool) -> None:
    private = store.private_dir
    if private.is_dir() and stat.S_IMODE(private.stat().st_mode) != 0o700:
        report.findings.append(f"{private} is mode {stat.S_IMODE(private.stat().st_mode):o}, not 700")
        if repair:
            os.chmod(private, 0o700)
            report.repairs.append(f"set {private} to mode 700")
    for ca in store.cas.all():
        try:
            mode = stat.S_IMODE(ca.key_file.stat().st_mode)
        except FileNotFoundError:
            report.findings.append(f"the key of CA {ca.name} ({ca.key_file}) is missing")
            continue
        if mode & 0o077:
            report.findings.append(f"the key of CA {ca.name} is mode {mode:o}; others could read it")
            if repair:
                os.chmod(ca.key_file, 0o600)
                report.repairs.append(f"set {ca.key_file.name} to mode 600")


def _rewrite(path: Path, data: bytes) -> None:
    with atomic_writer(path, mode=0o644, force=True) as fh:
        fh.write(data)


# ----- backup and restore -----

def backup_home(store: Store, out: Path, *, force: bool = False) -> dict[str, int]:
    """Write a consistent archive (tar.gz, mode 0600) of the CA home to ``out``.

    The database is copied with SQLite's online backup API, which is safe
    while other twcactl processes write (a plain copy of a live WAL database
    is not); the CA certificates and (encrypted) keys, ``config.toml``,
    ``certs/`` and ``crl/`` are added as files.  Restore with
    :func:`restore_home` or ``tar -xzf FILE -C NEW_HOME``.

    Returns:
        ``{"files": N, "certificates": M}``.

    Raises:
        StateError: ``out`` exists and ``force`` is False (exit 5).
    """
    files = 0
    with tempfile.TemporaryDirectory(prefix="twcactl-backup-") as tmp:
        copy_path = Path(tmp) / DB_NAME
        certificates = store.engine.backup_to(copy_path)
        with atomic_writer(out, mode=0o600, force=force) as fh:
            with tarfile.open(fileobj=fh, mode="w:gz") as archive:
                archive.add(copy_path, arcname=DB_NAME)
                files += 1
                for rel in _home_files(store.home):
                    archive.add(store.home / rel, arcname=str(rel), recursive=False)
                    files += 1
    return {"files": files, "certificates": certificates}


def _home_files(home: Path) -> list[Path]:
    """The files of a home that belong in a backup, relative to it (not the live database or lock files)."""
    out: list[Path] = []
    if (home / "config.toml").is_file():
        out.append(Path("config.toml"))
    for sub in ("ca", "certs", "crl"):
        base = home / sub
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.name.endswith(".tmp") and not path.is_symlink():
                    out.append(path.relative_to(home))
    return out


def restore_home(archive_path: Path, home: Path) -> int:
    """Unpack a ``ca backup`` archive into a new, empty ``home``.

    Only regular files under the names a backup holds are extracted; links,
    devices, absolute paths and ``..`` are refused, so a crafted archive
    cannot write outside ``home``.

    Returns:
        The number of files restored.

    Raises:
        StateError: ``home`` exists and is not empty (exit 5).
        InputError: not a twcactl backup (exit 3).
    """
    if home.exists() and any(home.iterdir()):
        raise StateError(f"{home} is not empty; restore into a new directory.")
    try:
        archive = tarfile.open(archive_path, mode="r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"{archive_path} is not a twcactl backup (tar.gz).") from exc
    with archive:
        members = archive.getmembers()
        names = {m.name for m in members}
        if DB_NAME not in names:
            raise InputError(f"{archive_path} holds no {DB_NAME}; it is not a twcactl backup.")
        for m in members:
            parts = Path(m.name).parts
            if (not m.isfile() or m.name.startswith("/") or ".." in parts
                    or not (m.name in (DB_NAME, "config.toml") or parts[0] in ("ca", "certs", "crl"))):
                raise InputError(f"{archive_path} holds an unexpected member {m.name!r}; refusing to restore.")
        HomeLayout(home).make_dirs()
        for m in members:
            source = archive.extractfile(m)
            assert source is not None
            target = home / m.name
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = 0o600 if m.name.startswith("ca/private/") or m.name == DB_NAME else 0o644
            with atomic_writer(target, mode=mode, force=False) as fh:
                fh.write(source.read())
    return len(members)
