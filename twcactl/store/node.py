"""A node made from its environment (issue 28): an empty or absent home over a PostgreSQL store.

With the records on PostgreSQL (docs/scale-out.md) everything authoritative is in the database: the CA
certificates, the settings, the key URIs of an HSM.  A container or a CI job should therefore need only
``TWCACTL_STORE`` (and the store password as a SOURCE), not hand-made directories and a config.toml: the
first command run against an empty or absent home connects, and only when that worked makes the home a node
(directories 0700, ``ca/*.cer`` from the database, config.toml naming the store, and, for a CA whose keys are
files, copies of the encrypted key files from a directory the environment names).  A failure leaves the home
as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import tomli_w

from twcactl.errors import NotFoundError, StateError, UsageError
from twcactl.fsutil import write_file
from twcactl.rules.settings import store_url_problem
from twcactl.store import PasswordSource, Store, _password
from twcactl.store.home import HomeLayout

__all__ = ["join_node"]


def join_node(home: Path, url: str, *, lock_timeout: float = 30.0, store_password: PasswordSource = None,
              key_dir: Path | None = None, source: str = "TWCACTL_STORE") -> Store:
    """Open ``home`` as a node of the CA whose records are at ``url``, making it one first.

    Args:
        home: an absent or empty directory (a home that exists is opened by :meth:`Store.open` instead).
        url: the ``postgresql://`` URL (no password in it).
        store_password: the store's password, or a callable asked only when connecting.
        key_dir: where the CA's encrypted key files (``NAME.key``) are, for a CA without an HSM; each one
            the database names is copied to ``ca/private`` (0600).  None: no key files (an HSM, or a node
            that only reads).
        source: where ``url`` came from, for messages.

    Returns:
        The open store.

    Raises:
        UsageError: ``url`` is not a PostgreSQL URL or holds a password (exit 2).
        NotFoundError: ``home`` exists and is not empty, or the database holds no CA (exit 5).
        StateError: a key file in ``key_dir`` is missing, or the empty home belongs to another user (exit 5).
        AuthError, BusyError: from connecting (exit 4, 75; ``store.pg_connect``).
    """
    problem = store_url_problem(url)
    if problem is not None:
        raise UsageError(f"{source} {problem}.", hint="e.g. postgresql://twca@db.example.tw/twca")
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise NotFoundError(f"no CA home at {home} (the directory is not empty, so it is not made a node).",
                            hint="point --home at an empty directory, or create a CA with: twcactl ca init")
    created = not home.exists()
    if not created and home.stat().st_uid != os.geteuid():  # an empty directory someone else owns
        raise StateError(f"refusing to make {home} a node: it is owned by uid {home.stat().st_uid}, not by you.",
                         hint="chown it to the user running twcactl, or point --home elsewhere")
    HomeLayout(home).make_dirs()
    try:
        store = Store._open_shared(home, url, lock_timeout=lock_timeout, password=_password(store_password),
                                   read_only=False)
    except BaseException:
        _undo(home, created)
        raise
    try:
        _copy_keys(store, key_dir)
        # config.toml names the store, nothing else: the CA's settings stay in the database
        write_file(store.config_path, tomli_w.dumps({"store": url}).encode("utf-8"), mode=0o644)
    except BaseException:
        store.close()
        _undo(home, created)
        raise
    return store


def _copy_keys(store: Store, key_dir: Path | None) -> None:
    """Copy each CA key file the database names (not a token's URI) from ``key_dir`` into ``ca/private``."""
    if key_dir is None:
        return
    for ca in store.cas.all():
        if ca.key_uri is not None:
            continue
        found = key_dir / ca.key_file.name
        if not found.is_file():
            raise StateError(f"the CA key {found} is missing ({ca.name}).",
                             hint="TWCACTL_CA_KEY_DIR must hold every CA key file of the CA")
        # a secret mount is often 0444 and owned by root: the node's copy is its own, 0600 (still encrypted)
        write_file(ca.key_file, found.read_bytes(), mode=0o600)


def _undo(home: Path, created: bool) -> None:
    """Leave ``home`` as it was: removed when it was made here, else emptied (it was empty)."""
    if created:
        shutil.rmtree(home, ignore_errors=True)
        return
    for child in home.iterdir():
        with contextlib.suppress(OSError):
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
