"""Certificate signing requests: build, and read what a real tool produced.

``facts`` turns a parsed CSR into the :class:`RequestFacts` the policy
checks; ``describe`` gives everything an operator sees in ``csr show``
("parse CSR", domain.md §1, 002 §3.3.1.2); ``build_csr`` makes a PKCS#10
request (RFC 2986) with any cryptography private key, a token key included;
``RequestSpec`` / ``spec_from_certificate`` / ``parse_template`` describe
what ``csr new`` asks for, from options, an old certificate (renewal,
000 §4.10) or a TOML template.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from twcactl.errors import InputError, UsageError
from twcactl.models import CheckResult, RequestFacts, SignatureState
from twcactl.pkix import names
from twcactl.pkix.keys import PrivateKey, describe_public_key, key_label
from twcactl.pkix.parse_errors import KEY_ERRORS, SIGNATURE_ERRORS, X509_EXTENSION_ERRORS, X509_LOAD_ERRORS
from twcactl.rules.vocab import KEY_TYPES, PROFILES, SSL_PROFILES

__all__ = [
    "REFUSED_RULES",
    "TEMPLATE_KEYS",
    "CsrDescription",
    "RequestSpec",
    "RequestTemplate",
    "build_csr",
    "describe",
    "facts",
    "key_type_like",
    "new_request_check",
    "not_a_request",
    "parse_template",
    "requested_sans",
    "signature_hash_name",
    "signature_state",
    "spec_from_certificate",
    "verify_signature",
]

_WEAK_HASHES = frozenset({"md5", "sha1", "md2", "md4"})

# Signature algorithms with a weak hash, by OID: cryptography does not know
# MD2 and MD4 at all (and then cannot name the hash), so the OID decides.
_WEAK_SIGNATURE_OIDS: dict[str, str] = {
    "1.2.840.113549.1.1.2": "md2",  # md2WithRSAEncryption (RFC 3279 §2.2.1)
    "1.2.840.113549.1.1.3": "md4",  # md4WithRSAEncryption
    "1.2.840.113549.1.1.4": "md5",  # md5WithRSAEncryption
    "1.2.840.113549.1.1.5": "sha1",  # sha1WithRSAEncryption
    "1.3.14.3.2.29": "sha1",  # sha1WithRSASignature (OIW)
    "1.2.840.10040.4.3": "sha1",  # dsa-with-sha1
    "1.2.840.10045.4.1": "sha1",  # ecdsa-with-SHA1
}
_SIGNATURE_NAMES: dict[str, str] = {
    "1.2.840.113549.1.1.2": "md2WithRSAEncryption",
    "1.2.840.113549.1.1.3": "md4WithRSAEncryption",
}

# The order of a new request's subject, most general first, as the manuals'
# forms and OpenSSL write it (domain.md §1, 000 §4.1).
_CANONICAL_ORDER = ("C", "ST", "L", "O", "OU", "CN")


# --------------------------------------------------------------------------
# Reading


def signature_algorithm_name(csr: x509.CertificateSigningRequest) -> str:
    """A readable name of the signature algorithm (``sha256WithRSAEncryption``) or its dotted OID."""
    oid = csr.signature_algorithm_oid
    name = getattr(oid, "_name", "")
    if not name or name == "Unknown OID":
        return _SIGNATURE_NAMES.get(oid.dotted_string, oid.dotted_string)
    return name


def signature_hash_name(csr: x509.CertificateSigningRequest) -> str | None:
    """The signature's hash name (``sha256``, ``sha1``, ``md4``...).

    Returns:
        The hash name; None for algorithms without a separate hash
        (Ed25519, Ed448); the signature algorithm's dotted OID when it is
        unknown (so the policy can refuse it rather than read "no hash").
    """
    dotted = csr.signature_algorithm_oid.dotted_string
    if dotted in _WEAK_SIGNATURE_OIDS:
        return _WEAK_SIGNATURE_OIDS[dotted]
    try:
        algorithm = csr.signature_hash_algorithm
    except KEY_ERRORS:  # UnsupportedAlgorithm, or a malformed parameter block
        return dotted
    return algorithm.name if algorithm is not None else None


def _verify_with_hash(csr: x509.CertificateSigningRequest, algorithm: hashes.HashAlgorithm) -> bool:
    """Check the signature over the request info with ``algorithm``, below cryptography's X.509 policy.

    Raises:
        UnsupportedAlgorithm: a key type or padding we cannot verify with.
    """
    public_key = csr.public_key()
    data, signature = csr.tbs_certrequest_bytes, csr.signature
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            params = csr.signature_algorithm_parameters
            pad = params if isinstance(params, (padding.PKCS1v15, padding.PSS)) else padding.PKCS1v15()
            public_key.verify(signature, data, pad, algorithm)
        elif isinstance(public_key, dsa.DSAPublicKey):
            public_key.verify(signature, data, algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            raise UnsupportedAlgorithm(f"{type(public_key).__name__} with {algorithm.name}")
    except InvalidSignature:
        return False
    return True


def verify_signature(csr: x509.CertificateSigningRequest) -> tuple[SignatureState, str]:
    """The state of the request's self-signature (RFC 2986 §3) and a reason.

    - ``valid``: it verifies with the request's own public key.
    - ``invalid``: it does not verify, or it cannot be verified at all
      (an algorithm neither cryptography nor OpenSSL 3 verifies, such as MD4
      or MD2, or an unreadable key).
    - ``not checked``: the hash is weak (SHA-1, MD5).  cryptography's X.509
      layer refuses such signatures while OpenSSL still verifies them
      (architecture.md, library facts); we check the signature value below
      that layer, so a *tampered* SHA-1 request is ``invalid``, and one
      whose signature matches is ``not checked``: it is not accepted as
      proof of possession.

    Returns:
        ``(state, reason)``, the reason one sentence for ``csr show``.
    """
    hash_name = signature_hash_name(csr)
    algorithm_name = signature_algorithm_name(csr)
    if hash_name in _WEAK_HASHES:
        weak: hashes.HashAlgorithm | None = {"sha1": hashes.SHA1(), "md5": hashes.MD5()}.get(hash_name)
        if weak is None:
            return "invalid", f"{algorithm_name} cannot be verified: {hash_name.upper()} is obsolete"
        try:
            matches = _verify_with_hash(csr, weak)
        except SIGNATURE_ERRORS:
            return "invalid", f"{algorithm_name} with this key cannot be verified"
        if not matches:
            return "invalid", "the signature does not verify with the request's own public key"
        return "not checked", (
            f"{weak.name.upper().replace('SHA1', 'SHA-1')} is a weak hash: the signature matches, "
            "but it does not count as proof of possession"
        )
    try:
        valid = csr.is_signature_valid
    except KEY_ERRORS:
        return "invalid", f"{algorithm_name} cannot be verified (unsupported algorithm or key)"
    if valid:
        return "valid", "the signature verifies with the request's own public key"
    return "invalid", "the signature does not verify with the request's own public key"


def signature_state(csr: x509.CertificateSigningRequest) -> SignatureState:
    """``valid``, ``invalid``, or ``not checked`` for a weak hash (see :func:`verify_signature`)."""
    return verify_signature(csr)[0]


def requested_sans(csr: x509.CertificateSigningRequest) -> list[tuple[str, str]]:
    """The subjectAltName entries requested in the CSR's extensionRequest (empty when none).

    Raises:
        ValueError: the extensionRequest cannot be decoded.
    """
    try:
        ext = csr.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return []
    return names.general_names(ext.value)  # type: ignore[arg-type]


#: What :func:`facts` raises for a CSR that loaded but whose key or
#: extensionRequest cannot be decoded; callers turn it into an InputError.
FACTS_ERRORS: tuple[type[Exception], ...] = (*KEY_ERRORS, *X509_EXTENSION_ERRORS)


def facts(csr: x509.CertificateSigningRequest) -> RequestFacts:
    """What the policy rules need to know about ``csr``.

    Raises:
        FACTS_ERRORS: the public key or the extensionRequest cannot be
            decoded (ValueError, UnsupportedAlgorithm, DuplicateExtension,
            UnsupportedGeneralNameType; callers turn it into an InputError).
    """
    kind, bits, curve = describe_public_key(csr.public_key())
    return RequestFacts(
        subject=names.attributes(csr.subject),
        sans=tuple(requested_sans(csr)),
        key_type=kind,
        key_size=bits,
        key_curve=curve,
        signature_hash=signature_hash_name(csr),
        signature_state=signature_state(csr),
    )


_KEY_USAGE_FLAGS = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    name = getattr(oid, "_name", "")
    return oid.dotted_string if not name or name == "Unknown OID" else name


def _dotted_name(dotted: str) -> str:
    try:
        return _oid_name(x509.ObjectIdentifier(dotted))
    except ValueError:
        return dotted


def _extension_value(value: x509.ExtensionType) -> str | list[str]:
    """A readable form of one requested extension's value (RFC 5280 §4.2 names)."""
    if isinstance(value, x509.KeyUsage):
        flags = [label for attr, label in _KEY_USAGE_FLAGS if getattr(value, attr)]
        if value.key_agreement:
            # encipher_only / decipher_only are defined only with keyAgreement
            flags += [label for attr, label in (("encipher_only", "encipherOnly"), ("decipher_only", "decipherOnly"))
                      if getattr(value, attr)]
        return flags
    if isinstance(value, x509.ExtendedKeyUsage):
        return [_oid_name(oid) for oid in value]
    if isinstance(value, x509.BasicConstraints):
        text = f"CA:{'TRUE' if value.ca else 'FALSE'}"
        return text + (f", pathlen:{value.path_length}" if value.path_length is not None else "")
    if isinstance(value, x509.SubjectAlternativeName):
        return names.sans_json(names.general_names(value))
    if isinstance(value, x509.SubjectKeyIdentifier):
        return value.digest.hex()
    if isinstance(value, x509.UnrecognizedExtension):
        raw = value.value
        return f"hex:{raw[:64].hex()}{'...' if len(raw) > 64 else ''}"
    return f"({type(value).__name__}, not decoded here)"


@dataclass(frozen=True)
class CsrDescription:
    """Everything ``csr show`` reports about a request.

    Attributes:
        subject: ``[{"name", "oid", "value"}]`` in encoded order.
        subject_text: RFC 4514 form (most specific first).
        sans: requested SANs (DNS names bare, others ``type:value``).
        key / key_type / key_size: ``"RSA 2048"``, ``"rsa"``, 2048.
        signature_algorithm: e.g. ``sha256WithRSAEncryption``.
        signature_hash: e.g. ``sha256`` (None for Ed25519).
        signature: ``valid`` / ``invalid`` / ``not checked``.
        signature_reason: one sentence explaining ``signature``.
        extensions: ``[{"oid", "name", "critical", "value"}]`` requested.
        attributes: ``[{"oid", "name", "value" | "error"}]``, Microsoft ones decoded.
        problems: ``[{"field", "reason"}]`` for what could not be decoded.
    """

    subject: list[dict[str, str]]
    subject_text: str
    sans: list[str]
    key: str
    key_type: str
    key_size: int
    signature_algorithm: str
    signature_hash: str | None
    signature: SignatureState
    signature_reason: str = ""
    extensions: list[dict[str, Any]] = field(default_factory=list)
    attributes: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def cn(self) -> str | None:
        """The first CN, or None."""
        return next((a["value"] for a in self.subject if a["name"] == "CN"), None)

    def to_json(self) -> dict[str, Any]:
        """The ``csr show --json`` document (without ``file``)."""
        return {
            "subject": self.subject,
            "subject_text": self.subject_text,
            "cn": self.cn,
            "sans": self.sans,
            "key": {"type": self.key_type, "size": self.key_size, "label": self.key},
            "signature_algorithm": self.signature_algorithm,
            "signature_hash": self.signature_hash,
            "signature": self.signature,
            "signature_reason": self.signature_reason,
            "extensions": self.extensions,
            "attributes": self.attributes,
            "problems": self.problems,
        }


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:200] if text else "") or type(exc).__name__


def describe(csr: x509.CertificateSigningRequest) -> CsrDescription:
    """Decode every field of ``csr`` that an operator needs ("parse CSR", 002 §3.3.1.2).

    Never raises for bad content: a field that cannot be decoded is left
    empty and listed in ``problems`` with the reason.  Requested extensions
    that cryptography refuses (a duplicate, a multi-valued attribute) are
    still listed, read with asn1crypto, without values.
    """
    from twcactl.pkix.ms_attributes import decode_attributes, raw_requested_extensions

    problems: list[dict[str, str]] = []
    try:
        subject = [{"name": a.name, "oid": a.oid, "value": a.value} for a in names.attributes(csr.subject)]
        subject_text = names.rfc4514(csr.subject)
    except X509_LOAD_ERRORS as exc:
        subject, subject_text = [], ""
        problems.append({"field": "subject", "reason": _reason(exc)})
    der = csr.public_bytes(Encoding.DER)
    sans: list[str] = []
    extensions: list[dict[str, Any]] = []
    try:
        for ext in csr.extensions:
            extensions.append({
                "oid": ext.oid.dotted_string, "name": _oid_name(ext.oid), "critical": ext.critical,
                "value": _extension_value(ext.value),
            })
        sans = names.sans_json(requested_sans(csr))
    except X509_EXTENSION_ERRORS as exc:
        problems.append({"field": "extensions", "reason": _reason(exc)})
        # Read again without cryptography, so the operator still sees what was asked for.
        extensions = [{"oid": e["oid"], "name": _dotted_name(e["oid"]), "critical": e["critical"],
                       "value": e["value"]} for e in raw_requested_extensions(der)]
        sans = next((list(e["value"]) for e in extensions if e["oid"] == "2.5.29.17" and e["value"] is not None), [])
    attributes: list[dict[str, Any]] = []
    decoded, problem = decode_attributes(der)
    for attr in decoded:
        attributes.append(attr.to_json())
        if attr.error is not None:
            problems.append({"field": f"attribute {attr.name}", "reason": attr.error})
    if problem is not None:
        problems.append({"field": "attributes", "reason": problem})
    try:
        public_key = csr.public_key()
        kind, bits, _curve = describe_public_key(public_key)
        label = key_label(public_key)
    except KEY_ERRORS as exc:
        kind, bits, label = "unknown", 0, "unknown"
        problems.append({"field": "public key", "reason": _reason(exc)})
    state, reason = verify_signature(csr)
    return CsrDescription(
        subject=subject,
        subject_text=subject_text,
        sans=sans,
        key=label,
        key_type=kind,
        key_size=bits,
        signature_algorithm=signature_algorithm_name(csr),
        signature_hash=signature_hash_name(csr),
        signature=state,
        signature_reason=reason,
        extensions=extensions,
        attributes=attributes,
        problems=problems,
    )


def not_a_request(data: bytes) -> str | None:
    """Why a file found in a batch directory is not a certificate signing request, or None when it is one.

    A file with a CSR PEM block (either header, domain.md §1) counts as a request even when the block is
    damaged (the batch then reports it); a PEM file with only other blocks (a key, a certificate) and a
    file that is neither a PEM CSR nor a DER CSR is not one (issue 17: a stray file is skipped, not a
    failure of the batch).
    """
    import re

    from twcactl.pkix.pem import CSR_LABELS, load_csr

    if b"-----BEGIN" in data:
        labels = {m.decode("ascii", "replace") for m in re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----", data)}
        if labels & CSR_LABELS:
            return None
        return f"not a certificate signing request (it holds {', '.join(sorted(labels)) or 'no'} PEM blocks)"
    try:
        load_csr(data)
    except InputError:
        return "not a certificate signing request (neither a PEM nor a DER CSR)"
    return None


#: The rules of a profile that ``csr new`` will not break without ``--force`` (issue 17): the values no
#: CA accepts as typed (``https://`` in a CN, a lower-case or missing C, non-English text).  The other
#: account-independent rules (a missing ST or L...) stay warnings: the request may be meant for another CA.
REFUSED_RULES: frozenset[str] = frozenset({
    "subject.country", "subject.printable", "cn.syntax", "cn.ip-address", "cn.idn", "cn.label", "cn.length",
    "cn.wildcard", "san.dns",
})


def new_request_check(csr: x509.CertificateSigningRequest, profile: str, *, force: bool = False) -> CheckResult:
    """The account-independent rules of ``profile`` applied to a request ``csr new`` made (domain.md §2).

    Args:
        csr: the new request (nothing written yet).
        profile: a ``PROFILES`` name.
        force: write it anyway; every failed rule is then a warning.

    Returns:
        The check; its failed findings are the warnings to show.

    Raises:
        PolicyError: a rule of :data:`REFUSED_RULES` failed and not ``force`` (exit 1), with every
            finding in ``findings``.
    """
    from twcactl.errors import PolicyError
    from twcactl.policy.checks import check_request

    result = check_request(facts(csr), None, profile)
    refused = [f for f in result.failed if f.rule in REFUSED_RULES]
    if refused and not force:
        first = refused[0]
        reason = first.message.rstrip(".")
        raise PolicyError(f"the request breaks the {profile} profile's rules: {first.rule}: {reason}.",
                          hint="correct the value, or give --force to write it anyway", findings=result.findings)
    return result


# --------------------------------------------------------------------------
# What to ask for


@dataclass(frozen=True)
class RequestSpec:
    """What ``csr new`` puts in a request; every field optional until merged.

    Attributes:
        subject: ``(name, value)`` pairs in order; ``name`` a short name of
            ``names.SHORT_NAMES`` or a dotted OID (attributes kept from an
            old certificate).
        dns_names / emails: requested SANs, in order.
        key_type: a ``keys.KEY_TYPES`` name, or None for the default.
        profile: a ``models.PROFILES`` name, or None for the default.
    """

    subject: tuple[tuple[str, str], ...] = ()
    dns_names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    key_type: str | None = None
    profile: str | None = None

    def override(self, *, subject: Mapping[str, Sequence[str]] | None = None, sans: Sequence[str] | None = None,
                 key_type: str | None = None, profile: str | None = None) -> RequestSpec:
        """This spec with some values replaced (later sources win: certificate < template < options).

        Args:
            subject: short name -> values; each given name replaces every
                value of that name, at the position of its first one
                (or its canonical C, ST, L, O, OU, CN position when absent).
                An empty sequence leaves the name alone.
            sans: replace the requested SANs; read as DNS names for SSL
                profiles, as e-mail addresses otherwise (``profile`` as
                resolved after this call).
            key_type / profile: replace when not None.
        """
        spec = self
        if subject:
            merged = list(spec.subject)
            for short, values in subject.items():
                if values:
                    merged = _replace_attribute(merged, short, list(values))
            spec = replace(spec, subject=tuple(merged))
        if key_type is not None:
            spec = replace(spec, key_type=key_type)
        if profile is not None:
            spec = replace(spec, profile=profile)
        if sans is not None and len(sans) > 0:
            if (spec.profile or "ssl") in SSL_PROFILES:
                spec = replace(spec, dns_names=tuple(sans), emails=())
            else:
                spec = replace(spec, dns_names=(), emails=tuple(sans))
        return spec

    @property
    def cn(self) -> str | None:
        """The first CN, or None."""
        return next((v for n, v in self.subject if n == "CN"), None)

    def check_values(self, *, force: bool | None = None) -> None:
        """Refuse what no CA accepts before any key is generated (domain.md §1): a value that is
        not printable ASCII (the manuals' most common mistake: a Chinese value), a C that is not two
        characters, a value over its RFC 5280 upper bound (a CN over 64 characters), a SAN that is not ASCII.

        Args:
            force: None (card enrolment): every problem is a usage error.  ``csr new`` passes its
                ``--force``: a subject value that is not English is then the profile rule
                ``subject.printable``, refused with exit 1 unless ``force`` (issue 17), because
                cryptography can still encode it (UTF8String) for another CA; a C of another length
                or a non-ASCII SAN cannot be encoded at all, and a control character or padding is never
                meant: those stay usage errors.

        Raises:
            UsageError: naming the attribute (exit 2).
            PolicyError: a subject value that is not English, ``force`` given as False (exit 1), with
                the failed ``subject.printable`` finding.
        """
        from twcactl.policy.checks import printable_problem

        problems = [(short, problem) for short, value in self.subject if (problem := printable_problem(value))]
        # Only text in another script is the overridable rule; a control character or padding never is.
        unencodable = [(short, problem) for short, value in self.subject
                       if (problem := printable_problem(value)) and not _only_not_english(value)]
        if unencodable or (problems and force is None):
            short, problem = (unencodable or problems)[0]
            raise UsageError(f"{short}: {problem}.", hint="every subject value must be English (printable ASCII)")
        from twcactl.rules.subject_lengths import length_problem

        for short, value in self.subject:
            if short == "C" and len(value) != 2:
                raise UsageError("C must be a two-letter ISO 3166 code, such as TW.")
            too_long = length_problem(short, value)
            if too_long:  # issue 28: before any key is made, not cryptography's message after it
                raise UsageError(f"{short} {too_long}.", hint="shorten it; a host name longer than 64 characters "
                                 "goes into a SAN (--san), with a shorter CN")
        for san in (*self.dns_names, *self.emails):
            problem = printable_problem(san)
            if problem:
                raise UsageError(f"SAN: {problem}.", hint="a SAN is an ASCII host name or e-mail address")
        if problems and not force:
            from twcactl.errors import PolicyError
            from twcactl.models import Finding

            message = "; ".join(f"{short} {problem}" for short, problem in problems)
            finding = Finding("subject.printable", False, f"{message}; every field must be English (printable ASCII)")
            raise PolicyError(f"the request breaks the {self.profile or 'ssl'} profile's rules: subject.printable: "
                              f"{problems[0][0]} {problems[0][1]}.",
                              hint="correct the value, or give --force to write it anyway", findings=[finding])


def _only_not_english(value: str) -> bool:
    """True when the one thing wrong with ``value`` is text beyond ASCII (U+00A0 and up): no control
    character (C0, DEL, C1), no padding, not empty."""
    from twcactl.policy.checks import printable_problem

    latin = "".join("x" if ord(ch) > 0x9F else ch for ch in value)
    return latin != value and printable_problem(latin) is None


def subject_options(*, cn: str | None, org: str | None, ous: Sequence[str], locality: str | None,
                    state: str | None, country: str | None) -> dict[str, list[str]]:
    """The subject command-line options as the ``subject`` argument of :meth:`RequestSpec.override`."""
    def one(value: str | None) -> list[str]:
        return [value] if value is not None else []

    return {"C": one(country), "ST": one(state), "L": one(locality), "O": one(org), "OU": list(ous), "CN": one(cn)}


def _replace_attribute(pairs: list[tuple[str, str]], short: str, values: list[str]) -> list[tuple[str, str]]:
    positions = [i for i, (n, _v) in enumerate(pairs) if n == short]
    new = [(short, v) for v in values]
    if positions:
        first = positions[0]
        rest = [p for i, p in enumerate(pairs) if i not in positions]
        return rest[:first] + new + rest[first:]
    rank = _CANONICAL_ORDER.index(short) if short in _CANONICAL_ORDER else len(_CANONICAL_ORDER)
    for i, (n, _v) in enumerate(pairs):
        if n in _CANONICAL_ORDER and _CANONICAL_ORDER.index(n) > rank:
            return pairs[:i] + new + pairs[i:]
    return pairs + new


def spec_from_certificate(cert: x509.Certificate) -> RequestSpec:
    """A renewal request's content from an existing certificate (000 §4.10).

    The subject attributes in order (short names where twcactl has one, the
    dotted OID otherwise), the DNS and e-mail SANs, and the old key's type
    and size (:func:`key_type_like`); the key itself is new.

    Raises:
        InputError: the certificate's SAN extension cannot be decoded (exit 3).
    """
    subject: list[tuple[str, str]] = []
    for attr in names.attributes(cert.subject):
        subject.append((attr.name if attr.name in names.SHORT_NAMES else attr.oid, attr.value))
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    except X509_EXTENSION_ERRORS as exc:
        raise InputError("the certificate's extensions cannot be decoded.") from exc
    dns = tuple(san.get_values_for_type(x509.DNSName)) if san is not None else ()
    emails = tuple(san.get_values_for_type(x509.RFC822Name)) if san is not None else ()
    return RequestSpec(subject=tuple(subject), dns_names=dns, emails=emails,
                       profile=_guess_profile(cert, subject, dns), key_type=key_type_like(cert.public_key()))


def key_type_like(public_key: object) -> str | None:
    """The ``KEY_TYPES`` name of a new key like ``public_key`` (issue 17: a renewal keeps the key's type and size).

    RSA keeps its size (2048, 3072, 4096; a smaller key becomes 2048, a larger one 4096); EC keeps
    P-256 or P-384 (P-521 becomes P-384, the largest curve the profiles allow, domain.md §2).

    Returns:
        A ``KEY_TYPES`` name, or None for another key type (the default then applies).
    """
    kind, bits, _curve = describe_public_key(public_key)
    if kind == "rsa":
        sizes = sorted(size for family, size in KEY_TYPES.values() if family == "rsa")
        size = next((s for s in sizes if s >= bits), sizes[-1])
        return f"rsa{size}"
    if kind == "ec":
        return "ec-p256" if bits <= 256 else "ec-p384"
    return None


_ABSENT_OR_UNDECODABLE: tuple[type[Exception], ...] = (x509.ExtensionNotFound, *X509_EXTENSION_ERRORS)


def _guess_profile(cert: x509.Certificate, subject: Sequence[tuple[str, str]], dns: Sequence[str]) -> str:
    """The profile a certificate was most likely issued under (profiles.py's extensions, read back)."""
    def ext(cls: type[x509.ExtensionType]) -> Any:
        try:
            return cert.extensions.get_extension_for_class(cls).value
        except _ABSENT_OR_UNDECODABLE:  # no evidence either way
            return None

    policies = ext(x509.CertificatePolicies)
    if policies is not None and any(p.policy_identifier.dotted_string == "2.23.140.1.1" for p in policies):
        return "ev"
    cn = next((v for n, v in subject if n == "CN"), "")
    eku = ext(x509.ExtendedKeyUsage)
    server = eku is not None and x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    if server or dns:
        return "wildcard" if cn.startswith("*.") else "ssl"
    usage = ext(x509.KeyUsage)
    if usage is not None and not usage.digital_signature and (usage.key_encipherment or usage.key_agreement):
        return "user-enc"
    return "user-sign"


#: Keys a ``csr new --template`` TOML file may hold, with their types.
TEMPLATE_KEYS: dict[str, type] = {
    "cn": str, "org": str, "ou": list, "locality": str, "state": str, "country": str,
    "san": list, "key_type": str, "profile": str,
}  # fmt: skip
_TEMPLATE_SUBJECT = {"country": "C", "state": "ST", "locality": "L", "org": "O", "ou": "OU", "cn": "CN"}


@dataclass(frozen=True)
class RequestTemplate:
    """The content of a ``csr new --template`` file.

    Attributes:
        subject: short name (C, ST, L, O, OU, CN) -> values, ready for
            :meth:`RequestSpec.override`.
        sans: the ``san`` list, None when the key is absent.
        key_type / profile: None when absent.
    """

    subject: dict[str, list[str]]
    sans: list[str] | None = None
    key_type: str | None = None
    profile: str | None = None


def parse_template(data: bytes, *, name: str = "template") -> RequestTemplate:
    """Read a ``csr new --template`` TOML file.

    Format (every key optional, no others allowed)::

        cn = "www.twca.com.tw"
        org = "TWCA"
        ou = ["SYSTEM"]
        locality = "Taipei"
        state = "Taiwan"
        country = "TW"
        san = ["twca.com.tw"]
        key_type = "rsa2048"      # rsa2048 rsa3072 rsa4096 ec-p256 ec-p384
        profile = "ssl"           # ssl wildcard ev user-sign user-enc

    Raises:
        InputError: not UTF-8 TOML, an unknown key, a value of the wrong
            type, an unknown key type or profile (exit 3).
    """
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{name} is not a TOML file: {_reason(exc)}.") from exc
    unknown = sorted(set(doc) - set(TEMPLATE_KEYS))
    if unknown:
        raise InputError(f"{name}: unknown key(s) {', '.join(repr(k) for k in unknown)}.",
                         hint=f"allowed keys: {', '.join(TEMPLATE_KEYS)}")
    for key, value in doc.items():
        wanted = TEMPLATE_KEYS[key]
        if wanted is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError(f"{name}: {key} must be a list of strings, e.g. {key} = [\"...\"].")
        elif not isinstance(value, str):
            raise InputError(f"{name}: {key} must be a string.")
    key_type = doc.get("key_type")
    if key_type is not None and key_type not in KEY_TYPES:
        raise InputError(f"{name}: key_type must be one of {', '.join(KEY_TYPES)}.")
    profile = doc.get("profile")
    if profile is not None and profile not in PROFILES:
        raise InputError(f"{name}: profile must be one of {', '.join(PROFILES)}.")
    subject: dict[str, list[str]] = {}
    for key, short in _TEMPLATE_SUBJECT.items():
        if key in doc:
            value = doc[key]
            subject[short] = list(value) if isinstance(value, list) else [value]
    return RequestTemplate(subject=subject, sans=list(doc["san"]) if "san" in doc else None,
                           key_type=key_type, profile=profile)


# --------------------------------------------------------------------------
# Building


def subject_name(subject: Sequence[tuple[str, str]]) -> x509.Name:
    """An ``x509.Name`` with one RDN per pair, in order.

    ``name`` is a short name of ``names.SHORT_NAMES`` or a dotted OID.

    Raises:
        ValueError: an unknown short name, or a value cryptography refuses
            (e.g. a C that is not two characters).
    """
    attrs: list[x509.NameAttribute] = []
    for short, value in subject:
        if short in names.SHORT_NAMES:
            oid = names.SHORT_NAMES[short]
        elif short[:1].isdigit():
            oid = x509.ObjectIdentifier(short)
        else:
            raise ValueError(f"unknown attribute {short!r}")
        attrs.append(x509.NameAttribute(oid, value))
    return x509.Name(attrs)


def build_csr(
    key: PrivateKey,
    subject: Sequence[tuple[str, str]],
    *,
    dns_names: Sequence[str] = (),
    emails: Sequence[str] = (),
) -> x509.CertificateSigningRequest:
    """A PKCS#10 request (RFC 2986) signed with ``key`` (SHA-256).

    Args:
        key: any cryptography RSA or EC private key (a token key too).
        subject: ``(name, value)`` pairs in order, e.g. ``[("C", "TW"), ("CN", "www.x.tw")]``;
            a name is a short name or a dotted OID.
        dns_names: dNSName SANs, in order, duplicates (ASCII case-insensitive) dropped.
        emails: rfc822Name SANs, duplicates dropped.

    Raises:
        ValueError: cryptography refuses a value (e.g. a C that is not two characters).
    """
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject_name(subject))
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for dns in dns_names:
        if dns.lower() not in seen:
            seen.add(dns.lower())
            entries.append(x509.DNSName(dns))
    seen_mail: set[str] = set()
    for email in emails:
        if email not in seen_mail:
            seen_mail.add(email)
            entries.append(x509.RFC822Name(email))
    if entries:
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    return builder.sign(key, hashes.SHA256())
