"""Putting a CA certificate into the trust stores people use, the way ``mkcert -install`` does (issue 28).

Three stores, each changed only through its own tool:

* ``system``: the Debian store. The certificate goes to ``/usr/local/share/ca-certificates/NAME.crt`` and
  ``update-ca-certificates`` rebuilds ``/etc/ssl/certs`` (hash links and ``ca-certificates.crt``, the bundle
  OpenSSL, curl and Python's ``ssl`` read by default).  ``root`` moves every one of those paths under another
  directory (a container image's tree, a chroot, a test's own tree): the tool is then run with its
  ``--certsconf --certsdir --localcertsdir --etccertsdir --hooksdir`` options pointing inside it.
* ``nss``: an NSS database (Firefox, Chromium on Linux: ``~/.pki/nssdb``) through ``certutil`` with the
  trust flags ``C,,`` (a trusted CA for TLS servers).
* ``java``: a Java keystore (a JDK's ``lib/security/cacerts``) through ``keytool -importcert -trustcacerts``.

Each store is checked for the rights first (writing the store's files); without them nothing is run.
``dry_run`` returns the plan (files and commands) and changes nothing.  Every certificate is named
``twcactl-<CN>-<first 8 hex of its SHA-256>`` in every store, so ``uninstall`` and ``status`` find it again.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.errors import DeviceError, InputError, StateError, UsageError

__all__ = ["ACTIONS", "NSS_PLACES", "STORES", "StoreReport", "SystemPaths", "Target", "nss_databases", "run_trust",
           "trust_name"]

#: What ``twcactl trust`` does.
ACTIONS = ("install", "uninstall", "status")
#: The stores it knows.
STORES = ("system", "nss", "java")
#: keytool's well-known password of a JDK's ``cacerts`` (used when none is given).
JAVA_DEFAULT_STOREPASS = "changeit"
_TOOL_TIMEOUT = 120


@dataclass(frozen=True)
class Target:
    """One store to act on: ``kind`` in :data:`STORES` and where it is (the root directory for ``system``,
    the NSS database directory, the keystore file)."""

    kind: str
    location: Path


@dataclass
class StoreReport:
    """What happened (or, with ``dry_run``, would happen) to one store.

    Attributes:
        store / location: the :class:`Target`.
        name: the certificate's name in the store (:func:`trust_name`).
        changed: True when the store was changed (False for status, dry runs and no-ops).
        trusted: after the action: whether the store trusts the certificate as a CA for TLS servers.
        steps: the files written or removed and the commands run (or to run), as text.
    """

    store: str
    location: str
    name: str
    changed: bool = False
    trusted: bool = False
    steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """``{"store", "location", "name", "changed", "trusted", "steps"}``."""
        return {"store": self.store, "location": self.location, "name": self.name, "changed": self.changed,
                "trusted": self.trusted, "steps": list(self.steps)}


@dataclass(frozen=True)
class SystemPaths:
    """The Debian store's paths under a root directory (``/`` for the machine's own)."""

    root: Path

    @property
    def local_dir(self) -> Path:
        """Where locally added CA certificates go (``*.crt``, PEM)."""
        return self.root / "usr/local/share/ca-certificates"

    @property
    def etc_certs(self) -> Path:
        """The directory OpenSSL reads (hash links), with the bundle in it."""
        return self.root / "etc/ssl/certs"

    @property
    def bundle(self) -> Path:
        """``ca-certificates.crt``: every trusted certificate, the default CA file of OpenSSL, curl and Python."""
        return self.etc_certs / "ca-certificates.crt"

    def command(self, *extra: str) -> list[str]:
        """``update-ca-certificates`` for this root (the plain command for ``/``)."""
        tool = shutil.which("update-ca-certificates") or "/usr/sbin/update-ca-certificates"
        if self.root == Path("/"):
            return [tool, *extra]
        return [tool, *extra, "--certsconf", str(self.root / "etc/ca-certificates.conf"),
                "--certsdir", str(self.root / "usr/share/ca-certificates"),
                "--localcertsdir", str(self.local_dir), "--etccertsdir", str(self.etc_certs),
                "--hooksdir", str(self.root / "etc/ca-certificates/update.d")]


#: Where NSS databases live under a home directory (as mkcert looks for them): Chromium and other NSS users'
#: shared database, and every Firefox profile (the snap and flatpak ones too).
NSS_PLACES: tuple[str, ...] = (".pki/nssdb", ".mozilla/firefox/*", "snap/firefox/common/.mozilla/firefox/*",
                               ".var/app/org.mozilla.firefox/.mozilla/firefox/*")


def nss_databases(home: Path) -> list[Path]:
    """The NSS database directories (holding ``cert9.db``) under ``home`` (:data:`NSS_PLACES`), sorted."""
    found = {p for pattern in NSS_PLACES for p in home.glob(pattern) if (p / "cert9.db").is_file()}
    return sorted(found)


def trust_name(cert: x509.Certificate) -> str:
    """The certificate's name in every store: ``twcactl-<CN, lowercase, [a-z0-9-]>-<8 hex of its SHA-256>``."""
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else "ca"
    slug = re.sub(r"[^a-z0-9]+", "-", cn.lower()).strip("-")[:40] or "ca"
    return f"twcactl-{slug}-{_sha256(cert)[:8]}"


def _sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def run_trust(action: str, cert: x509.Certificate, targets: Sequence[Target], *, dry_run: bool = False,
              java_storepass: str | None = None) -> list[StoreReport]:
    """Install, uninstall or report ``cert`` in each of ``targets``.

    Args:
        action: one of :data:`ACTIONS`.
        cert: a CA certificate (basicConstraints cA=TRUE).
        targets: the stores; a ``system`` target's location is its root directory.
        dry_run: plan only: nothing is written or run (``status`` still reads).
        java_storepass: the Java keystore's password (default ``changeit``, a JDK's cacerts).

    Returns:
        One report per target, in order.

    Raises:
        UsageError: ``cert`` is not a CA certificate (exit 2).
        StateError: no right to change a store (not root for the system store; a read-only NSS database or
            keystore; exit 5), or its tool refused (exit 5, with the tool's words).
        InputError: an NSS database directory that does not exist (exit 3).
        DeviceError: the store's tool is not installed (exit 6: update-ca-certificates, certutil, keytool).
    """
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}.")
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise UsageError("the certificate is not a CA certificate (basicConstraints cA=TRUE); a trust store "
                         "takes the CA that issued a server's certificate, not the server's own.")
    handlers = {"system": _system, "nss": _nss, "java": _java}
    reports = []
    for target in targets:
        report = StoreReport(store=target.kind, location=str(target.location), name=trust_name(cert))
        handlers[target.kind](action, cert, target.location, report, dry_run, java_storepass)
        reports.append(report)
    return reports


# ----- the Debian system store -----

def _system(action: str, cert: x509.Certificate, root: Path, report: StoreReport, dry_run: bool,
            _storepass: str | None) -> None:
    paths = SystemPaths(root.resolve())
    crt = paths.local_dir / f"{report.name}.crt"
    if action == "status":
        report.trusted = crt.is_file() and _bundle_has(paths.bundle, cert)
        report.steps.append(f"{'found' if crt.is_file() else 'no'} {crt}; bundle {paths.bundle}")
        return
    if action == "install" and crt.is_file() and _bundle_has(paths.bundle, cert):
        report.trusted = True
        report.steps.append(f"already installed: {crt}")
        return
    if action == "uninstall" and not crt.exists():
        report.trusted = _bundle_has(paths.bundle, cert)
        report.steps.append(f"not installed: no {crt}")
        return
    command = paths.command(*(["--fresh"] if action == "uninstall" else []))
    report.steps += [f"{'write' if action == 'install' else 'remove'} {crt}", " ".join(command)]
    if dry_run:
        report.trusted = _bundle_has(paths.bundle, cert)
        return
    _require_tool(command[0], "update-ca-certificates", "ca-certificates")
    if paths.root != Path("/"):  # a root directory of its own: the tree update-ca-certificates expects
        for d in (paths.local_dir, paths.etc_certs, paths.root / "usr/share/ca-certificates",
                  paths.root / "etc/ca-certificates/update.d"):
            _writable_or_refuse(d, "the system trust store", create=True)
        conf = paths.root / "etc/ca-certificates.conf"
        if not conf.exists():
            conf.write_text("")
    _writable_or_refuse(paths.local_dir, "the system trust store (run it as root, e.g. with sudo)")
    _writable_or_refuse(paths.etc_certs, "the system trust store (run it as root, e.g. with sudo)")
    if action == "install":
        from twcactl.fsutil import write_file

        write_file(crt, cert.public_bytes(serialization.Encoding.PEM), mode=0o644, force=True)
    else:
        crt.unlink()
    _run(command, what="update-ca-certificates")
    report.changed = True
    report.trusted = _bundle_has(paths.bundle, cert)


def _bundle_has(bundle: Path, cert: x509.Certificate) -> bool:
    try:
        data = bundle.read_bytes()
    except OSError:
        return False
    try:
        return any(c == cert for c in x509.load_pem_x509_certificates(data))
    except ValueError:
        return False


# ----- NSS -----

def _nss(action: str, cert: x509.Certificate, directory: Path, report: StoreReport, dry_run: bool,
         _storepass: str | None) -> None:
    if not directory.is_dir():
        raise InputError(f"{directory} is not an NSS database directory.",
                         hint="create one with: certutil -N -d sql:DIR --empty-password")
    tool = shutil.which("certutil") or "certutil"
    db = f"sql:{directory}"
    flags = _nss_flags(tool, db, report.name) if shutil.which("certutil") else None
    if action == "status" or (action == "install" and flags and "C" in flags.split(",")[0]) \
            or (action == "uninstall" and flags is None):
        report.trusted = bool(flags and "C" in flags.split(",")[0])
        report.steps.append(f"{report.name}: " + (f"trust flags {flags}" if flags is not None else "not present"))
        return
    if action == "install":  # certutil reads the certificate from stdin when -i is not given
        command = [tool, "-A", "-d", db, "-t", "C,,", "-n", report.name, "-a"]
    else:
        command = [tool, "-D", "-d", db, "-n", report.name]
    report.steps.append(" ".join(command))
    if dry_run:
        return
    _require_tool(shutil.which("certutil"), "certutil", "libnss3-tools")
    _writable_or_refuse(directory, "the NSS database")
    _run(command, what="certutil", stdin=cert.public_bytes(serialization.Encoding.PEM) if action == "install" else None)
    report.changed = True
    flags = _nss_flags(tool, db, report.name)
    report.trusted = bool(flags and "C" in flags.split(",")[0])


def _nss_flags(tool: str, db: str, name: str) -> str | None:
    """The trust flags (``SSL,S/MIME,code signing``, e.g. ``C,,``) of ``name`` in ``db``; None when absent."""
    proc = subprocess.run([tool, "-L", "-d", db], capture_output=True, text=True, timeout=_TOOL_TIMEOUT,
                          check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(name + " ") or line.rstrip() == name:
            parts = line.rsplit(None, 1)
            return parts[1] if len(parts) == 2 else ""
    return None


# ----- Java -----

def _java(action: str, cert: x509.Certificate, keystore: Path, report: StoreReport, dry_run: bool,
          storepass: str | None) -> None:
    tool = shutil.which("keytool") or "keytool"
    password = storepass or JAVA_DEFAULT_STOREPASS
    with tempfile.TemporaryDirectory(prefix="twcactl-trust-") as private:
        passfile = Path(private) / "storepass"  # never on argv: keytool reads it from a 0600 file
        passfile.touch(mode=0o600)
        passfile.write_text(password + "\n")
        common = ["-keystore", str(keystore), "-storepass:file", str(passfile), "-alias", report.name]
        present = keystore.is_file() and shutil.which("keytool") is not None and subprocess.run(
            [tool, "-list", *common], capture_output=True, text=True, timeout=_TOOL_TIMEOUT, check=False,
        ).returncode == 0
        if action == "status" or (action == "install" and present) or (action == "uninstall" and not present):
            report.trusted = present
            report.steps.append(f"{report.name}: {'present' if present else 'not present'} in {keystore}")
            return
        shown = [tool, "-importcert" if action == "install" else "-delete", "-keystore", str(keystore),
                 "-storepass:file", "FILE", "-alias", report.name]
        report.steps.append(" ".join(shown + (["-noprompt", "-trustcacerts", "-file", "-"]
                                              if action == "install" else [])))
        if dry_run:
            return
        _require_tool(shutil.which("keytool"), "keytool", "default-jre-headless")
        _writable_or_refuse(keystore if keystore.exists() else keystore.parent, "the Java keystore")
        if action == "install":
            pem = Path(private) / "ca.pem"
            pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            _run([tool, "-importcert", "-noprompt", "-trustcacerts", "-file", str(pem), *common], what="keytool")
        else:
            _run([tool, "-delete", *common], what="keytool")
        report.changed = True
        report.trusted = action == "install"


# ----- shared -----

def _require_tool(path: str | None, name: str, package: str) -> None:
    if not path or not Path(path).exists():
        raise DeviceError(f"{name} is not installed.", hint=f"install it: apt-get install {package}")


def _writable_or_refuse(path: Path, what: str, *, create: bool = False) -> None:
    """Refuse (exit 5) when ``path`` (or, when it does not exist, its nearest existing parent) is not writable."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise StateError(f"no right to change {what}: {probe} is not writable by this user; nothing was changed.",
                         hint="run it as the store's owner (the system store: as root, e.g. sudo twcactl trust ...)")
    if create and not path.exists():
        path.mkdir(parents=True, exist_ok=True)


def _run(command: list[str], *, what: str, stdin: bytes | None = None) -> None:
    proc = subprocess.run(command, input=stdin, capture_output=True, timeout=_TOOL_TIMEOUT, check=False)
    if proc.returncode != 0:
        words = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip().splitlines()
        raise StateError(f"{what} failed (exit {proc.returncode}): {words[-1] if words else 'no message'}.")
