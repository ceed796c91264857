"""What every command needs: the global options, the operator, the store."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from twcactl.store import Store


@dataclass
class AppContext:
    """Global options of ``twcactl`` (cli-contract.md, "Global options")."""

    home: Path | None = None
    json: bool = False
    quiet: bool = False
    debug: bool = False
    lock_timeout: float = 30.0
    #: ``--store-password SOURCE`` (issue 14), else ``$TWCACTL_STORE_PASSWORD_SOURCE`` when read
    store_password_source: str | None = None
    _store_password: list[str | None] = field(default_factory=list)

    def store_password(self) -> str | None:
        """The PostgreSQL store's password from ``--store-password SOURCE`` or
        ``$TWCACTL_STORE_PASSWORD_SOURCE``; None when neither is given (libpq's PGPASSFILE /
        PGSERVICEFILE or a password-less login then apply).  Read at most once."""
        if not self._store_password:
            source = self.store_password_source or os.environ.get("TWCACTL_STORE_PASSWORD_SOURCE") or None
            self._store_password.append(None if source is None else read_store_password(source))
        return self._store_password[0]

    def resolved_home(self) -> Path:
        """``--home``, else ``$TWCACTL_HOME``, else the platform's user data directory."""
        if self.home is not None:
            return self.home
        env = os.environ.get("TWCACTL_HOME")
        if env:
            return Path(env)
        from twcactl.store import default_home

        return default_home()

    def open_store(self, *, strict: bool = True) -> Store:
        """Open the CA home (exit 5 when there is none); its store password is read only when the home's
        records are on PostgreSQL.  With ``$TWCACTL_STORE`` set, an empty or absent home becomes a node of
        that database on first use (issue 28; CA key files copied from ``$TWCACTL_CA_KEY_DIR`` if set)."""
        from twcactl.store import Store

        home = self.resolved_home()
        url = os.environ.get("TWCACTL_STORE")
        if url and not Store.exists(home):
            from twcactl.store.node import join_node

            key_dir = os.environ.get("TWCACTL_CA_KEY_DIR")
            return join_node(home, url, lock_timeout=self.lock_timeout, store_password=self.store_password,
                             key_dir=Path(key_dir) if key_dir else None)
        return Store.open(home, lock_timeout=self.lock_timeout, strict=strict, store_password=self.store_password)


def app(ctx: click.Context | None = None) -> AppContext:
    """The AppContext of the running command."""
    ctx = ctx or click.get_current_context()
    obj = ctx.find_object(AppContext)
    if obj is None:
        obj = ctx.ensure_object(AppContext)
    return obj


def current_operator() -> str:
    """``$TWCACTL_OPERATOR``, else the login name: accountability, not authentication."""
    name = os.environ.get("TWCACTL_OPERATOR")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in some containers (KeyError before 3.13, OSError after)
        return f"uid-{os.getuid()}"


def read_store_password(source: str) -> str:
    """The PostgreSQL store's password from ``source`` (env:NAME, file:PATH, fd:N, stdin).

    Raises:
        UsageError: ``pass:TEXT`` (a password on the command line is readable by every user; exit 2).
    """
    from twcactl.cli.secrets import get_secret
    from twcactl.errors import UsageError

    if source.startswith("pass:"):
        raise UsageError("--store-password does not take pass:TEXT (other users can read a command line).",
                         hint="use env:NAME, file:PATH, fd:N or stdin, or libpq's PGPASSFILE")
    return get_secret(source, option="--store-password", what="store password")


def _set_store_password(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        app(ctx).store_password_source = value


def store_password_option(f):  # type: ignore[no-untyped-def]
    """The global ``--store-password SOURCE``: the PostgreSQL store's password (issue 14)."""
    return click.option("--store-password", "store_password", metavar="SOURCE", expose_value=False,
                        callback=_set_store_password,
                        help="Password of a PostgreSQL store: env:NAME, file:PATH, fd:N, stdin "
                             "(default $TWCACTL_STORE_PASSWORD_SOURCE, else libpq's PGPASSFILE).")(f)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        app(ctx).json = True


def json_option(f):  # type: ignore[no-untyped-def]
    """``--json`` on a command: the same as the global flag."""
    return click.option("--json", "json_", is_flag=True, expose_value=False, callback=_set_json, is_eager=True,
                        help="Print exactly one JSON document on stdout.")(f)


def ca_passphrase_option(f):  # type: ignore[no-untyped-def]
    """``--ca-passphrase SOURCE`` for commands that sign with a CA key."""
    return click.option("--ca-passphrase", "ca_passphrase", metavar="SOURCE",
                        help="CA key passphrase: env:NAME, file:PATH, fd:N, stdin, pass:TEXT "
                             "(default $TWCACTL_CA_PASSPHRASE_SOURCE, else prompt).")(f)


def ca_passphrase_provider(source: str | None):  # type: ignore[no-untyped-def]
    """A callable the core calls only when it needs the CA passphrase (after every cheaper check).

    The secret is read at most once per command: a prompt is not repeated and a ``stdin`` or
    ``fd:`` SOURCE is not read twice when one command signs twice (a re-key's renew and revoke).
    """
    from twcactl.cli.secrets import get_secret

    cache: list[str] = []

    def provide() -> str:
        if not cache:
            cache.append(get_secret(source, option="--ca-passphrase", what="CA key passphrase",
                                    env_default="TWCACTL_CA_PASSPHRASE_SOURCE"))
        return cache[0]

    return provide


def subject_options(*, cn_help: str, cn_required: bool, san_help: str):  # type: ignore[no-untyped-def]
    """The subject options of ``csr new`` and ``card enroll``: --cn, --org, --ou, --locality, --state,
    --country and --san (domain.md §1), in one place so both commands read them alike."""
    options = [
        click.option("--cn", required=cn_required, help=cn_help),
        click.option("--org", help="O: the organisation's registered English name."),
        click.option("--ou", "ous", multiple=True, help="OU: organisational unit (repeatable)."),
        click.option("--locality", help="L: city, e.g. Taipei."),
        click.option("--state", help="ST: state or province, e.g. Taiwan."),
        click.option("--country", help="C: ISO 3166 two-letter code, e.g. TW."),
        click.option("--san", "sans", multiple=True, metavar="NAME", help=san_help),
    ]

    def decorate(f):  # type: ignore[no-untyped-def]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def parse_time_option(text: str | None, option: str):  # type: ignore[no-untyped-def]
    """An RFC 3339 time given to ``option`` (None stays None).

    Raises:
        UsageError: not a time (exit 2).
    """
    if text is None:
        return None
    from twcactl.errors import UsageError
    from twcactl.rules.times import parse_rfc3339

    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r} is not a time; use RFC 3339, e.g. 2027-01-01T00:00:00Z.") from exc
