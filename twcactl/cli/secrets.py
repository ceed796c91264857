"""Secret SOURCEs, the OpenSSL convention sysadmins know (cli-contract.md, "Secrets").

``env:NAME``, ``file:PATH`` (first line, without CR/LF), ``fd:N``, ``stdin``
(one line), ``pass:TEXT`` (allowed, discouraged).  When no SOURCE is given we
prompt on stderr if stdin is a terminal, else fail with exit 4 naming the
option.  Secrets are never echoed, logged or put in error messages.
"""

from __future__ import annotations

import os
import sys

import click

from twcactl.errors import AuthError, InputError, UsageError


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0].rstrip("\r\n")


def read_source(source: str, *, option: str) -> str:
    """The secret named by ``source``.

    Raises:
        UsageError: not a SOURCE form (exit 2).
        AuthError: an empty secret or an unset environment variable (exit 4).
        InputError: a ``file:`` that cannot be read (exit 3).
    """
    kind, sep, rest = source.partition(":")
    if source == "stdin":
        value = _first_line(sys.stdin.readline())
    elif not sep:
        raise UsageError(f"{option} takes a SOURCE: env:NAME, file:PATH, fd:N, stdin or pass:TEXT.")
    elif kind == "env":
        if rest not in os.environ:
            raise AuthError(f"{option}: environment variable {rest} is not set.")
        value = os.environ[rest]
    elif kind == "file":
        try:
            with open(rest, encoding="utf-8") as fh:
                value = _first_line(fh.readline())
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{option}: cannot read {rest}.") from exc
    elif kind == "fd":
        try:
            with os.fdopen(int(rest), encoding="utf-8", closefd=False) as fh:
                value = _first_line(fh.readline())
        except (OSError, ValueError) as exc:
            raise InputError(f"{option}: cannot read file descriptor {rest}.") from exc
    elif kind == "pass":
        value = rest
    else:
        raise UsageError(f"{option} takes a SOURCE: env:NAME, file:PATH, fd:N, stdin or pass:TEXT.")
    if not value:
        raise AuthError(f"{option}: the secret is empty.")
    return value


def get_secret(source: str | None, *, option: str, what: str, new: bool = False, env_default: str | None = None) -> str:
    """Resolve a secret from ``source``, ``$env_default`` (itself a SOURCE) or a prompt.

    Args:
        source: the option's value, or None.
        option: the option's name for messages, e.g. ``--ca-passphrase``.
        what: a noun for the prompt, e.g. ``CA key passphrase``.
        new: ask twice when prompting (a secret being set).
        env_default: an environment variable holding a default SOURCE.

    Raises:
        AuthError: nothing given and no terminal to ask on (exit 4).
    """
    if source is None and env_default and os.environ.get(env_default):
        source = os.environ[env_default]
    if source is not None:
        return read_source(source, option=option)
    if not sys.stdin.isatty():
        hint = f"give it with {option} SOURCE (env:NAME, file:PATH, fd:N, stdin)"
        if env_default:
            hint += f", or set {env_default}"
        raise AuthError(f"the {what} is needed and there is no terminal to ask on.", hint=hint)
    value: str = click.prompt(what[0].upper() + what[1:], hide_input=True, confirmation_prompt=new, err=True)
    if not value:
        raise AuthError(f"the {what} is empty.")
    return value
