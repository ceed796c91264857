"""Certificate profiles: which extensions a leaf of each profile carries.

Profiles of cli-contract.md: ``ssl`` and ``wildcard`` (serverAuth), ``ev``
(serverAuth plus the CA/Browser Forum EV policy OID 2.23.140.1.1),
``user-sign`` (digitalSignature, nonRepudiation; clientAuth,
emailProtection) and ``user-enc`` (keyEncipherment and dataEncipherment
for RSA, keyAgreement for EC; emailProtection).  Key usage always fits the
key type (RFC 5280 §4.2.1.3; never keyEncipherment on an EC key).

``ov`` and ``dv`` (issue 16) carry the CA/Browser Forum reserved policy OIDs
2.23.140.1.2.2 and 2.23.140.1.2.1.  In public-trust mode
(:func:`public_trust_profile`) every server profile follows BR §7.1.2.7:
its reserved policy OID, no OU in the subject (a DV subject is the CN
alone), and keyUsage digitalSignature only (keyEncipherment is "NOT
RECOMMENDED" for RSA by BR §7.1.2.7.11; pkilint warns).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from twcactl.errors import UsageError
from twcactl.rules.public_trust import POLICY_OIDS
from twcactl.rules.vocab import PROFILES, SSL_PROFILES

EV_POLICY_OID = x509.ObjectIdentifier(POLICY_OIDS["ev"])
OV_POLICY_OID = x509.ObjectIdentifier(POLICY_OIDS["ov"])
DV_POLICY_OID = x509.ObjectIdentifier(POLICY_OIDS["dv"])

#: Subject attributes copied from a CSR into a certificate, per profile family.
SSL_SUBJECT_OIDS: tuple[x509.ObjectIdentifier, ...] = (
    NameOID.COUNTRY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.COMMON_NAME,
)
EV_EXTRA_SUBJECT_OIDS: tuple[x509.ObjectIdentifier, ...] = (
    NameOID.SERIAL_NUMBER,
    NameOID.BUSINESS_CATEGORY,
    NameOID.JURISDICTION_COUNTRY_NAME,
)


@dataclass(frozen=True)
class Profile:
    """The fixed parts of a leaf certificate for one profile."""

    name: str
    ekus: tuple[x509.ObjectIdentifier, ...]
    policies: tuple[x509.ObjectIdentifier, ...] = ()
    #: the BR validation level (``dv``, ``ov``, ``ev``) in public-trust mode; None otherwise (issue 16)
    level: str | None = None

    @property
    def public_trust(self) -> bool:
        """True for a server profile built by :func:`public_trust_profile` (BR §7.1.2.7)."""
        return self.level is not None

    @property
    def is_ssl(self) -> bool:
        """True for the server profiles (``ssl``, ``wildcard``, ``ev``)."""
        return self.name in SSL_PROFILES

    def key_usage(self, public_key: object) -> x509.KeyUsage:
        """The keyUsage for ``public_key`` under this profile (RFC 5280 §4.2.1.3)."""
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        is_ec = isinstance(public_key, ec.EllipticCurvePublicKey)
        flags = dict.fromkeys(
            (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        if self.name == "user-sign":
            flags["digital_signature"] = flags["content_commitment"] = True
        elif self.name == "user-enc":
            if is_rsa:
                flags["key_encipherment"] = flags["data_encipherment"] = True
            elif is_ec:
                flags["key_agreement"] = True
        else:
            flags["digital_signature"] = True
            flags["key_encipherment"] = is_rsa and not self.public_trust  # BR §7.1.2.7.11
        return x509.KeyUsage(**flags)

    def subject_oids(self) -> tuple[x509.ObjectIdentifier, ...]:
        """Which CSR subject attributes the certificate keeps, in CSR order (public trust: no OU, and a DV
        subject is the CN alone; BR §7.1.2.7.2-§7.1.2.7.4)."""
        if self.level == "dv":
            return (NameOID.COMMON_NAME,)
        if self.public_trust:
            kept = tuple(oid for oid in SSL_SUBJECT_OIDS if oid != NameOID.ORGANIZATIONAL_UNIT_NAME)
            return kept + EV_EXTRA_SUBJECT_OIDS if self.level == "ev" else kept
        if self.name == "ev":
            return SSL_SUBJECT_OIDS + EV_EXTRA_SUBJECT_OIDS
        return SSL_SUBJECT_OIDS


_PROFILES: dict[str, Profile] = {
    "ssl": Profile("ssl", (ExtendedKeyUsageOID.SERVER_AUTH,)),
    "wildcard": Profile("wildcard", (ExtendedKeyUsageOID.SERVER_AUTH,)),
    "ev": Profile("ev", (ExtendedKeyUsageOID.SERVER_AUTH,), (EV_POLICY_OID,)),
    "ov": Profile("ov", (ExtendedKeyUsageOID.SERVER_AUTH,), (OV_POLICY_OID,)),
    "dv": Profile("dv", (ExtendedKeyUsageOID.SERVER_AUTH,), (DV_POLICY_OID,)),
    "user-sign": Profile("user-sign", (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION)),
    "user-enc": Profile("user-enc", (ExtendedKeyUsageOID.EMAIL_PROTECTION,)),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        UsageError: unknown profile (exit 2).
    """
    try:
        return _PROFILES[name]
    except KeyError as exc:
        raise UsageError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}.") from exc


def public_trust_profile(name: str, *, organisation: bool) -> Profile:
    """The public-trust form of server profile ``name`` (issue 16; BR §7.1.2.7).

    ``ev``, ``ov`` and ``dv`` are their own level; ``ssl`` and ``wildcard`` are ``ov`` when the subject
    names an organisation (``organisation``), else ``dv`` (an ACME order's CSR holds at most a CN).
    The profile carries the level's reserved policy OID (BR §7.1.6.1) and serverAuth only.

    Raises:
        UsageError: ``name`` is not a server profile (exit 2).
    """
    base = get_profile(name)
    if not base.is_ssl:
        raise UsageError(f"{name} is not a server profile.")
    level = name if name in POLICY_OIDS else ("ov" if organisation else "dv")
    return Profile(name, (ExtendedKeyUsageOID.SERVER_AUTH,), (x509.ObjectIdentifier(POLICY_OIDS[level]),), level)
