"""The layout of a CA home on disk (architecture.md, "The store").

::

    HOME/config.toml          settings (tomllib / tomli-w)
    HOME/twcactl.db           SQLite: the single source of truth
    HOME/ca/root.cer ...      CA certificates (PEM)
    HOME/ca/private/*.key     CA keys, encrypted PKCS#8, 0600 in a 0700 directory
    HOME/certs/<serial>.pem   issued certificates, written after the commit
    HOME/crl/<ca>.crl         CRLs (DER)

Only paths and the lock for derived files live here; what the database holds
is the engine's and the repositories' business.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from twcactl.errors import InputError, StateError
from twcactl.fsutil import fsync_dir

DB_NAME = "twcactl.db"
#: Sub-directories of a home, made by ``ca init`` and by ``ca restore``.
HOME_DIRS: tuple[str, ...] = ("ca", "certs", "crl")

#: Mode of the home and of every directory in it (``ca/private`` is always 0700), whatever the umask.
DIR_MODE = 0o700
#: ... with ``ca init --group-readable``: the group may list and read (never write); keys stay 0700/0600.
GROUP_DIR_MODE = 0o750
#: Mode of the database file (and, through SQLite, of its -wal and -shm files).
DB_MODE = 0o600
GROUP_DB_MODE = 0o640

#: errno values that mean "the disk (or the quota) is full".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def trusted_owner(uid: int) -> bool:
    """True when a file owned by ``uid`` cannot be subverted by someone else: the current user or root.

    The rule is OpenSSH's ``StrictModes``: whoever owns a file can change it, so a home, a database,
    ``ca/private`` or a CA key must belong to the user running twcactl (or to root, who can change
    anything anyway).
    """
    return uid in (os.geteuid(), 0)


def ownership_problem(path: Path, what: str, *, reader: bool = False) -> str | None:
    """Why ``path`` could be changed by another user, or None when it cannot (``lstat``: a link is judged itself).

    A problem is: owned by another user (not the current one, not root), or writable by group or others.
    A ``reader`` (who cannot write the home: an auditor reading the owner's group-readable home or a
    read-only snapshot) accepts another owner; group- or other-writable is a problem for everyone.
    A missing path is no problem here (the caller reports missing files).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not reader and not trusted_owner(st.st_uid):
        return f"{what} {path} is owned by uid {st.st_uid}, not by the user running twcactl (uid {os.geteuid()})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = "group and others" if mode & 0o022 == 0o022 else ("group" if mode & 0o020 else "others")
        return f"{what} {path} is writable by {who} (mode {mode:o})"
    return None


def is_disk_full(exc: BaseException) -> bool:
    """True for an ``OSError`` that means no space (ENOSPC) or no quota (EDQUOT) is left."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


@contextlib.contextmanager
def building_home(home: Path, what: str) -> Iterator[Path]:
    """Build a new home in a temporary directory next to ``home`` and rename it into place at the end.

    ``ca init`` and ``ca restore`` write everything into ``.NAME.build-XXXX`` (mode 0700) beside the
    target; only a complete home is renamed to ``home`` (an empty existing directory is replaced).  Any
    exception, and so any failure or a full disk, removes the temporary directory: afterwards there is
    either a complete home or nothing.  A process killed mid-build leaves only the hidden temporary
    directory (never a half-made home); it can be deleted.

    Raises:
        StateError: ``home`` exists and is not an empty directory (exit 5).
        InputError: the disk is full or the parent directory cannot be written (exit 3); nothing is left.
    """
    if home.is_symlink() or (home.exists() and (not home.is_dir() or any(home.iterdir()))):
        raise StateError(f"{home} exists and is not an empty directory.", hint="use a new --home")
    import shutil  # here, not at import: shutil and tempfile cost every command ~2 ms (issue 18)
    import tempfile

    parent = home.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}.build-", dir=parent))
    except OSError as exc:
        raise InputError(f"cannot create the CA home {home}: {exc.strerror}.") from exc
    try:
        yield tmp
        try:
            os.rename(tmp, home)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EBUSY):
                raise
            _move_contents(tmp, home)  # ``home`` is a mount point: move its entries, the database last
        fsync_dir(parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise InputError(f"no space left on the device for {home}; nothing was created.",
                             hint="free some space and run the command again") from exc
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise InputError(f"cannot create the CA home {home}: {exc.strerror}; nothing was created.") from exc
        raise


def _move_contents(source: Path, target: Path) -> None:
    """Move every entry of ``source`` into the empty directory ``target``; the database goes last."""
    import shutil

    names = sorted(os.listdir(source), key=lambda n: n == DB_NAME)
    for name in names:
        shutil.move(str(source / name), str(target / name))
    os.chmod(target, stat.S_IMODE(os.stat(source).st_mode))
    os.rmdir(source)



class HomeLayout:
    """Where each part of the CA home at ``home`` lives."""

    def __init__(self, home: Path) -> None:
        self.home = home

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.home / DB_NAME

    @property
    def config_path(self) -> Path:
        """``config.toml``."""
        return self.home / "config.toml"

    @property
    def ca_dir(self) -> Path:
        """CA certificates."""
        return self.home / "ca"

    @property
    def private_dir(self) -> Path:
        """CA keys (0700)."""
        return self.home / "ca" / "private"

    @property
    def certs_dir(self) -> Path:
        """Issued certificates (PEM, derived from the database)."""
        return self.home / "certs"

    @property
    def crl_dir(self) -> Path:
        """CRLs (DER)."""
        return self.home / "crl"

    def cert_path(self, serial: str) -> Path:
        """Where the PEM of certificate ``serial`` lives."""
        return self.certs_dir / f"{serial}.pem"

    def crl_path(self, ca_name: str) -> Path:
        """Where the current CRL (DER) of ``ca_name`` lives."""
        return self.crl_dir / f"{ca_name}.crl"

    def make_dirs(self, *, group_readable: bool = False) -> None:
        """Create the home and its directories with mode 0700 (0750 when ``group_readable``) whatever the
        umask; ``ca/private`` is always 0700.  Existing directories are set to those modes too."""
        mode = GROUP_DIR_MODE if group_readable else DIR_MODE
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, mode)
        for sub in HOME_DIRS:
            (self.home / sub).mkdir(exist_ok=True)
            os.chmod(self.home / sub, mode)
        self.private_dir.mkdir(exist_ok=True)
        os.chmod(self.private_dir, 0o700)

    @property
    def group_readable(self) -> bool:
        """True when the home was made with ``--group-readable`` (its directory is group-readable)."""
        try:
            return bool(os.stat(self.home).st_mode & stat.S_IRGRP)
        except OSError:
            return False

    def ownership_problems(self, *, reader: bool = False) -> list[str]:
        """Why another user could subvert this home: the home directory, the database, ``ca/``,
        ``ca/private`` and the CA keys in it owned by another user or writable by group or others
        (another owner is accepted for a ``reader``: :func:`ownership_problem`).

        Empty when the home is sound.  Every command refuses such a home (exit 5); ``ca check`` lists them.
        """
        problems = [ownership_problem(self.home, "the CA home", reader=reader),
                    ownership_problem(self.db_path, "the database", reader=reader),
                    ownership_problem(self.ca_dir, "the CA directory", reader=reader),
                    ownership_problem(self.private_dir, "the CA key directory", reader=reader)]
        with contextlib.suppress(OSError):
            for key in sorted(self.private_dir.glob("*.key")):
                problems.append(ownership_problem(key, "the CA key", reader=reader))
        return [p for p in problems if p is not None]

    def require_safe_ownership(self, *, reader: bool = False) -> None:
        """Refuse a home another user could subvert (see :meth:`ownership_problems`).

        Raises:
            StateError: naming the first problem (exit 5).
        """
        problems = self.ownership_problems(reader=reader)
        if problems:
            raise StateError(f"refusing to use the CA home: {problems[0]}.",
                             hint="chown it to yourself and chmod go-w it (twcactl ca check lists every problem)")

    def writable(self) -> bool:
        """False when the home's directory cannot be written (a read-only mount, an immutable or
        non-writable directory): the database is then opened read-only."""
        return os.access(self.home, os.W_OK) and (not self.db_path.exists() or os.access(self.db_path, os.W_OK))

    @contextlib.contextmanager
    def files_lock(self, *, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock for derived files (``certs/``, ``crl/``).

        Files are written after their transaction commits, so two writers (or a
        writer and ``ca check``'s repairs) could otherwise interleave and leave an
        older CRL on disk; under this lock each writer reads the newest record first.

        Args:
            timeout: seconds to wait for another process that holds the lock; ``None``
                waits as long as it takes, ``0`` tries once.  Writers after a commit pass
                a short bound and leave their files pending when it passes (issue 13).

        Raises:
            BusyError: the lock was not had within ``timeout`` seconds (exit 75).
            OSError: the lock file cannot be opened (a read-only or full home).
        """
        import fcntl
        import time

        from twcactl.errors import BusyError

        try:
            fd = os.open(self.home / ".files.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            yield  # a read-only home: nobody can write its derived files, so there is nothing to lock against
            return
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + max(timeout, 0.0)
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError as exc:
                        if time.monotonic() >= deadline:
                            raise BusyError("another twcactl holds the lock for derived files.",
                                            hint="the files are left pending; twcactl ca check writes them") from exc
                        time.sleep(0.05)
            yield
        finally:
            os.close(fd)
