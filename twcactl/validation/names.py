"""Names a publicly-trusted certificate never holds (BR §7.1.2.7.12, §4.2.2; issue 26).

- :data:`SPECIAL_USE`: special-use and internal suffixes, each with its source (RFC 6761, 6762, 7686, 8375,
  9476, the IANA Special-Use Domain Names registry and ICANN's reservation of ``.internal``).  ``.onion`` is
  allowed by the BR only under Appendix B (EV / onion-specific rules), which twcactl does not implement.
- The top-level domain must be in the IANA root zone: ``iana-tlds.txt`` is a dated copy of IANA's
  ``tlds-alpha-by-domain.txt`` (its first line names its version); the Public Suffix List is not that list
  (it holds private entries such as ``github.io``), so it is not used here.

Rule IDs: ``name.special_use`` and ``name.tld``.
"""

from __future__ import annotations

import functools

from twcactl.models import Finding

#: Special-use / internal suffix -> its source.  A name equal to one of these or under it is refused.
SPECIAL_USE: dict[str, str] = {
    "local": "RFC 6762 (multicast DNS)",
    "internal": "ICANN resolution 2024 (.internal reserved for private use)",
    "onion": "RFC 7686 (Tor onion services; BR Appendix B only)",
    "test": "RFC 6761 §6.2",
    "example": "RFC 6761 §6.5",
    "invalid": "RFC 6761 §6.4",
    "localhost": "RFC 6761 §6.3",
    "home.arpa": "RFC 8375",
    "alt": "RFC 9476",
    "arpa": "RFC 3172 (infrastructure domain; not a subscriber name)",
    "lan": "internal name (not in the IANA root zone; BR §7.1.2.7.12 Internal Name)",
    "corp": "internal name (ICANN name-collision list; BR §7.1.2.7.12 Internal Name)",
    "intranet": "internal name (not in the IANA root zone; BR §7.1.2.7.12 Internal Name)",
    "home": "internal name (ICANN name-collision list; BR §7.1.2.7.12 Internal Name)",
    "private": "internal name (not in the IANA root zone; BR §7.1.2.7.12 Internal Name)",
    "localdomain": "internal name (not in the IANA root zone; BR §7.1.2.7.12 Internal Name)",
}

TLD_FILE = "iana-tlds.txt"


@functools.cache
def _tld_text() -> str:
    from importlib import resources  # loaded when a name is judged (it loads tempfile: issue 18 start-up)

    return resources.files("twcactl.validation").joinpath(TLD_FILE).read_text("ascii")


@functools.cache
def iana_tlds() -> frozenset[str]:
    """The top-level domains of the IANA root zone (lower case, A-labels) from the shipped dated copy."""
    text = _tld_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def tld_list_version() -> str:
    """The version line of the shipped IANA list (``# Version 2026112100, Last Updated ...``)."""
    return _tld_text().splitlines()[0].lstrip("# ").strip()


def special_use_suffix(name: str) -> str | None:
    """The special-use suffix ``name`` is or is under (lower case, no trailing dot, ``*.`` ignored), or None."""
    labels = name.lower().rstrip(".").removeprefix("*.").split(".")
    for i in range(len(labels)):
        suffix = ".".join(labels[i:])
        if suffix in SPECIAL_USE:
            return suffix
    return None


def name_problem(name: str) -> Finding | None:
    """A failed finding when a public-trust certificate may not hold the DNS name ``name``, else None.

    Rules: ``name.special_use`` (a special-use or internal suffix, :data:`SPECIAL_USE`) and ``name.tld``
    (a top-level domain not in the IANA root zone), BR §7.1.2.7.12 / §4.2.2 (no Internal Names).
    """
    suffix = special_use_suffix(name)
    if suffix is not None:
        return Finding("name.special_use", False,
                       f"{name} is under .{suffix}, a special-use or internal name ({SPECIAL_USE[suffix]}); "
                       "a publicly-trusted certificate never holds it (BR 7.1.2.7.12)")
    tld = name.lower().rstrip(".").rsplit(".", 1)[-1]
    if tld not in iana_tlds():
        return Finding("name.tld", False,
                       f"{name}: .{tld} is not a top-level domain of the IANA root zone ({tld_list_version()}); "
                       "an Internal Name is never publicly trusted (BR 7.1.2.7.12, 4.2.2)")
    return None


def rsa_size_problem(bits: int) -> Finding | None:
    """A failed ``key.rsa_size`` finding when an RSA modulus of ``bits`` is under 2048 bits or not a multiple
    of 8 (BR §6.1.5), else None."""
    if bits >= 2048 and bits % 8 == 0:
        return None
    return Finding("key.rsa_size", False,
                   f"an RSA modulus of {bits} bits: a publicly-trusted key is at least 2048 bits and a multiple "
                   "of 8 (BR 6.1.5)")
