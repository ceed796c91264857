"""Why a connection to the PostgreSQL store failed, as the contract's exit codes (issue 28).

libpq reports every connection failure as one ``OperationalError`` (psycopg leaves ``sqlstate`` unset
before the session starts), so the kinds are told apart by libpq's and the server's message texts, which
are stable across PostgreSQL releases.  Only a failure that retrying can cure is "busy" (exit 75): a
CI job retries those, so an authentication failure (exit 4) or a malformed URL (exit 2) must never be one.
"""

from __future__ import annotations

from twcactl.errors import AuthError, BusyError, NotFoundError, TwcaError, UsageError

__all__ = ["AUTH_MARKERS", "SYNTAX_MARKERS", "connect_failure", "syntax_failure"]

#: Message fragments of an authentication failure (libpq's ``fe_sendauth``, the server's FATAL 28P01/28000).
AUTH_MARKERS = ("password authentication failed", "no password supplied", "authentication failed",
                "no pg_hba.conf entry", "pg_hba.conf rejects", "password is required")
#: Message fragments of a connection string libpq cannot parse (checked before any network traffic).
SYNTAX_MARKERS = ("invalid integer value", "invalid connection option", "invalid uri", "invalid percent-encoded",
                  "missing \"=\"", "unterminated quoted string", "invalid sslmode", "invalid value for parameter",
                  "invalid port", "invalid ipv6 address")


def syntax_failure(shown_url: str, message: str) -> UsageError:
    """The usage error (exit 2) for a connection string libpq refuses to parse."""
    return UsageError(f"{shown_url} is not a valid PostgreSQL connection URL: {message.strip()}.",
                      hint="e.g. postgresql://twca@db.example.tw/twca (TWCACTL_STORE, --store or config.toml)")


def connect_failure(shown_url: str, message: str) -> TwcaError:
    """The error for a failed connection to ``shown_url`` (the URL without any password) given libpq's
    ``message``.

    Returns:
        AuthError (exit 4) when the server refused the credentials or none were given; UsageError (exit 2)
        when the URL cannot be parsed; NotFoundError (exit 5) when the database does not exist; else
        BusyError (exit 75): the server cannot be reached or refuses connections for now, retry.
    """
    text = message.lower()
    if any(m in text for m in SYNTAX_MARKERS) or "connection is bad: invalid" in text:
        return syntax_failure(shown_url, message)
    unknown_role = "role \"" in text and "does not exist" in text
    if unknown_role or any(m in text for m in AUTH_MARKERS):
        return AuthError(f"the CA database {shown_url} refused the login: {_last_line(message)}.",
                         hint="give the store password as a SOURCE: --store-password or "
                              "$TWCACTL_STORE_PASSWORD_SOURCE (or libpq's PGPASSFILE)")
    if "database \"" in text and "does not exist" in text:
        return NotFoundError(f"the CA database {shown_url} does not exist: {_last_line(message)}.",
                             hint="create it (createdb) or correct the URL")
    return BusyError(f"cannot connect to the CA database {shown_url}.",
                     hint="check that the server runs and is reachable; retry when it is")


def _last_line(message: str) -> str:
    """libpq's own words: the text after its last ``FATAL:`` or ``failed:``, without the socket path."""
    line = message.strip().splitlines()[0] if message.strip() else message
    for marker in ("FATAL:", "failed:"):
        if marker in line:
            line = line.rsplit(marker, 1)[1]
    return line.strip()
