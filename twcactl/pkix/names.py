"""Distinguished names and subjectAltNames as plain values.

Subjects are attacker-controlled text: we keep values exactly as encoded,
and render them through :func:`rfc4514` (cryptography's escaping) only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID

from twcactl.models import SubjectAttribute

#: Short names of the attributes twcactl reads and writes (RFC 4519 / X.520).
SHORT_NAMES: dict[str, x509.ObjectIdentifier] = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "businessCategory": NameOID.BUSINESS_CATEGORY,
    "jurisdictionC": NameOID.JURISDICTION_COUNTRY_NAME,
    "jurisdictionST": NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME,
    "jurisdictionL": NameOID.JURISDICTION_LOCALITY_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
}
_BY_OID: dict[str, str] = {oid.dotted_string: short for short, oid in SHORT_NAMES.items()}


def attributes(name: x509.Name) -> tuple[SubjectAttribute, ...]:
    """The attributes of ``name`` in encoded order, values as text."""
    out: list[SubjectAttribute] = []
    for attr in name:
        value = attr.value
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        dotted = attr.oid.dotted_string
        out.append(SubjectAttribute(name=_BY_OID.get(dotted, dotted), oid=dotted, value=text))
    return tuple(out)


def build_name(pairs: Sequence[tuple[str, str]]) -> x509.Name:
    """An ``x509.Name`` from ``(short_name, value)`` pairs, one RDN each, in order.

    Raises:
        KeyError: an unknown short name (a programming error).
        ValueError: a value cryptography refuses (e.g. C not two letters).
    """
    return x509.Name([x509.NameAttribute(SHORT_NAMES[short], value) for short, value in pairs])


def rfc4514(name: x509.Name) -> str:
    """The RFC 4514 string (most specific first, as OpenSSL -nameopt RFC2253)."""
    return name.rfc4514_string()


def common_name(name: x509.Name) -> str | None:
    """The first CN of ``name`` as text, or None."""
    for attr in name.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attr.value
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def general_names(entries: Iterable[x509.GeneralName]) -> list[tuple[str, str]]:
    """SAN entries as ``(type, value)``: ``dns``, ``ip``, ``email``, ``uri``, ``dirname``, ``other``."""
    out: list[tuple[str, str]] = []
    for gn in entries:
        if isinstance(gn, x509.DNSName):
            out.append(("dns", gn.value))
        elif isinstance(gn, x509.IPAddress):
            out.append(("ip", str(gn.value)))
        elif isinstance(gn, x509.RFC822Name):
            out.append(("email", gn.value))
        elif isinstance(gn, x509.UniformResourceIdentifier):
            out.append(("uri", gn.value))
        elif isinstance(gn, x509.DirectoryName):
            out.append(("dirname", gn.value.rfc4514_string()))
        elif isinstance(gn, x509.OtherName):
            out.append(("other", gn.type_id.dotted_string))
        else:
            out.append(("other", type(gn).__name__))
    return out


def sans_json(sans: Iterable[tuple[str, str]]) -> list[str]:
    """SANs for JSON output: DNS names bare, others as ``type:value``."""
    return [value if kind == "dns" else f"{kind}:{value}" for kind, value in sans]
