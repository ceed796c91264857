"""Taiwanese identifiers: national ID, unified business number, account ID.

Pure functions, no I/O.  Used by :mod:`twcactl.policy.checks` (``personal.identifier``)
and by the account commands (domain.md §2 account IDs, §7 personal subjects).

Each check exists twice: ``*_problem`` returns a one-sentence reason (for
policy messages) and ``is_valid_*`` is the boolean form the rest of the code
calls.  Every pattern spells out ``[0-9]`` rather than using ``str.isdigit``,
which also accepts full-width and other Unicode digits.
"""

from __future__ import annotations

import re

__all__ = [
    "business_number_problem",
    "is_valid_account_id",
    "is_valid_business_number",
    "is_valid_national_id",
    "national_id_problem",
    "parse_personal_cn",
]

_BUSINESS_NUMBER_RE = re.compile(r"[0-9]{8}")
_BUSINESS_WEIGHTS = (1, 2, 1, 2, 1, 2, 4, 1)

_NATIONAL_ID_RE = re.compile(r"[A-Z][0-9]{9}")
# The letter stands for the place of first registration; its code is not
# alphabetical because I, O, W ... were added after the original table.
_LETTER_CODES: dict[str, int] = {
    "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17,
    "I": 34, "J": 18, "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23,
    "Q": 24, "R": 25, "S": 26, "T": 27, "U": 28, "V": 29, "W": 32, "X": 30,
    "Y": 31, "Z": 33,
}  # fmt: skip
# 1/2: citizens (male/female); 8/9: the 2021 resident certificate numbers,
# which use the same check digit.
_NATIONAL_ID_SECOND = frozenset("1289")
_NATIONAL_WEIGHTS = (1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1)

_ACCOUNT_ID_RE = re.compile(r"([0-9]{8})-[0-9]{2}")
_PERSONAL_CN_RE = re.compile(r"([A-Z][0-9]{9}|[0-9]{8})-([0-9]{2})-([A-Za-z0-9][A-Za-z0-9 .'-]*)")


def business_number_problem(s: str) -> str | None:
    """Why ``s`` is not a unified business number (統一編號), or None if it is.

    Rule (Ministry of Finance, in force since 2023): multiply the 8 digits by
    the weights 1,2,1,2,1,2,4,1, add the two digits of each product, and the
    sum must be divisible by 5.  This accepts every number valid under the
    older divisible-by-10 rule.  When the 7th digit is 7 its product 28 may
    count as 1 or 0, so the number is also valid when (sum + 1) is divisible
    by 5.

    Args:
        s: the candidate, exactly 8 ASCII digits (no spaces or hyphens).

    Returns:
        None when valid, else a short reason (str) for a policy message.
    """
    if not _BUSINESS_NUMBER_RE.fullmatch(s):
        return "a unified business number is exactly 8 digits"
    total = 0
    for digit, weight in zip(s, _BUSINESS_WEIGHTS, strict=True):
        product = int(digit) * weight
        total += product // 10 + product % 10
    if total % 5 == 0 or (s[6] == "7" and (total + 1) % 5 == 0):
        return None
    return "the check sum of the unified business number does not add up"


def is_valid_business_number(s: str) -> bool:
    """True when ``s`` is a valid 8-digit unified business number (統一編號).

    See :func:`business_number_problem` for the 2023 check rule; e.g.
    ``70759028`` (TWCA, domain.md §2) is valid.
    """
    return business_number_problem(s) is None


def national_id_problem(s: str) -> str | None:
    """Why ``s`` is not a Taiwanese national ID number, or None if it is.

    Format: one upper-case letter A-Z, then 9 digits, the first of which is 1
    or 2 (or 8/9 on new resident certificates).  The letter maps to a 2-digit
    code d1 d2 (A=10 ... see ``_LETTER_CODES``); with the digits n1..n9,
    ``d1*1 + d2*9 + n1*8 + n2*7 + ... + n7*2 + n8*1 + n9*1`` must be divisible
    by 10 (domain.md §7; e.g. ``A123456789``).

    Args:
        s: the candidate, 10 characters.

    Returns:
        None when valid, else a short reason (str).
    """
    if not _NATIONAL_ID_RE.fullmatch(s):
        return "a national ID is one upper-case letter and 9 digits"
    if s[1] not in _NATIONAL_ID_SECOND:
        return "the first digit of a national ID is 1, 2, 8 or 9"
    digits = [int(c) for c in f"{_LETTER_CODES[s[0]]:02d}{s[1:]}"]
    if sum(d * w for d, w in zip(digits, _NATIONAL_WEIGHTS, strict=True)) % 10:
        return "the check digit of the national ID does not match"
    return None


def is_valid_national_id(s: str) -> bool:
    """True when ``s`` is a valid Taiwanese national ID (see :func:`national_id_problem`)."""
    return national_id_problem(s) is None


def is_valid_account_id(s: str) -> bool:
    """True when ``s`` is a Management SSL account ID ``NNNNNNNN-NN``.

    The first part is the organisation's unified business number (checked
    with :func:`is_valid_business_number`), the second a 2-digit sequence
    (domain.md §2, 002 §3.1: ``70759028-01``).
    """
    m = _ACCOUNT_ID_RE.fullmatch(s)
    return m is not None and is_valid_business_number(m.group(1))


def parse_personal_cn(cn: str) -> tuple[str, str, str] | None:
    """Split a personal certificate CN ``ID-NN-NAME`` into its three parts.

    Only the shape is checked: ID is one upper-case letter and 9 digits (a
    national ID) or 8 digits (a unified business number), NN two digits,
    NAME a letter or digit followed by letters, digits, spaces, ``.``, ``'``
    or ``-`` (domain.md §7, 001 §5.2: ``A123456789-63-YIRU``).  Check digits
    are left to :func:`national_id_problem` / :func:`business_number_problem`
    so that the caller can say which part is wrong.

    Returns:
        ``(id, sequence, name)``, e.g. ``("A123456789", "63", "YIRU")``, or
        None when ``cn`` does not have that shape.
    """
    m = _PERSONAL_CN_RE.fullmatch(cn)
    if m is None:
        return None
    return m.group(1), m.group(2), m.group(3)
