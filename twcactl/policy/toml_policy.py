"""An account policy from a TOML file, so a sysadmin can check a CSR before sending it.

``csr check --policy FILE.toml`` checks a request against the same
:class:`~twcactl.models.AccountPolicy` that an account in the CA home gives
(domain.md §2), without a CA home.  Parsing is strict, as for every config
of twcactl: unknown keys and wrong types are refused, and the values pass
the same checks as ``account add`` (account ID, printable O, agreed
domains).  Pure: it takes the file's bytes and returns a frozen value.

Format::

    id = "70759028-01"                        # required: NNNNNNNN-NN
    org = "TWCA"                              # required: the registered English name (subject O)
    org_aliases = ["TAIWAN-CA Inc."]          # optional: further accepted O values
    domains = ["twca.com.tw", "mis.twca.com.tw"]   # required, at least one
"""

from __future__ import annotations

import tomllib
from typing import Any

from twcactl.errors import InputError, UsageError
from twcactl.models import AccountPolicy
from twcactl.policy.checks import normalise_domain, printable_problem
from twcactl.rules.identifiers import is_valid_account_id

__all__ = ["POLICY_KEYS", "parse_account_policy"]

#: The keys of a policy file and whether each is required.
POLICY_KEYS: dict[str, bool] = {"id": True, "org": True, "org_aliases": False, "domains": True}


def _show(value: str) -> str:
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
                   for ch in value[:80])


def _string(doc: dict[str, Any], key: str, name: str) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise InputError(f"{name}: {key} must be a string.")
    return value


def _strings(doc: dict[str, Any], key: str, name: str) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{name}: {key} must be a list of strings, e.g. {key} = [\"...\"].")
    return list(value)


def parse_account_policy(data: bytes, *, name: str = "policy file") -> AccountPolicy:
    """The account policy of a TOML file (format in the module docstring).

    The org and aliases get inner whitespace collapsed as ``account add``
    stores them; domains are normalised (lower case, no trailing dot) and
    de-duplicated by :func:`twcactl.policy.checks.normalise_domain`.

    Args:
        data: the file's bytes (UTF-8 TOML).
        name: the file name for messages.

    Returns:
        A frozen :class:`AccountPolicy`.

    Raises:
        InputError: not UTF-8 TOML; an unknown or missing key; a wrong type;
            an invalid account ID; a non-printable org; a bad domain (exit 3).
    """
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{name} is not a TOML file: {exc}.") from exc
    unknown = sorted(set(doc) - set(POLICY_KEYS))
    if unknown:
        raise InputError(f"{name}: unknown key(s) {', '.join(repr(_show(k)) for k in unknown)}.",
                         hint=f"a policy file has the keys {', '.join(POLICY_KEYS)}")
    missing = [k for k, required in POLICY_KEYS.items() if required and k not in doc]
    if missing:
        raise InputError(f"{name}: missing key(s) {', '.join(missing)}.",
                         hint='e.g. id = "70759028-01", org = "TWCA", domains = ["twca.com.tw"]')
    account_id = _string(doc, "id", name)
    if not is_valid_account_id(account_id):
        raise InputError(f"{name}: id {_show(account_id)!r} is not an account ID "
                         "(NNNNNNNN-NN with a valid business number).")
    org = _string(doc, "org", name)
    aliases = _strings(doc, "org_aliases", name)
    for key, value in [("org", org), *(("org_aliases", a) for a in aliases)]:
        problem = printable_problem(value)
        if problem:
            raise InputError(f"{name}: {key} {problem}.")
    domains = _strings(doc, "domains", name)
    if not domains:
        raise InputError(f"{name}: domains is empty; list at least one agreed domain.")
    normalised: list[str] = []
    for domain in domains:
        try:
            normalised.append(normalise_domain(domain))
        except UsageError as exc:
            raise InputError(f"{name}: {exc.message}") from exc
    return AccountPolicy(
        id=account_id,
        org=" ".join(org.split()),
        org_aliases=tuple(dict.fromkeys(" ".join(a.split()) for a in aliases)),
        domains=tuple(dict.fromkeys(normalised)),
    )
