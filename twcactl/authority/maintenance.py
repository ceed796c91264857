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

import contextlib
import datetime as dt
import gzip
import hashlib
import os
import re
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from twcactl.authority.audit import check_records, verify_log
from twcactl.authority.home import key_matches_certificate
from twcactl.authority.token_keys import token_public_key
from twcactl.errors import BusyError, InputError, NotFoundError, StateError, TwcaError
from twcactl.fsutil import atomic_writer
from twcactl.pkix.keys import load_private_key
from twcactl.rules.publication import CA_CRL_WARN_DAYS
from twcactl.rules.serials import format_serial
from twcactl.rules.times import parse_rfc3339, utcnow
from twcactl.store import CaRecord, Store
from twcactl.store.home import DB_NAME, HomeLayout, building_home, is_disk_full, trusted_owner

_DERIVED_DIRS = ("certs", "crl")
#: The names ``ca check`` writes in ``certs/`` (a serial in lowercase hex); it never deletes any other file.
_OWNED_PEM = re.compile(r"^[0-9a-f]+\.pem$")

#: ``ca restore`` limits (docs/guarantees.md): the largest member, the whole home, the number of members.
MAX_RESTORE_MEMBER_BYTES = 256 * 1024 * 1024
MAX_RESTORE_TOTAL_BYTES = 1024 * 1024 * 1024
MAX_RESTORE_MEMBERS = 2_000_000


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


def check_home(store: Store, *, repair: bool = True, progress: Callable[[int], None] | None = None,
               operator: str | None = None) -> CheckReport:
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
        operator: who asks; repairs need a manager (``--no-repair`` is open to
            auditors).  None for twcactl's own check after ``ca restore``.

    Repairs touch only files ``ca check`` owns: ``certs/<serial>.pem`` and
    ``crl/<ca>.crl`` in the real directories (a symlinked ``certs/`` or
    ``crl/`` is reported, not followed), its own temporary files and the
    modes of files owned by the user running it.  A home another user could
    subvert is reported and not repaired at all.

    Raises:
        StateError: ``repair`` on a read-only home, or for an operator who is not a manager (exit 5).
    """
    if repair and getattr(store, "read_only", False):
        raise StateError(f"the CA home {store.home} is read-only; ca check cannot repair it.",
                         hint="run: twcactl ca check --no-repair")
    if repair and operator is not None:
        store.operators.require_manager(operator)
    report = CheckReport()
    repair = _guard_repairs(store, report, repair)
    complaint = store.engine.integrity_check()
    if complaint is not None:
        report.findings.append(f"the database fails SQLite's integrity check: {complaint}")
    # every other command refuses a bad config.toml; here it is one finding among the rest
    report.findings.extend(store.settings_problems())
    # the files lock is taken around each repair only (issue 13): a long scan never blocks a writer
    _check_certificates(store, report, repair and _real_dir(store, "certs"), progress)
    _check_crls(store, report, repair and _real_dir(store, "crl"))
    with _repair_lock(store, report, repair) as locked:
        _remove_temporary_files(store, report, locked)
    _check_ledgers(store, report)
    _check_carried_and_refunded(store, report)
    count, problems = verify_log(store)
    report.checked["log entries"] = count
    report.findings.extend(f"activity log: {p.message}" for p in problems)
    _check_ca_files(store, report)
    records = check_records(store)
    report.findings.extend(records.findings)
    report.checked.update(records.checked)
    _check_permissions(store, report, repair)
    return report


def _check_certificates(store: Store, report: CheckReport, repair: bool,
                        progress: Callable[[int], None] | None) -> None:
    known: set[str] = set()
    count = 0
    issuers = _ca_certificates(store)
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
        if not _signed_by_a_ca(cert, issuers):
            # never written to certs/: a forged DER must not reach a relying party (issue 13)
            report.findings.append(f"certificate {serial}: the stored DER is not signed by any CA of this home")
            continue
        path = store.cert_path(serial)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        try:
            on_disk = path.read_bytes()
        except FileNotFoundError:
            on_disk = None
        if on_disk != pem:
            what = "missing" if on_disk is None else "different from the record"
            if repair and _rewrite_locked(store, report, path, pem):
                report.repairs.append(f"rebuilt {path.name} ({what}) from the database")
            else:
                report.findings.append(f"{path.name} is {what}")
    report.checked["certificates"] = count
    for path in sorted(store.certs_dir.glob("*.pem")):
        if path.name not in known:
            if not _OWNED_PEM.match(path.name) or path.is_symlink() or not path.is_file():
                report.findings.append(f"certs/{path.name} is not a file twcactl wrote; left alone")
            elif repair:
                _remove_orphan(store, report, path)
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
            elif any(other.issuer == ca.name for other in store.cas.all()):  # a home made before issue 25
                report.findings.append(f"CA {ca.name} signs CA certificates but has no CRL; relying parties that "
                                       f"check the whole chain reject it: twcactl crl --ca {ca.name}")
            continue
        checked += 1
        crl = x509.load_der_x509_crl(latest["der"])
        ca_cert = ca.certificate()
        signed = crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
        if not signed:
            report.findings.append(f"CRL #{latest['number']} of {ca.name} does not verify with the CA's key")
        expected = {int(s, 16): reason for s, _at, reason, _inv in [*store.certificates.revoked_entries(ca.name),
                                                                    *store.cas.revoked_entries(ca.name)]}
        _check_ca_crl_age(store, report, ca, latest)
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
            if repair and signed and _rewrite_crl_locked(store, report, ca.name, latest):
                report.repairs.append(f"rewrote crl/{path.name} ({what}) from CRL #{latest['number']}")
            else:
                report.findings.append(f"crl/{path.name} is {what}")
    report.checked["CRLs"] = checked


def _check_ca_crl_age(store: Store, report: CheckReport, ca: CaRecord, latest: dict[str, object]) -> None:
    """Warn before the CRL of a CA that signs CA certificates (the root's, signed offline) goes stale: fewer
    than :data:`twcactl.rules.publication.CA_CRL_WARN_DAYS` days to its nextUpdate (BR §4.9.7; issue 25).
    Issuing CAs' CRLs are renewed by ``serve`` and every revocation; the root's only by its ceremony."""
    if not any(other.issuer == ca.name for other in store.cas.all()):
        return
    left = parse_rfc3339(str(latest["next_update"])) - utcnow()
    if left < dt.timedelta(days=CA_CRL_WARN_DAYS):
        when = "is past its nextUpdate" if left.total_seconds() <= 0 else f"goes stale in {left.days} day(s)"
        report.findings.append(f"the CRL of {ca.name} {when}; sign a new one: twcactl crl --ca {ca.name} "
                               "(docs/hierarchy.md, the root ceremony)")


REPAIR_LOCK_WAIT = 10.0
"""Seconds ``ca check`` waits for the files lock before one repair; past it the repair is skipped and reported."""


@contextlib.contextmanager
def _repair_lock(store: Store, report: CheckReport, repair: bool) -> Iterator[bool]:
    """Hold the files lock for one repair (yields True), or yield False when not repairing or the lock
    stayed held elsewhere for :data:`REPAIR_LOCK_WAIT` seconds (reported as a finding)."""
    if not repair or report.checked.get("repairs skipped: files lock held elsewhere"):
        yield False
        return
    try:
        lock = store.files_lock(timeout=REPAIR_LOCK_WAIT)
        lock.__enter__()
    except (BusyError, OSError):
        # once the lock was not had, no later repair waits for it again: the check still finishes
        report.checked["repairs skipped: files lock held elsewhere"] = 1
        report.findings.append("another twcactl held the lock for derived files; repairs were skipped "
                               "(run ca check again)")
        yield False
        return
    try:
        yield True
    finally:
        lock.__exit__(None, None, None)


def _rewrite_locked(store: Store, report: CheckReport, path: Path, data: bytes) -> bool:
    """Rewrite a derived file under the files lock; False when the lock was not had."""
    with _repair_lock(store, report, True) as locked:
        if locked:
            _rewrite(path, data)
        return locked


def _rewrite_crl_locked(store: Store, report: CheckReport, ca_name: str, checked: dict[str, object]) -> bool:
    """Write ``crl/<ca>.crl`` from the CRL ``checked`` under the files lock, unless a newer CRL was made
    meanwhile (its writer writes that one); False when nothing was written."""
    with _repair_lock(store, report, True) as locked:
        newest = store.crls.latest(ca_name) if locked else None
        if newest is None or newest["number"] != checked["number"]:
            return False
        _rewrite(store.crl_path(ca_name), bytes(newest["der"]))
        return True


def _remove_orphan(store: Store, report: CheckReport, path: Path) -> None:
    """Remove ``certs/<serial>.pem`` whose record does not exist, checked again under the files lock: a
    certificate committed after the scan began writes its PEM under that lock."""
    with _repair_lock(store, report, True) as locked:
        if not locked:
            return
        try:
            store.certificates.get(path.name[:-len(".pem")])
        except NotFoundError:
            path.unlink()
            report.repairs.append(f"removed {path.name}: no such certificate in the database")


def _ca_certificates(store: Store) -> list[x509.Certificate]:
    """The CA certificates as the store recorded them (``cas.der``)."""
    return [ca.certificate() for ca in store.cas.all()]


def _signed_by_a_ca(cert: x509.Certificate, issuers: list[x509.Certificate]) -> bool:
    """True when one of ``issuers`` (by name) signed ``cert`` (signature verified, RFC 5280 §6.1.3 (a)(1))."""
    for issuer in issuers:
        if issuer.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _check_ca_files(store: Store, report: CheckReport) -> None:
    """Each CA's certificate file is the one the store recorded, each CA certificate is signed by the one
    above it (the root by itself), and each key belongs to its certificate: encrypted PKCS#8 in a home
    whose keys are encrypted (checked without the passphrase), the same public key otherwise (issue 13)."""
    cas = store.cas.all()
    certs = {ca.name: ca.certificate() for ca in cas}
    for ca in cas:
        cert = ca.certificate()
        try:
            on_disk = x509.load_pem_x509_certificate(ca.cert_file.read_bytes())
        except (OSError, ValueError):
            report.findings.append(f"CA {ca.name}: {ca.cert_file} is missing or not a certificate")
        else:
            if on_disk.public_bytes(serialization.Encoding.DER) != ca.der:
                report.findings.append(f"CA {ca.name}: {ca.cert_file} is not the certificate the store recorded")
        above = certs.get(ca.issuer) if ca.issuer is not None else None  # its issuer (issue 25: links, not order)
        if not _signed_by_a_ca(cert, [above or cert]):
            report.findings.append(f"CA {ca.name}: its certificate is not signed by "
                                   + (f"its issuer {ca.issuer}" if ca.issuer is not None else "its own key"))
        _check_ca_key(store, ca, cert, report)
    recorded = {ca.cert_file.name for ca in cas}
    for path in sorted(store.ca_dir.glob("*.cer")):
        if path.name not in recorded:
            report.findings.append(f"ca/{path.name} is not a CA certificate the store recorded")
    report.checked["CA certificates and keys"] = len(cas)


def _check_ca_key(store: Store, ca: CaRecord, cert: x509.Certificate, report: CheckReport) -> None:
    if ca.key_uri is not None:
        _check_token_key(ca, cert, report)
        return
    try:
        data = ca.key_file.read_bytes()
    except OSError:
        return  # a missing key is reported with the permissions
    if store.ca_key_encrypted:
        if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" not in data:
            report.findings.append(f"CA {ca.name}: the key {ca.key_file.name} is not encrypted PKCS#8, but this "
                                   "home's keys are encrypted")
        return
    try:
        key = load_private_key(data, None, name=ca.key_file.name, trusted=True)
    except TwcaError:
        report.findings.append(f"CA {ca.name}: the key {ca.key_file.name} cannot be read without a passphrase")
        return
    if not key_matches_certificate(key.public_key(), cert):
        report.findings.append(f"CA {ca.name}: the key {ca.key_file.name} does not belong to its certificate")


def _check_token_key(ca: CaRecord, cert: x509.Certificate, report: CheckReport) -> None:
    """A CA key on a PKCS#11 token (issue 14): its public half, read from the token without the PIN, must be
    the certificate's public key; a token or module this machine cannot reach is a finding."""
    try:
        public = token_public_key(ca)
    except TwcaError as exc:
        report.findings.append(f"CA {ca.name}: its key on a token cannot be checked: {exc.message}")
        return
    if not key_matches_certificate(public, cert):
        report.findings.append(f"CA {ca.name}: the token key {ca.key_uri} does not belong to its certificate")


def _remove_temporary_files(store: Store, report: CheckReport, repair: bool) -> None:
    # fsutil writes ".<name>.<random>.tmp" next to the target; a killed writer leaves one behind
    for directory in (store.home / d for d in (*_DERIVED_DIRS, "ca", "ca/private")):
        if not directory.is_dir() or directory.is_symlink():
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


def _check_carried_and_refunded(store: Store, report: CheckReport) -> None:
    """One accounting rule for time (issue 12; domain.md §3-§4): a certificate's paid time is used, carried
    forward to its successor, or refunded, never two.  Report every certificate that has a successor (its
    time was carried forward) and a ``refund`` ledger entry too."""
    for serial in store.certificates.carried_and_refunded():
        report.findings.append(f"certificate {serial}: its time was both carried forward to a renewal "
                               "and refunded")


def _guard_repairs(store: Store, report: CheckReport, repair: bool) -> bool:
    """Report what makes repairs unsafe; return whether repairs may run at all (symlinked directories
    are handled by skipping them in the checks that write there)."""
    problems = store.ownership_problems(reader=bool(getattr(store, "read_only", False)))
    report.findings.extend(problems)
    for sub in (*_DERIVED_DIRS, "ca", "ca/private"):
        if (store.home / sub).is_symlink():
            report.findings.append(f"{sub}/ is a symbolic link; ca check does not repair through it")
    if problems and repair:
        report.findings.append("another user could change this home; nothing was repaired")
        return False
    return repair


def _real_dir(store: Store, sub: str) -> bool:
    """True when ``HOME/sub`` is a real directory, not a symbolic link (repairs write only there)."""
    path = store.home / sub
    return path.is_dir() and not path.is_symlink()


def _check_permissions(store: Store, report: CheckReport, repair: bool) -> None:
    for sub in ("certs", "crl"):
        path = store.home / sub
        with contextlib.suppress(FileNotFoundError):
            st = path.lstat()
            if stat.S_IMODE(st.st_mode) & 0o022 and not path.is_symlink():
                report.findings.append(f"{path} is mode {stat.S_IMODE(st.st_mode):o}; others could write in it")
                if repair and trusted_owner(st.st_uid):
                    os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)
                    report.repairs.append(f"removed group and other write access from {path}")
    private = store.private_dir
    if private.is_dir() and stat.S_IMODE(private.stat().st_mode) != 0o700:
        report.findings.append(f"{private} is mode {stat.S_IMODE(private.stat().st_mode):o}, not 700")
        if repair and not private.is_symlink():
            os.chmod(private, 0o700)
            report.repairs.append(f"set {private} to mode 700")
    for ca in store.cas.all():
        if ca.key_uri is not None:  # the key is on a token (issue 14): a key file here was put there by hand
            if ca.key_file.exists():
                report.findings.append(f"CA {ca.name}'s key is on a token, yet {ca.key_file} exists")
            continue
        try:
            mode = stat.S_IMODE(ca.key_file.stat().st_mode)
        except FileNotFoundError:
            report.findings.append(f"the key of CA {ca.name} ({ca.key_file}) is missing")
            continue
        if mode & 0o077:
            report.findings.append(f"the key of CA {ca.name} is mode {mode:o}; others could read it")
            if repair and not ca.key_file.is_symlink():
                os.chmod(ca.key_file, 0o600)
                report.repairs.append(f"set {ca.key_file.name} to mode 600")


def _rewrite(path: Path, data: bytes) -> None:
    with atomic_writer(path, mode=0o644, force=True) as fh:
        fh.write(data)


# ----- backup and restore -----

def backup_home(store: Store, out: Path, *, force: bool = False) -> dict[str, int]:
    """Write a consistent archive (tar.gz, mode 0600) of the CA home to ``out``.

    One format for both engines (issue 14): on PostgreSQL the database is copied from one
    REPEATABLE READ snapshot into an SQLite file and config.toml holds every setting, so
    ``ca restore`` gives an SQLite home (``store migrate --to URL`` moves it back).

    The database is copied with SQLite's online backup API, which is safe
    while other twcactl processes write (a plain copy of a live WAL database
    is not); the CA certificates and (encrypted) keys, ``config.toml``,
    ``certs/`` and ``crl/`` are added as files.  Restore with
    :func:`restore_home` or ``tar -xzf FILE -C NEW_HOME``.

    CA keys on a PKCS#11 token (``ca init --key-uri``, issue 14) are NOT in the archive: only their URIs
    (in the database) are.  The token itself must be backed up with the HSM's own means (a backup HSM,
    SoftHSM2's token directory); a restored home signs again once the same token is reachable.

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
                if store.shared:  # one archive format: the CA's whole config.toml, as an SQLite home has it
                    config = Path(tmp) / "config.toml"
                    config.write_bytes(_standalone_config(store))
                    archive.add(config, arcname="config.toml")
                    files += 1
                for rel in _home_files(store.home, config=not store.shared):
                    archive.add(store.home / rel, arcname=str(rel), recursive=False)
                    files += 1
    return {"files": files, "certificates": certificates}


def _standalone_config(store: Store) -> bytes:
    """config.toml of an SQLite home holding every setting of ``store`` (shared and this node's), no ``store``."""
    import tomli_w

    mapping = {k: v for k, v in store.settings().to_mapping().items() if k != "store"}
    return tomli_w.dumps(mapping).encode("utf-8")


def _home_files(home: Path, *, config: bool = True) -> list[Path]:
    """The files of a home that belong in a backup, relative to it (not the live database or lock files)."""
    out: list[Path] = []
    if config and (home / "config.toml").is_file():
        out.append(Path("config.toml"))
    for sub in ("ca", "certs", "crl"):
        base = home / sub
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.name.endswith(".tmp") and not path.is_symlink():
                    out.append(path.relative_to(home))
    return out


def restore_home(archive_path: Path, home: Path, *, max_member_bytes: int = MAX_RESTORE_MEMBER_BYTES,
                 max_total_bytes: int = MAX_RESTORE_TOTAL_BYTES) -> int:
    """Unpack a ``ca backup`` archive into a new, empty ``home``.

    Only regular files under the names a backup holds are extracted
    (``twcactl.db``, ``config.toml``, files under ``ca/``, ``certs/`` and
    ``crl/``); links, devices, absolute paths and ``..`` are refused, so a
    crafted archive cannot write outside ``home``.  Members are streamed to disk in 1 MiB pieces (never read whole
    into memory), at most ``max_member_bytes`` each and ``max_total_bytes``
    together (defaults 256 MiB and 1 GiB), at most
    :data:`MAX_RESTORE_MEMBERS` members.  Everything goes into a temporary
    directory beside ``home`` that is renamed into place only when the whole
    archive was restored: a failure leaves nothing behind.

    Returns:
        The number of files restored.

    Raises:
        StateError: ``home`` exists and is not empty (exit 5).
        InputError: not a twcactl backup, corrupt, over a limit, or the disk is full (exit 3).
    """
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise StateError(f"{home} is not empty; restore into a new directory.")
    try:
        archive = tarfile.open(archive_path, mode="r:gz")
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise InputError(f"{archive_path} is not a twcactl backup (tar.gz).") from exc
    with archive, building_home(home, "ca restore") as build:
        HomeLayout(build).make_dirs()
        try:
            count = _restore_members(archive, archive_path, build, max_member_bytes, max_total_bytes)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise InputError(f"{archive_path} is corrupt ({type(exc).__name__}); nothing was restored.") from exc
        except OSError as exc:
            if is_disk_full(exc):
                raise InputError(f"no space left on the device for {home}; nothing was restored.",
                                 hint="free some space and run the command again") from exc
            raise
    return count


def _restore_members(archive: tarfile.TarFile, archive_path: Path, build: Path, max_member: int,
                     max_total: int) -> int:
    """Stream every member of ``archive`` into ``build`` under the limits; the number written.

    Raises:
        InputError: an unexpected member, a limit passed, or no database in the archive (exit 3).
    """
    count = total = 0
    seen_db = False
    for m in archive:
        _check_member(m, archive_path)
        count += 1
        if count > MAX_RESTORE_MEMBERS:
            raise InputError(f"{archive_path} holds more than {MAX_RESTORE_MEMBERS} members; refusing to restore.")
        if m.size > max_member:
            raise InputError(f"{archive_path}: member {m.name!r} is {m.size} bytes, over the limit of "
                             f"{max_member} bytes per member; nothing was restored.")
        if total + m.size > max_total:
            raise InputError(f"{archive_path} holds more than {max_total} bytes; nothing was restored.")
        source = archive.extractfile(m)
        if source is None:
            raise InputError(f"{archive_path}: member {m.name!r} cannot be read; nothing was restored.")
        mode = 0o600 if m.name.startswith("ca/private/") or m.name == DB_NAME else 0o644
        durable = m.name == DB_NAME or m.name.startswith("ca/")  # derived files are rebuilt by ca check
        target = build / m.name
        if not target.parent.is_dir():
            target.parent.mkdir(mode=0o700, parents=True)
        with atomic_writer(target, mode=mode, force=False, durable=durable) as fh:
            written = 0
            while chunk := source.read(1024 * 1024):
                written += len(chunk)
                if written > max_member or total + written > max_total:
                    raise InputError(f"{archive_path}: member {m.name!r} is larger than its header says or "
                                     "over a limit; nothing was restored.")
                fh.write(chunk)
        total += written
        seen_db = seen_db or m.name == DB_NAME
    if not seen_db:
        raise InputError(f"{archive_path} holds no {DB_NAME}; it is not a twcactl backup.")
    return count


def _check_member(m: tarfile.TarInfo, archive_path: Path) -> None:
    """Refuse any member a ``ca backup`` does not write (see :func:`restore_home`)."""
    parts = Path(m.name).parts
    allowed = m.name in (DB_NAME, "config.toml") or (len(parts) >= 2 and parts[0] in ("ca", "certs", "crl"))
    if not m.isfile() or m.name.startswith("/") or ".." in parts or not allowed:
        raise InputError(f"{archive_path} holds an unexpected member {m.name!r}; refusing to restore.")
