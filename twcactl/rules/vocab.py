"""The CA's vocabularies, one list each (cli-contract.md; domain.md §2-§5, §8).

Plain tuples and sets of words, importable without cryptography, so that the
click layer can offer them as choices and the store can check them without
loading the X.509 stack.
"""

from __future__ import annotations

#: Certificate profiles (cli-contract.md "Profiles"); ``ssl`` is the default.  ``ov`` and ``dv`` (issue 16)
#: name the CA/Browser Forum validation level outright (BR §7.1.2.7: organisation- or domain-validated).
PROFILES: tuple[str, ...] = ("ssl", "wildcard", "ev", "ov", "dv", "user-sign", "user-enc")
#: The server (SSL) profiles whose CN is a host name under an agreed domain (domain.md §2).
SSL_PROFILES: frozenset[str] = frozenset({"ssl", "wildcard", "ev", "ov", "dv"})
#: The CA/Browser Forum validation levels of server profiles in public-trust mode (issue 16; BR §7.1.2.7):
#: ``ssl`` and ``wildcard`` are ``ov`` when the subject names an organisation, else ``dv`` (an ACME order).
PUBLIC_TRUST_LEVELS: tuple[str, ...] = ("dv", "ov", "ev")

#: Key types that ``csr new``, ``ca init`` and ``card enroll`` accept: name -> (family, bits).
KEY_TYPES: dict[str, tuple[str, int]] = {
    "rsa2048": ("rsa", 2048),
    "rsa3072": ("rsa", 3072),
    "rsa4096": ("rsa", 4096),
    "ec-p256": ("ec", 256),
    "ec-p384": ("ec", 384),
}

#: Certificate status words, in precedence order: when several apply, the first wins
#: (cli-contract.md "JSON shapes"; domain.md §5).  ``renewed`` (issue 12): valid, not expired, and a
#: successor has been issued from it; so ``expiring`` and ``valid`` mean "not renewed yet".
STATUS_WORDS: tuple[str, ...] = ("revoked", "suspended", "expired", "renewed", "expiring", "valid")

#: RFC 5280 §5.3.1 reason names accepted by ``cert revoke`` (certificateHold only through ``cert hold``).
REVOKE_REASONS: tuple[str, ...] = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)
#: The RFC 5280 reason a suspension (domain.md §5 暫禁) puts on the CRL.
HOLD_REASON = "certificateHold"

#: Operator roles (domain.md §3: a manager queries and operates, an auditor only queries).
ROLES: tuple[str, ...] = ("manager", "auditor", "ra")
