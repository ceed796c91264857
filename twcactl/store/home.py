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
import os
from collections.abc import Iterator
from pathlib import Path

DB_NAME = "twcactl.db"
#: Sub-directories of a home, made by ``ca init`` and by ``ca restore``.
HOME_DIRS: tuple[str, ...] = ("ca", "certs", "crl")


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

    def make_dirs(self) -> None:
        """Create the home's directories (``ca/private`` with mode 0700); existing ones are kept."""
        from twcactl.fsutil import ensure_private_dir

        self.home.mkdir(parents=True, exist_ok=True)
        for sub in HOME_DIRS:
            (self.home / sub).mkdir(exist_ok=True)
        ensure_private_dir(self.private_dir)

    @contextlib.contextmanager
    def files_lock(self) -> Iterator[None]:
        """Hold the lock for derived files (``certs/``, ``crl/``).

        Files are written after their transaction commits, so two writers (or a
        writer and ``ca check``) could otherwise interleave and leave an older
        CRL on disk; under this lock each writer reads the newest record first.
        """
        import fcntl

        fd = os.open(self.home / ".files.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
