"""The CA home: the :class:`Store` that composes the engine and the repositories.

One object per concern, each in its own module (architecture.md, "The store")::

    store.home.HomeLayout        paths of the home, the lock for derived files (Store inherits it)
    store.sqlite.SqliteEngine    the connection, BEGIN IMMEDIATE transactions, schema, migrations, meta
    store.executor               the tiny SQL executor the repositories share (and its dialect)
    store.accounts / certificates / crls / operators / log / cas    one repository each
    store.interface              the Protocols a second engine (PostgreSQL) implements

Reach a repository as an attribute: ``store.accounts.get(...)``,
``store.certificates.find(...)``, ``store.log.append(...)``.  Every state
change runs inside ``with store.transaction():``, which yields nothing.
All SQL lives in this package; no ``sqlite3`` type leaves it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twcactl.errors import InputError, NotFoundError, StateError
from twcactl.platform_dirs import default_home
from twcactl.rules.settings import NODE_LOCAL_KEYS, Settings, SettingsFileError, settings_problems, store_url_problem
from twcactl.store.accounts import AccountRepository
from twcactl.store.cas import CaRepository
from twcactl.store.certificates import CertificateRepository
from twcactl.store.crls import CrlRepository
from twcactl.store.home import DB_MODE, DB_NAME, GROUP_DB_MODE, HOME_DIRS, HomeLayout
from twcactl.store.interface import Engine
from twcactl.store.keys import INDEXED_META, KeyRepository
from twcactl.store.log import GENESIS_HASH, LogRepository, log_hash
from twcactl.store.operators import OperatorRepository
from twcactl.store.records import CaRecord
from twcactl.store.schema import SCHEMA_VERSION
from twcactl.store.sqlite import SqliteEngine

if TYPE_CHECKING:  # loaded by the commands that use them (issue 18: start-up)
    from twcactl.store.acme import AcmeRepository
    from twcactl.store.notices import NoticeRepository
    from twcactl.store.validations import ValidationRepository

__all__ = ["DB_NAME", "DEFAULT_SETTINGS", "GENESIS_HASH", "SCHEMA_VERSION", "CaRecord", "Store", "default_home",
           "log_hash", "read_settings"]

#: Settings of config.toml and their defaults, derived from :class:`twcactl.rules.settings.Settings`.
DEFAULT_SETTINGS: dict[str, Any] = Settings().to_mapping()

#: The ``meta`` key that holds the CA's shared settings (TOML text) on PostgreSQL (issue 14).
SETTINGS_META = "settings"
#: The ``meta`` key set in a database whose records were moved elsewhere by ``store migrate``.
MOVED_META = "moved_to"

#: The store password: a value, or a callable the store calls only when it connects to PostgreSQL
#: (the CLI resolves ``--store-password SOURCE`` lazily, so an SQLite home never reads it).
PasswordSource = str | Callable[[], str | None] | None


def store_url(home: Path) -> str:
    """The ``store`` setting of the home at ``home``: ``""`` (its own SQLite file) or a ``postgresql://`` URL.

    Raises:
        InputError: config.toml is unreadable or not TOML; ``SettingsFileError`` when ``store`` is not
            a PostgreSQL URL or holds a password (exit 3).
    """
    path = home / "config.toml"
    value = _read_config(path).get("store", "")
    if value == "":
        return ""
    problem = store_url_problem(value) if isinstance(value, str) else "must be a postgresql:// URL"
    if problem is not None:
        raise SettingsFileError(str(path), "store", f"store {problem}")
    return str(value)


def _password(source: PasswordSource) -> str | None:
    return source() if callable(source) else source


def read_settings(path: Path) -> Settings:
    """The settings in ``path`` (a home's config.toml), defaults when it does not exist.

    Raises:
        InputError: unreadable or not TOML; ``SettingsFileError`` for an unknown key or a bad value (exit 3).
    """
    return Settings.from_mapping(_read_config(path), source=str(path))


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} cannot be read: {exc}.") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML: {exc}.") from exc


class Store(HomeLayout):
    """An open CA home.  Use :meth:`open` or :meth:`create`; close with :meth:`close`.

    Attributes:
        home: the home directory (paths: :class:`HomeLayout`).
        engine: the database engine (:class:`twcactl.store.interface.Engine`).
        cas, operators, accounts, certificates, crls, log, keys: the repositories.
    """

    def __init__(self, home: Path, engine: Engine) -> None:
        super().__init__(home)
        self.engine = engine
        #: seconds any wait may take (``--lock-timeout``); writers after a commit wait no longer for the files lock
        self.lock_timeout = 30.0
        self._settings: Settings | None = None
        self.cas = CaRepository(engine, home)
        self.operators = OperatorRepository(engine)
        self.accounts = AccountRepository(engine)
        self.certificates = CertificateRepository(engine, self, self.cas, self._renewal_window_days)
        self.crls = CrlRepository(engine)
        self.log = LogRepository(engine)
        self.keys = KeyRepository(engine)

    @functools.cached_property
    def acme(self) -> AcmeRepository:
        """The ACME server's state (issue 15); its module loads on first use (issue 18)."""
        from twcactl.store.acme import AcmeRepository

        return AcmeRepository(self.engine)

    @functools.cached_property
    def notices(self) -> NoticeRepository:
        """Notices mailed to technical contacts (issue 17); its module loads on first use (issue 18)."""
        from twcactl.store.notices import NoticeRepository

        return NoticeRepository(self.engine)

    @functools.cached_property
    def validations(self) -> ValidationRepository:
        """Domain validations and CAA answers (issue 26)."""
        from twcactl.store.validations import ValidationRepository

        return ValidationRepository(self.engine)

    def _renewal_window_days(self) -> int:
        # the status words' store queries need the window; read from the settings when a query runs
        return self.settings().renewal_window_days

    # ----- opening -----
    @classmethod
    def exists(cls, home: Path) -> bool:
        """True when ``home`` holds a CA database, or is a node whose config.toml names a PostgreSQL store."""
        if (home / DB_NAME).is_file():
            return True
        try:
            return bool(store_url(home))
        except InputError:
            return (home / "config.toml").is_file()  # a node with a bad config: open() names the problem

    @property
    def store_url(self) -> str:
        """``""`` for the home's SQLite file, else the PostgreSQL URL (with no password: config holds none)."""
        return str(getattr(self.engine, "url", ""))

    @property
    def shared(self) -> bool:
        """True when the records live in a database other nodes share (PostgreSQL)."""
        return self.engine.db.dialect.name == "postgresql"

    @classmethod
    def open(cls, home: Path, *, lock_timeout: float = 30.0, strict: bool = True,
             store_password: PasswordSource = None) -> Store:
        """Open an existing CA home, migrating its schema forward when needed.

        The engine is the home's ``store`` setting (issue 14): its SQLite file by default, else
        the PostgreSQL database the URL names (``store_password`` is called only then).  A node
        whose ``ca/*.cer`` files are missing writes them from the database.

        A home whose directory cannot be written (a read-only mount, a snapshot) is opened
        read-only: queries work, every write transaction is refused (exit 5).

        Args:
            strict: refuse a home another user could subvert (:meth:`HomeLayout.ownership_problems`);
                ``ca check`` opens with False and reports those problems as findings instead.

        Raises:
            NotFoundError: no CA home at ``home`` (exit 5).
            InputError: its database file is not a twcactl database (exit 3).
            StateError: the home was written by a newer twcactl, or is owned by another user or
                writable by group or others (exit 5).
            BusyError: locked past ``lock_timeout`` seconds, or the PostgreSQL server cannot be
                reached (exit 75).
        """
        if not cls.exists(home):
            raise NotFoundError(f"no CA home at {home}.", hint="create one with: twcactl ca init (or pass --home DIR)")
        layout = HomeLayout(home)
        read_only = not layout.writable()
        if strict:  # a reader who cannot write the home (an auditor, a snapshot) accepts another owner
            layout.require_safe_ownership(reader=read_only)
        try:
            url = store_url(home)
        except InputError:
            if not (home / DB_NAME).is_file():
                raise
            url = ""  # an SQLite home with a bad config.toml: the commands that read settings report it
        if url:
            return cls._open_shared(home, url, lock_timeout=lock_timeout, password=_password(store_password),
                                    read_only=read_only)
        engine = SqliteEngine.connect(home / DB_NAME, lock_timeout=lock_timeout, read_only=read_only)
        try:
            engine.migrate()
            store = cls(home, engine)
            store.lock_timeout = lock_timeout
            if engine.meta(INDEXED_META) is None and not store.read_only:
                store.keys.index_missing()  # once, after the step to schema version 2
        except BaseException:
            engine.close()
            raise
        return store

    @classmethod
    def _open_shared(cls, home: Path, url: str, *, lock_timeout: float, password: str | None,
                     read_only: bool) -> Store:
        """Open a node's home over the PostgreSQL database at ``url`` (see :meth:`open`)."""
        from twcactl.store.postgres import PostgresEngine, redact

        engine = PostgresEngine.connect(url, password=password, lock_timeout=lock_timeout)
        try:
            if engine.load_meta() is None:  # one round trip answers the opening's meta questions
                raise NotFoundError(f"the database {redact(url)} holds no CA.",
                                    hint="create one with: twcactl ca init --store URL")
            moved = engine.meta(MOVED_META)
            if moved:
                raise StateError(f"the CA's records were moved out of {redact(url)} (to {moved}); "
                                 "this node must not write there.", hint="point this node's store at the new place")
            engine.migrate()
            store = cls(home, engine)
            store.lock_timeout = lock_timeout
            if engine.meta(INDEXED_META) is None:
                store.keys.index_missing()
            if not read_only:
                store.write_node_files()
        except BaseException:
            engine.close()
            raise
        return store

    def write_node_files(self) -> list[str]:
        """Make the home's missing directories (0700) and write each missing ``ca/*.cer`` from the database
        (``cas.der``): on PostgreSQL a node's home holds only caches, rebuilt by any node (issue 14).

        Returns:
            The CA certificate files written, relative to the home.
        """
        for sub in (*HOME_DIRS, "ca/private"):
            path = self.home / sub
            if not path.exists():
                path.mkdir(mode=0o700)
                os.chmod(path, 0o700)
        from twcactl.fsutil import write_file

        written = []
        for ca in self.cas.all():
            if not ca.cert_file.exists() and not ca.cert_file.is_symlink():
                b64 = base64.encodebytes(ca.der).decode("ascii").replace("\n", "")
                body = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
                pem = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
                write_file(ca.cert_file, pem.encode("ascii"), mode=0o644)
                written.append(str(ca.cert_file.relative_to(self.home)))
        return written

    @classmethod
    def create(cls, home: Path, *, lock_timeout: float = 30.0, group_readable: bool = False, url: str = "",
               store_password: PasswordSource = None) -> Store:
        """Create the directories (0700, or 0750 when ``group_readable``, whatever the umask) and an
        empty database (0600, or 0640) with the current schema.

        ``ca init`` and ``ca restore`` call it on a temporary directory that is renamed into place
        (:func:`twcactl.store.home.building_home`).

        With ``url`` (a ``postgresql://`` URL, issue 14) the records go to that empty database
        instead and the home's config.toml names it; ``store_password`` is its password.

        Raises:
            StateError: ``home`` (or the database at ``url``) already holds a CA (exit 5).
            BusyError: locked past ``lock_timeout`` seconds, or the server cannot be reached (exit 75).
        """
        if cls.exists(home):
            raise StateError(f"{home} already holds a CA.", hint="use another --home, or remove it first")
        HomeLayout(home).make_dirs(group_readable=group_readable)
        if url:
            from twcactl.store.postgres import PostgresEngine

            pg = PostgresEngine.connect(url, password=_password(store_password), lock_timeout=lock_timeout)
            try:
                pg.create_schema()
            except BaseException:
                pg.close()
                raise
            store = cls(home, pg)
            store._write_config({"store": url})
            return store
        engine = SqliteEngine.connect(home / DB_NAME, lock_timeout=lock_timeout, create=True,
                                      mode=GROUP_DB_MODE if group_readable else DB_MODE)
        try:
            engine.create_schema()
        except BaseException:
            engine.close()
            raise
        return cls(home, engine)

    @property
    def read_only(self) -> bool:
        """True when the home was opened read-only (its directory cannot be written)."""
        return bool(getattr(self.engine, "read_only", False))

    def schema_version(self) -> int:
        """The database's schema version."""
        return self.engine.schema_version()

    def close(self) -> None:
        """Close the database connection."""
        self.engine.close()

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite), rolled back on any exception; yields nothing.

        Raises:
            BusyError: the write lock was not had within the lock timeout (exit 75).
        """
        return self.engine.transaction()

    # ----- meta and settings -----
    def meta(self, key: str) -> str | None:
        """A value of the ``meta`` table, or None."""
        return self.engine.meta(key)

    def set_meta(self, key: str, value: str) -> None:
        """Set a ``meta`` value (inside a transaction)."""
        self.engine.set_meta(key, value)

    @property
    def ca_key_encrypted(self) -> bool:
        """True when the CA keys need ``--ca-passphrase``."""
        return self.meta("ca_key_encrypted") != "0"

    def settings(self) -> Settings:
        """config.toml as typed :class:`Settings` (defaults for missing keys), read once per open home.

        Raises:
            InputError: config.toml is unreadable or not valid TOML; ``SettingsFileError``
                (an InputError) when it holds an unknown key or a bad value (exit 3).
        """
        if self._settings is None:
            if self.shared:  # the CA's settings from the database, this node's own from config.toml
                local = {k: v for k, v in _read_config(self.config_path).items() if k in NODE_LOCAL_KEYS}
                shared = {k: v for k, v in self._shared_settings().items() if k not in NODE_LOCAL_KEYS}
                self._settings = Settings.from_mapping({**shared, **local}, source=str(self.config_path))
            else:
                self._settings = read_settings(self.config_path)
        return self._settings

    def _shared_settings(self) -> dict[str, Any]:
        """The settings kept in the database (``meta`` ``settings``, TOML text), {} when none."""
        text = self.meta(SETTINGS_META) or ""
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"the settings in the CA database are not valid TOML: {exc}.") from exc

    def settings_problems(self) -> list[str]:
        """Every problem of config.toml (and, on PostgreSQL, of the settings in the database), one
        sentence each (``ca check``); empty when they are sound.

        Never raises for a bad file: that is what it reports.
        """
        try:
            data = _read_config(self.config_path)
        except InputError as exc:
            return [exc.message]
        problems = [f"{self.config_path}: {reason}" for _key, reason in settings_problems(data)]
        if self.shared:
            problems += [f"{self.config_path}: {key} is a setting of the CA, kept in the database on PostgreSQL; "
                         "this line is ignored (set it with ca config)" for key in data if key not in NODE_LOCAL_KEYS]
            try:
                shared = self._shared_settings()
            except InputError as exc:
                return [*problems, exc.message]
            problems += [f"the settings in the database: {reason}" for _key, reason in settings_problems(shared)]
        return problems

    def write_settings(self, settings: Settings) -> None:
        """Write the settings: config.toml atomically (tomli-w; every key, defaults included).
        On PostgreSQL the CA's shared settings go to the database (``meta`` ``settings``, inside the
        caller's transaction when there is one) and config.toml keeps only this node's keys
        (:data:`~twcactl.rules.settings.NODE_LOCAL_KEYS`)."""
        import tomli_w

        mapping: dict[str, Any] = dict(replace(settings, store=self.store_url).to_mapping())
        if self.shared:
            shared = {k: v for k, v in mapping.items() if k not in NODE_LOCAL_KEYS}
            self.set_meta(SETTINGS_META, tomli_w.dumps(shared))
            mapping = {k: v for k, v in mapping.items() if k in NODE_LOCAL_KEYS}
        self._write_config(mapping)

    def _write_config(self, mapping: dict[str, Any]) -> None:
        import tomli_w

        from twcactl.fsutil import write_file

        write_file(self.config_path, tomli_w.dumps(mapping).encode("utf-8"), mode=0o644, force=True)
        self._settings = None
