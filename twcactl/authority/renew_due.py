"""``cert renew-due``: renew every certificate that is due, in one command a nightly job can run (issue 17).

A certificate is due when it is valid, not yet renewed (a certificate renews once; issue 12) and ends
within ``--within DAYS``.  Each is renewed under the ``cert renew`` rules (domain.md §4: same CN,
validity continuing from the old notAfter, charged like an issue) in its own transaction, so one
refusal does not stop the others, and a second run finds nothing due: every renewed certificate has a
successor, and the successors end far beyond the horizon.

The key:

* ``new_key``: a fresh key of the old key's type and size (:func:`twcactl.pfx.new_key_like`) and a
  request for the old certificate's subject and SANs (:func:`twcactl.pfx.replacement_csr`).
* otherwise the SAME key: a request must be signed by the private key, so it is read from
  ``DIR/<CN>/key.pem`` (unencrypted PEM, as a previous run wrote it, or as the sysadmin placed it); a
  certificate without that file is skipped, saying why.

The files, per certificate, in ``DIR/<CN>/`` (``<CN>`` with characters other than letters, digits,
``.``, ``-``, ``_`` and ``@`` replaced by ``_``, so ``*.example.com`` is ``_.example.com``):
``key.pem`` (mode 0600), ``cert.pem``, ``chain.pem`` (the intermediates, issuer first),
``fullchain.pem`` (the certificate and its intermediates) and, with a PFX password, ``cert.pfx``
(key, certificate and the whole path, root included; domain.md §7).  They are written and fsynced into
a new directory beside the target BEFORE the renewal commits (a failure there changes no record), and
the directory takes the target's place after the commit in one step (``renameat2(RENAME_EXCHANGE)`` on
Linux; elsewhere two renames).  Other regular files of the old directory are carried over.  When the
swap fails after the commit, the certificate is renewed and charged all the same: the result names
the new directory as pending (post-commit honesty, issue 13).

After each renewal whose files are in place, ``hook`` runs (``--exec CMD``: environment variables name
the files, as certbot's deploy hooks do; see :func:`hook_environment`).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.authority import parallel
from twcactl.authority.lifecycle import CsrInput, PassphraseProvider, issuing_chain, renew_and_revoke
from twcactl.errors import TwcaError, UsageError
from twcactl.fsutil import fsync_dir
from twcactl.pfx import check_password, export_pfx, key_matches, new_key_like, replacement_csr
from twcactl.pkix.chain import fullchain_pem
from twcactl.pkix.keys import PrivateKey, is_encrypted_key, load_private_key, private_key_pem
from twcactl.pkix.profiles import get_profile
from twcactl.rules.times import rfc3339, utcnow
from twcactl.store import Store
from twcactl.store.records import CertRecord

KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"
CHAIN_FILE = "chain.pem"
FULLCHAIN_FILE = "fullchain.pem"
PFX_FILE = "cert.pfx"
#: The files renew-due owns in ``DIR/<CN>/``; any other regular file there is carried over.
OWNED_FILES = (KEY_FILE, CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE, PFX_FILE)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@")


@dataclass(frozen=True)
class RenewDueRequest:
    """What ``cert renew-due`` was asked (cli-contract.md).

    Attributes:
        within_days: renew certificates ending within this many days (0..36,500).
        account / profile: only this account's / profile's certificates (None: all).
        new_key: a fresh key per certificate instead of the key in ``DIR/<CN>/key.pem``.
        out_dir: where ``<CN>/`` directories are written (None only with ``dry_run``).
        pfx_password: also write ``cert.pfx`` under this password (at least 6 characters).
        dry_run: report what would be done; sign, write and charge nothing.
    """

    within_days: int
    account: str | None = None
    profile: str | None = None
    new_key: bool = False
    out_dir: Path | None = None
    pfx_password: str | None = field(default=None, repr=False)
    dry_run: bool = False


@dataclass
class DueResult:
    """One due certificate and what happened to it.

    ``outcome`` is ``renewed``, ``would-renew`` (dry run), ``skipped`` (``why``) or ``failed``
    (``error``: the TwcaError, rendered as the contract's error document).
    """

    serial: str
    cn: str | None
    profile: str
    account: str | None
    not_after: dt.datetime
    outcome: str = "pending"
    why: str | None = None
    error: TwcaError | None = None
    new_serial: str | None = None
    new_not_after: dt.datetime | None = None
    new_key: bool = False
    directory: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hook_exit: int | None = None
    balance: int | None = None

    def to_json(self) -> dict[str, object]:
        """The result as JSON (the CLI adds ``error`` as the error document)."""
        doc: dict[str, object] = {"serial": self.serial, "cn": self.cn, "profile": self.profile,
                                  "account": self.account, "not_after": rfc3339(self.not_after),
                                  "outcome": self.outcome, "new_key": self.new_key}
        if self.why is not None:
            doc["why"] = self.why
        if self.new_serial is not None:
            doc.update(renewed_by=self.new_serial, new_not_after=rfc3339(self.new_not_after)
                       if self.new_not_after else None, balance=self.balance)
        if self.directory is not None:
            doc["directory"] = self.directory
        if self.outcome == "renewed":
            doc["files"] = {"written": sorted(self.files.values()), "pending": list(self.pending)}
            doc["hook"] = None if self.hook_exit is None else {"exit_code": self.hook_exit}
        if self.warnings:
            doc["warnings"] = list(self.warnings)
        return doc


@dataclass
class RenewDueOutcome:
    """Every due certificate's result, in notAfter order (soonest first)."""

    results: list[DueResult] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        """How many results have ``outcome``."""
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def hook_failed(self) -> bool:
        """True when a ``--exec`` hook exited non-zero."""
        return any(r.hook_exit not in (None, 0) for r in self.results)


#: Runs the deploy hook of one renewed certificate; returns its exit status.
Hook = Callable[[DueResult], int]
#: Called after each certificate: (done, total, its result).
Progress = Callable[[int, int, DueResult], None]


def directory_name(cn: str | None, serial: str) -> str:
    """The directory of a certificate under ``--out-dir``: its CN with unsafe characters made ``_``
    (``*.twca.com.tw`` -> ``_.twca.com.tw``), never hidden, never ``..``; the serial when there is no CN."""
    name = "".join(c if c in _NAME_CHARS else "_" for c in (cn or "").strip())
    if not name.strip("._"):
        return serial
    return "_" + name[1:] if name.startswith(".") else name


def hook_environment(result: DueResult, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of the ``--exec`` hook: ``base`` plus the files and serials of one renewal.

    ``TWCACTL_CERT``, ``TWCACTL_KEY``, ``TWCACTL_CHAIN``, ``TWCACTL_FULLCHAIN``, ``TWCACTL_PFX`` (empty
    without ``--pfx-password``): absolute paths; ``TWCACTL_DIR`` the certificate's directory;
    ``TWCACTL_SERIAL`` the new serial, ``TWCACTL_RENEWED`` the old one; ``TWCACTL_CN`` the CN (the
    way certbot's deploy hooks get ``RENEWED_LINEAGE``).
    """
    env = dict(base)
    env.update({
        "TWCACTL_CERT": result.files.get(CERT_FILE, ""), "TWCACTL_KEY": result.files.get(KEY_FILE, ""),
        "TWCACTL_CHAIN": result.files.get(CHAIN_FILE, ""), "TWCACTL_FULLCHAIN": result.files.get(FULLCHAIN_FILE, ""),
        "TWCACTL_PFX": result.files.get(PFX_FILE, ""), "TWCACTL_DIR": result.directory or "",
        "TWCACTL_SERIAL": result.new_serial or "", "TWCACTL_RENEWED": result.serial, "TWCACTL_CN": result.cn or "",
    })
    return env


#: The SOURCE forms that name an environment variable, and those that are the secret itself.
_ENV_SOURCE = "env:"
_INLINE_SOURCE = "pass:"


def hook_base_environment(environ: Mapping[str, str], sources: Iterable[str | None]) -> dict[str, str]:
    """``environ`` without every variable a SOURCE named (issue 27: a deploy hook is someone else's program;
    it must not inherit the CA passphrase that ``--ca-passphrase env:CA_PASS`` read).

    A variable is dropped when ``sources`` (the command's SOURCE options and settings, e.g.
    ``env:CA_PASS``) names it, when another variable's value is a SOURCE naming it (``$TWCACTL_CA_PASSPHRASE_SOURCE``
    = ``env:CA_PASS`` drops both), and when its own value is a ``pass:`` SOURCE (the secret itself).

    Args:
        environ: the process environment.
        sources: SOURCE texts (None and non-``env:`` forms are ignored for naming).

    Returns:
        A new mapping for :func:`shell_hook`.
    """
    named = {source[len(_ENV_SOURCE):] for source in sources if source and source.startswith(_ENV_SOURCE)}
    for name, value in environ.items():
        if value.startswith(_ENV_SOURCE):
            named.update((name, value[len(_ENV_SOURCE):]))
        elif value.startswith(_INLINE_SOURCE):
            named.add(name)
    return {name: value for name, value in environ.items() if name not in named}


def shell_hook(command: str, base_env: Mapping[str, str]) -> Hook:
    """A hook running ``command`` with ``/bin/sh -c`` (as certbot's ``--deploy-hook``), its output on stderr
    (stdout carries the command's result), with :func:`hook_environment`."""
    def run(result: DueResult) -> int:
        try:
            done = subprocess.run(["/bin/sh", "-c", command], env=hook_environment(result, base_env),
                                  stdin=subprocess.DEVNULL, stdout=2, check=False)
        except OSError:
            return 127
        return done.returncode
    return run


def renew_due(store: Store, request: RenewDueRequest, *, operator: str, passphrase: PassphraseProvider,
              hook: Hook | None = None, progress: Progress | None = None,
              now: dt.datetime | None = None, jobs: int = 1) -> RenewDueOutcome:
    """Renew every due certificate (see the module docstring); one result per certificate.

    ``--within`` is the horizon: a certificate ending within it is renewed even before the renewal window
    (``renewal_window_days``) opens, as ``cert renew --early`` would; nothing is lost, the new validity
    continues from the old notAfter (domain.md §4).  With ``new_key``, ``jobs`` worker processes make the
    new keys ahead (:func:`twcactl.authority.parallel.new_keys`, issue 29) while this process renews one
    certificate after the other, in the same order and with the same outcome as ``jobs=1``.

    Raises:
        UsageError: no ``out_dir`` without ``dry_run``; a PFX password under 6 characters; an unknown
            profile (exit 2).
        NotFoundError: an unknown ``account`` (exit 5).
        StateError: the operator is not a manager (exit 5; not checked for a dry run).
        Refusals of single certificates are never raised: they are ``failed`` results.
    """
    if request.out_dir is None and not request.dry_run:
        raise UsageError("--out-dir is needed: each certificate's key and files are written to DIR/<CN>/.")
    if request.pfx_password is not None:
        check_password(request.pfx_password)
    if request.profile is not None:
        get_profile(request.profile)
    if request.account is not None:
        store.accounts.get(request.account, ledger=False)  # an unknown account is exit 5, not "nothing due"
    if not request.dry_run:
        store.operators.require_manager(operator)
    now = now or utcnow()
    due = [r for r in store.certificates.find(now=now, expiring_within=request.within_days, account=request.account)
           if request.profile is None or r.profile == request.profile]
    due.sort(key=lambda r: (r.not_after, r.serial))
    outcome = RenewDueOutcome()
    used: set[str] = set()
    fresh = parallel.new_keys([r.der for r in due], jobs=jobs) if request.new_key and not request.dry_run else None
    for index, record in enumerate(due, 1):
        result = DueResult(record.serial, record.cn, record.profile, record.account, record.not_after,
                           new_key=request.new_key)
        _renew_one(store, request, record, result, used, operator=operator, passphrase=passphrase, hook=hook,
                   fresh=next(fresh) if fresh is not None else None)
        outcome.results.append(result)
        if progress is not None:
            progress(index, len(due), result)
    return outcome


def _renew_one(store: Store, request: RenewDueRequest, record: CertRecord, result: DueResult, used: set[str], *,
               operator: str, passphrase: PassphraseProvider, hook: Hook | None,
               fresh: Callable[[], PrivateKey] | None = None) -> None:
    """Fill ``result`` for one due certificate: skipped, would-renew, failed or renewed (``fresh``: its new
    key, made ahead)."""
    name = directory_name(record.cn, record.serial)
    target = request.out_dir / name if request.out_dir is not None else None
    result.directory = str(target.resolve()) if target is not None else None
    if name in used:
        result.outcome, result.why = "skipped", f"another due certificate with the same name was renewed into {name}/"
        return
    used.add(name)
    old_cert = x509.load_der_x509_certificate(record.der)
    try:
        key = _key_for(request, old_cert, target, record.serial, fresh)
    except _Skip as skip:
        result.outcome, result.why = "skipped", str(skip)
        return
    except TwcaError as exc:
        result.outcome, result.error = "failed", exc
        return
    if request.dry_run:
        result.outcome = "would-renew"
        return
    assert target is not None and key is not None
    _renew_and_place(store, request, record, result, key, old_cert, target, operator=operator, passphrase=passphrase)
    if result.outcome == "renewed" and not result.pending and hook is not None:
        result.hook_exit = hook(result)
        if result.hook_exit != 0:
            result.warnings.append(f"the --exec command exited with status {result.hook_exit}")


class _Skip(Exception):
    """A certificate renew-due leaves alone, with the reason (not an error: nothing was tried)."""


def _key_for(request: RenewDueRequest, old_cert: x509.Certificate, target: Path | None,
             serial: str, fresh: Callable[[], PrivateKey] | None = None) -> PrivateKey | None:
    """The key the renewal certifies: a fresh one like the old, or the old one from ``DIR/<CN>/key.pem``.

    Returns None for a dry run with the same key and no ``--out-dir`` (the key file cannot be looked for).

    Raises:
        _Skip: no usable key file (same-key renewal).
        InputError: the old key is of a type twcactl cannot make (exit 3).
    """
    if request.new_key:
        if request.dry_run:
            return None
        return fresh() if fresh is not None else new_key_like(old_cert.public_key())
    if target is None:
        if request.dry_run:
            return None
        raise _Skip("no --out-dir to find its key in")
    path = target / KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _Skip(f"no {path}: a renewal with the same key needs it (or use --new-key)") from None
    except OSError as exc:
        raise _Skip(f"{path} cannot be read: {exc.strerror}") from None
    if is_encrypted_key(data):
        raise _Skip(f"{path} is encrypted; renew-due reads an unencrypted key (mode 0600), as it writes them")
    try:
        key = load_private_key(data, None, name=str(path))
    except TwcaError as exc:
        raise _Skip(f"{path} is not a usable private key: {exc.message}") from None
    if not key_matches(key, old_cert):
        raise _Skip(f"{path} is not the key of certificate {serial}")
    return key


def _renew_and_place(store: Store, request: RenewDueRequest, record: CertRecord, result: DueResult,
                     key: PrivateKey, old_cert: x509.Certificate, target: Path, *, operator: str,
                     passphrase: PassphraseProvider) -> None:
    """Renew ``record`` with ``key``; stage the files before the commit, swap them into place after it."""
    assert request.out_dir is not None
    chain_issuer_first = list(reversed(issuing_chain(store)))  # the active issuing CA renews (issue 25)
    staged: list[Path] = []

    def stage(new_cert: x509.Certificate) -> None:
        files = certificate_files(key, new_cert, chain_issuer_first, request.pfx_password, record.cn)
        staged.append(_stage(request.out_dir, target, files))  # type: ignore[arg-type]

    try:
        csr = CsrInput(name=f"renewal request for {record.serial}", data=replacement_csr(key, old_cert))
        replaced = renew_and_revoke(store, record.serial, csr, early=True, operator=operator, passphrase=passphrase,
                                    revoke_reason=None, note="cert renew-due", prepare=stage)
    except TwcaError as exc:
        for path in staged:  # not committed: the staged files (and a new key) go
            shutil.rmtree(path, ignore_errors=True)
        result.outcome, result.error = "failed", exc
        return
    renewal = replaced.renewal
    result.outcome, result.new_serial = "renewed", renewal.certificate.serial
    result.new_not_after, result.balance = renewal.certificate.not_after, renewal.balance_after
    result.pending.extend(renewal.files.pending)
    try:
        _place(staged[0], target)
    except OSError as exc:
        result.pending.append(str(staged[0]))
        result.warnings.append(f"certificate {result.new_serial} was issued and charged, but its files could not be "
                               f"moved to {target} ({exc.strerror or exc}); they are in {staged[0]}: move them "
                               "there yourself, do not run the command again")
        return
    base = target.resolve()
    result.files = {f: str(base / f) for f in OWNED_FILES if (base / f).is_file()}


def certificate_files(key: PrivateKey, cert: x509.Certificate, chain_issuer_first: list[x509.Certificate],
                      pfx_password: str | None, cn: str | None) -> list[tuple[str, bytes, int]]:
    """``(file name, bytes, mode)`` of one renewed certificate: key (0600), certificate, chain, fullchain and
    optionally the PFX (0600; the whole path, root included, domain.md §7)."""
    pem = serialization.Encoding.PEM
    intermediates = chain_issuer_first[:-1]  # the root is last
    files = [
        (KEY_FILE, private_key_pem(key, None), 0o600),
        (CERT_FILE, cert.public_bytes(pem), 0o644),
        (CHAIN_FILE, b"".join(c.public_bytes(pem) for c in intermediates), 0o644),
        (FULLCHAIN_FILE, fullchain_pem(cert, chain_issuer_first), 0o644),
    ]
    if pfx_password is not None:
        files.append((PFX_FILE, export_pfx(key, cert, chain_issuer_first, password=pfx_password,
                                           friendly_name=cn), 0o600))
    return files


def _stage(out_dir: Path, target: Path, files: list[tuple[str, bytes, int]]) -> Path:
    """Write ``files`` (fsynced) into a new hidden directory in ``out_dir`` (mode 0700), with the other
    regular files of ``target`` carried over; returns the directory.

    Raises:
        InputError: ``out_dir`` cannot be made or written (exit 3; nothing committed yet).
    """
    from twcactl.errors import InputError

    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".new", dir=out_dir))
    except OSError as exc:
        raise InputError(f"cannot write in {out_dir}: {exc.strerror or exc}; nothing was renewed.") from exc
    try:
        for name, data, mode in files:
            fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        if target.is_dir() and not target.is_symlink():
            for other in target.iterdir():
                if other.name not in OWNED_FILES and other.is_file() and not other.is_symlink():
                    shutil.copy2(other, staging / other.name)
        fsync_dir(staging)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"cannot write the files in {out_dir}: {exc.strerror or exc}; nothing was renewed.") from exc
    return staging


def _place(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target`` in one step: an atomic exchange with an existing directory (the old one is
    then removed), else a rename.

    Raises:
        OSError: the move failed (``staging`` is left as it is).
    """
    if target.is_dir() and not target.is_symlink():
        if not _exchange(staging, target):
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.rmdir(old)
            os.rename(target, old)
            try:
                os.rename(staging, target)
            except OSError:
                os.rename(old, target)
                raise
            staging = old
        shutil.rmtree(staging, ignore_errors=True)  # now the previous directory
    else:
        os.rename(staging, target)
    fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically with Linux ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return int(renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)) == 0

