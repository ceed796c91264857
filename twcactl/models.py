"""Plain typed values shared by the core modules.

Frozen dataclasses only: no I/O, no cryptography objects, so that
``policy`` can be tested on hand-made values and the CLI can render them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from twcactl.rules.vocab import PROFILES, SSL_PROFILES

__all__ = ["PROFILES", "SSL_PROFILES", "AccountPolicy", "CheckResult", "Finding", "RequestFacts", "SubjectAttribute"]

SignatureState = Literal["valid", "invalid", "not checked"]


@dataclass(frozen=True)
class SubjectAttribute:
    """One attribute of a distinguished name, in the order it appears.

    ``name`` is the short name (``C``, ``ST``, ``L``, ``O``, ``OU``, ``CN``,
    ``serialNumber``, ...) or the dotted OID when there is none; ``value`` is
    the decoded string exactly as it appears (never normalised).
    """

    name: str
    oid: str
    value: str


@dataclass(frozen=True)
class RequestFacts:
    """What the policy needs to know about a CSR (or a certificate to renew).

    Attributes:
        subject: the subject attributes in order (RDN order of the request).
        sans: the requested subjectAltName entries as ``(type, value)`` with
            type one of ``dns``, ``ip``, ``email``, ``uri``, ``other``.
        key_type: ``rsa``, ``ec``, ``ed25519``, ``ed448``, ``dsa`` or ``unknown``.
        key_size: bits for RSA / DSA / EC (the curve size), else 0.
        key_curve: the EC curve name (``secp256r1``, ``secp384r1``...) or None.
        signature_hash: the hash name of the signature (``sha256``, ``sha1``,
            ``md5``...) or None when the algorithm has no separate hash.
        signature_state: ``valid``, ``invalid`` or ``not checked`` (weak hash
            that cryptography refuses to verify).
    """

    subject: tuple[SubjectAttribute, ...]
    sans: tuple[tuple[str, str], ...] = ()
    key_type: str = "rsa"
    key_size: int = 2048
    key_curve: str | None = None
    signature_hash: str | None = "sha256"
    signature_state: SignatureState = "valid"

    def values(self, name: str) -> list[str]:
        """All values of the attribute ``name`` (short name), in order."""
        return [a.value for a in self.subject if a.name == name]

    def first(self, name: str) -> str | None:
        """The first value of attribute ``name`` or None."""
        vals = self.values(name)
        return vals[0] if vals else None

    @property
    def cn(self) -> str | None:
        """The (first) Common Name, or None."""
        return self.first("CN")


@dataclass(frozen=True)
class AccountPolicy:
    """The part of an account that the subject/CN rules need (domain.md §2).

    Attributes:
        id: the account ID, ``NNNNNNNN-NN``.
        org: the organisation's registered English name (subject O).
        org_aliases: further accepted O values.
        domains: the agreed domains, lower case, no trailing dot.
        jurisdiction_country / jurisdiction_state / jurisdiction_locality: where the
            organisation is registered (EV jurisdiction*; ISO 3166-1 alpha-2 country; state
            and locality None when not given).
        business_category: the EV businessCategory (EV Guidelines §7.1.4.2.3).
    """

    id: str
    org: str
    org_aliases: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    jurisdiction_country: str = "TW"
    jurisdiction_state: str | None = None
    jurisdiction_locality: str | None = None
    business_category: str = "Private Organization"

    @property
    def business_number(self) -> str:
        """The unified business number: the account ID's first 8 digits (domain.md §2)."""
        return self.id.split("-")[0]


@dataclass(frozen=True)
class Finding:
    """The outcome of one policy rule: its contract ID, pass/fail, a reason."""

    rule: str
    ok: bool
    message: str = ""

    def to_json(self) -> dict[str, object]:
        """``{"rule", "ok", "message"}``: one entry of a check document's or a policy error's ``findings``."""
        return {"rule": self.rule, "ok": self.ok, "message": self.message}


@dataclass(frozen=True)
class CheckResult:
    """Every rule applied to one request under one profile, in fixed order."""

    profile: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when every finding passed."""
        return all(f.ok for f in self.findings)

    @property
    def failed(self) -> list[Finding]:
        """The findings that failed, in order."""
        return [f for f in self.findings if not f.ok]

    def to_json(self) -> dict[str, object]:
        """The contract's check document: ``{"ok", "profile", "findings"}``."""
        return {
            "ok": self.ok,
            "profile": self.profile,
            "findings": [f.to_json() for f in self.findings],
        }
