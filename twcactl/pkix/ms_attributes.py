"""Reading the PKCS#9 attributes of a CSR, the Microsoft ones of IIS requests included.

cryptography exposes a request's attributes only as raw content octets
(and refuses requests whose attributes are multi-valued or empty), so this
module reads them with asn1crypto, which knows the structures of
[MS-WCCE] §2.2.2.7: the OS version (1.3.6.1.4.1.311.13.2.3, an IA5String),
the enrollment CSP (1.3.6.1.4.1.311.13.2.2, SEQUENCE {keySpec INTEGER,
cspName BMPString, signature BIT STRING}) and the client information
(1.3.6.1.4.1.311.21.20) that IIS puts in its requests (domain.md §1).

Read only: twcactl builds every structure with cryptography.  Nothing here
raises for bad content; a value that cannot be decoded becomes an entry with
``"error"`` (the reason) instead of ``"value"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asn1crypto import core
from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509

from twcactl.pkix.parse_errors import ASN1_ERRORS

__all__ = ["ATTRIBUTE_NAMES", "CsrAttribute", "decode_attributes", "raw_requested_extensions"]

OID_OS_VERSION = "1.3.6.1.4.1.311.13.2.3"
OID_ENROLLMENT_CSP = "1.3.6.1.4.1.311.13.2.2"
OID_REQUEST_CLIENT_INFO = "1.3.6.1.4.1.311.21.20"
OID_MS_CERT_EXTENSIONS = "1.3.6.1.4.1.311.2.1.14"
OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
OID_CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"
OID_UNSTRUCTURED_NAME = "1.2.840.113549.1.9.2"
OID_FRIENDLY_NAME = "1.2.840.113549.1.9.20"

#: Readable names of the attributes twcactl knows (RFC 2985 §5.4, MS-WCCE §2.2.2.7).
ATTRIBUTE_NAMES: dict[str, str] = {
    OID_CHALLENGE_PASSWORD: "challengePassword",
    OID_UNSTRUCTURED_NAME: "unstructuredName",
    OID_FRIENDLY_NAME: "friendlyName",
    OID_EXTENSION_REQUEST: "extensionRequest",
    OID_OS_VERSION: "Microsoft OS version",
    OID_ENROLLMENT_CSP: "Microsoft enrollment CSP",
    OID_REQUEST_CLIENT_INFO: "Microsoft request client info",
    OID_MS_CERT_EXTENSIONS: "Microsoft certExtensions",
}

# keySpec of the CSP attribute: which CryptoAPI key slot the request's key lives in.
_KEY_SPECS = {1: "AT_KEYEXCHANGE", 2: "AT_SIGNATURE"}
_RAW_LIMIT = 64  # octets of an undecoded value shown in hex


class _Attribute(core.Sequence):
    # Values as Any, not asn1crypto's CRIAttribute: one malformed Microsoft
    # value must not make the whole attribute list unreadable.
    _fields = [("type", core.ObjectIdentifier), ("values", core.SetOf, {"spec": core.Any})]


class _Attributes(core.SetOf):
    _child_spec = _Attribute


class _RequestInfo(core.Sequence):
    _fields = [
        ("version", core.Any),
        ("subject", core.Any),
        ("subject_pk_info", core.Any),
        ("attributes", _Attributes, {"implicit": 0, "optional": True}),
    ]


class _Request(core.Sequence):
    _fields = [("info", _RequestInfo), ("signature_algorithm", core.Any), ("signature", core.Any)]


@dataclass(frozen=True)
class CsrAttribute:
    """One attribute of the request, in encoded order.

    Attributes:
        oid: dotted OID.
        name: a readable name (``ATTRIBUTE_NAMES``) or the dotted OID.
        value: the decoded value (str, or a dict for structured attributes),
            None when it could not be decoded.
        error: why the value could not be decoded, else None.
    """

    oid: str
    name: str
    value: Any = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"oid", "name", "value"}`` or ``{"oid", "name", "error"}``."""
        doc: dict[str, Any] = {"oid": self.oid, "name": self.name}
        if self.error is not None:
            doc["error"] = self.error
        else:
            doc["value"] = self.value
        return doc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text[:200] or type(exc).__name__


def _hex(data: bytes) -> str:
    shown = data[:_RAW_LIMIT].hex()
    return shown + ("..." if len(data) > _RAW_LIMIT else "")


def _string(value: core.Asn1Value) -> str:
    """The text of an ASN.1 string value; ValueError when it is not a string type."""
    obj = core.load(value.dump())
    if not isinstance(obj, core.AbstractString):
        raise ValueError(f"not a string (universal tag {obj.tag})")
    return str(obj.native)


def _single(values: core.Asn1Value, name: str) -> core.Asn1Value:
    if len(values) != 1:
        raise ValueError(f"{name} has {len(values)} values; expected one")
    return values[0]


def _decode_csp(content: core.Asn1Value) -> dict[str, Any]:
    item = asn1_csr.MicrosoftEnrollmentCSProvider.load(content.dump())
    key_spec = int(item["keyspec"].native)
    contents = item["signature"].contents or b""
    sig_bytes = bytes(contents[1:])  # the first octet counts the unused bits
    return {
        "key_spec": key_spec,
        "key_spec_name": _KEY_SPECS.get(key_spec, "unknown"),
        "csp_name": str(item["cspname"].native),
        "signature": _hex(sig_bytes),
    }


def _decode_client_info(content: core.Asn1Value) -> dict[str, Any]:
    item = asn1_csr.MicrosoftRequestClientInfo.load(content.dump())
    return {
        "client_id": int(item["clientid"].native),
        "machine_name": str(item["machinename"].native),
        "user_name": str(item["username"].native),
        "process_name": str(item["processname"].native),
    }


def _camel(snake: str) -> str:
    """asn1crypto's ``digital_signature`` as RFC 5280 writes it: ``digitalSignature``."""
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_GENERAL_NAME_PREFIX = {"dns_name": "", "rfc822_name": "email:", "ip_address": "ip:",
                        "uniform_resource_identifier": "uri:"}


def _general_name(names: core.Asn1Value, index: int) -> str:
    """One SAN entry as ``csr show`` writes it; an entry asn1crypto cannot parse (an odd otherName) says so."""
    try:
        gn = names[index]
        if gn.name == "other_name":
            return f"other:{gn.chosen['type_id'].dotted}"
        return f"{_GENERAL_NAME_PREFIX.get(gn.name, gn.name + ':')}{gn.native}"
    except ASN1_ERRORS as exc:
        return f"other:(not decoded: {_reason(exc)})"


def _extension_value(ext: asn1_x509.Extension) -> Any:
    """The readable value of the extensions ``csr show`` decodes; None for others or on any error."""
    try:
        kind = ext["extn_id"].native
        value = ext["extn_value"].parsed
        if kind == "key_usage":
            order = ["digital_signature", "non_repudiation", "key_encipherment", "data_encipherment",
                     "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"]
            flags = value.native
            return [_camel(f) for f in order if f in flags]
        if kind == "extended_key_usage":
            return [_camel(oid) if not oid[:1].isdigit() else oid for oid in value.native]
        if kind == "basic_constraints":
            native = value.native
            text = f"CA:{'TRUE' if native['ca'] else 'FALSE'}"
            return text + (f", pathlen:{native['path_len_constraint']}"
                           if native["path_len_constraint"] is not None else "")
        if kind == "subject_alt_name":
            return [_general_name(value, i) for i in range(len(value))]
        if kind == "key_identifier":
            return bytes(value.native).hex()
    except ASN1_ERRORS:
        return None
    return None


def _extension_list(content: core.Asn1Value) -> list[dict[str, Any]]:
    exts = asn1_x509.Extensions.load(content.dump())
    out: list[dict[str, Any]] = []
    for ext in exts:
        out.append({"oid": ext["extn_id"].dotted, "critical": bool(ext["critical"].native),
                    "value": _extension_value(ext)})
    return out


def _decode_one(oid: str, values: core.Asn1Value) -> Any:
    """The value of one attribute; raises ValueError (or asn1crypto's errors) when malformed."""
    name = ATTRIBUTE_NAMES.get(oid, oid)
    if oid == OID_OS_VERSION:
        value = core.load(_single(values, name).dump())
        if not isinstance(value, core.IA5String):  # MS-WCCE §2.2.2.7.1
            raise ValueError(f"{name} is not an IA5String (universal tag {value.tag})")
        return str(value.native)
    if oid == OID_ENROLLMENT_CSP:
        return _decode_csp(_single(values, name))
    if oid == OID_REQUEST_CLIENT_INFO:
        return _decode_client_info(_single(values, name))
    if oid in (OID_EXTENSION_REQUEST, OID_MS_CERT_EXTENSIONS):
        return _extension_list(_single(values, name))
    if oid == OID_CHALLENGE_PASSWORD:
        # Never shown: a challenge password is a secret of the subscriber.
        _single(values, name)
        return "(present, not shown)"
    if oid in (OID_UNSTRUCTURED_NAME, OID_FRIENDLY_NAME):
        return _string(_single(values, name))
    shown: list[str] = []
    for value in values:
        try:
            shown.append(_string(value))
        except ASN1_ERRORS:
            shown.append(f"hex:{_hex(value.dump())}")
    if not shown:
        raise ValueError(f"{name} has no value")
    return shown[0] if len(shown) == 1 else shown


def decode_attributes(der: bytes) -> tuple[list[CsrAttribute], str | None]:
    """Every attribute of the DER-encoded CSR ``der``, in encoded order.

    Args:
        der: the whole CertificationRequest (RFC 2986 §4), DER.

    Returns:
        ``(attributes, problem)``: the attributes, each decoded or carrying
        its own ``error``; ``problem`` is a reason when the attribute list as
        a whole cannot be read (then ``attributes`` holds what was read
        before), else None.  Values: the OS version as a string
        (``"10.0.17763.2"``), the CSP as ``{"key_spec", "key_spec_name",
        "csp_name", "signature"}``, the client info as ``{"client_id",
        "machine_name", "user_name", "process_name"}``, extension requests as
        ``[{"oid", "critical", "value"}]`` (see :func:`raw_requested_extensions`).
        Never raises.
    """
    out: list[CsrAttribute] = []
    try:
        request = _Request.load(der)
        raw = request["info"]["attributes"]
    except ASN1_ERRORS as exc:
        return out, _reason(exc)
    try:
        for attr in raw:
            oid = attr["type"].dotted
            name = ATTRIBUTE_NAMES.get(oid, oid)
            try:
                out.append(CsrAttribute(oid, name, value=_decode_one(oid, attr["values"])))
            except ASN1_ERRORS as exc:
                out.append(CsrAttribute(oid, name, error=_reason(exc)))
    except ASN1_ERRORS as exc:
        return out, _reason(exc)
    return out, None


def raw_requested_extensions(der: bytes) -> list[dict[str, Any]]:
    """The requested extensions as ``[{"oid", "critical", "value"}]``, read without cryptography.

    For requests whose extensionRequest cryptography refuses (a duplicate
    extension, a multi-valued attribute): ``csr show`` still lists what was
    asked for.  ``value`` is decoded for key usage, extended key usage,
    basic constraints, subjectAltName (DNS names bare, others
    ``email:``/``ip:``/``uri:``) and the subject key identifier, else None.
    Never raises; an unreadable list gives ``[]``.
    """
    attributes, _problem = decode_attributes(der)
    for attr in attributes:
        if attr.oid == OID_EXTENSION_REQUEST and isinstance(attr.value, list):
            return list(attr.value)
    return []
