"""``--subscriber-password SOURCE`` on the commands that issue (cert issue, cert renew, card enroll; issue 27):
the password read and checked before anything is issued, and kept as a slow hash once the certificates
exist (:mod:`twcactl.authority.subscribers`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from twcactl.cli.context import current_operator

if TYPE_CHECKING:
    from twcactl.store import Store

__all__ = ["keep_subscriber_password", "subscriber_password", "subscriber_password_option"]


def subscriber_password_option(f):  # type: ignore[no-untyped-def]
    """``--subscriber-password SOURCE``."""
    return click.option("--subscriber-password", "subscriber_source", metavar="SOURCE",
                        help="The subscriber's password (env:NAME, file:PATH, fd:N, stdin): with it the holder "
                             "suspends, resumes, revokes or downloads the certificate "
                             "(twcactl subscriber ... --server URL).")(f)


def subscriber_password(source: str | None, *, local: bool = True) -> str | None:
    """The password ``source`` names, checked for length (exit 2 when too short); None without a source.

    Raises:
        UsageError: a password for certificates this CA does not issue (``local`` False: ``--csr-out``).
    """
    if source is None:
        return None
    from twcactl.authority.subscribers import check_new_password
    from twcactl.cli.secrets import get_secret
    from twcactl.errors import UsageError

    if not local:
        raise UsageError("--subscriber-password goes with certificates this CA issues (--account), not --csr-out.")
    password = get_secret(source, option="--subscriber-password", what="subscriber password", new=True)
    check_new_password(password)
    return password


def keep_subscriber_password(store: Store | None, serials: list[str], password: str | None) -> None:
    """Keep ``password``'s hash for each of ``serials`` (nothing without a password, a store or serials)."""
    if password is not None and serials and store is not None:
        from twcactl.authority.subscribers import set_passwords

        set_passwords(store, serials, password, operator=current_operator())
