"""One guarded way to read a certificate's extensions, for certificates under verification.

cryptography parses all extensions of a certificate at once, on the first
access to ``.extensions``, and raises for the whole set when one of them is
malformed (an empty extended key usage, an AIA that is not a SEQUENCE, an
IP address of the wrong length in name constraints) or when one appears
twice (RFC 5280 §4.2: "A certificate MUST NOT include more than one
instance of a particular extension").  ``chain verify`` and ``chain build``
read every extension through :func:`extension` (or check a certificate with
:func:`check_extensions`), so such a certificate is a finding
``certificate N: malformed extension X``, never an exception that escapes
as exit 70.

To name the extension at fault, :func:`malformed_extension` takes the
certificate apart with asn1crypto and lets cryptography parse each
extension alone in a copy of the certificate (an unsigned copy, only
parsed, never trusted).

Library warnings (cryptography's ``CryptographyDeprecationWarning`` for a
zero or negative serial number, printed with our source lines) never reach
the user: :func:`quiet_library_warnings` suppresses them, and
:func:`serial_findings` turns what matters into a finding.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twcactl.errors import InputError
from twcactl.models import Finding
from twcactl.pkix.parse_errors import ASN1_ERRORS, X509_EXTENSION_ERRORS, X509_LOAD_ERRORS

ExtensionT = TypeVar("ExtensionT", bound=x509.ExtensionType)

#: the finding's rule ID for an extension that cannot be read (or is repeated)
RULE_MALFORMED = "malformed-extension"
#: the finding's rule ID for a serial number that is zero or negative (RFC 5280 §4.1.2.2)
RULE_SERIAL = "serial-positive"


class MalformedExtensionError(InputError):
    """A certificate's extensions cannot be read: one is malformed or repeated (exit 3 as it is).

    ``chain verify`` turns it into a refusal (exit 1) carrying :attr:`finding`.

    Attributes:
        finding: ``Finding("malformed-extension", False, "certificate N: malformed extension X")``.
        certificate: the certificate at fault.
        oid: the extension's dotted OID, or None when it cannot be told.
        repeated: True when the extension appears more than once.
    """

    def __init__(self, certificate: x509.Certificate, label: str, oid: str | None, repeated: bool) -> None:
        name = _oid_name(x509.ObjectIdentifier(oid)) if oid else "(unknown)"
        what = f"malformed extension {name}" + (" (repeated)" if repeated else "")
        self.finding = Finding(RULE_MALFORMED, False, f"{label}: {what}")
        super().__init__(f"{label}: {what}.", details={
            "findings": [self.finding.to_json()], "extension": {"oid": oid, "repeated": repeated}})
        self.certificate = certificate
        self.oid = oid
        self.repeated = repeated


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    name = getattr(oid, "_name", "Unknown OID")
    return oid.dotted_string if name == "Unknown OID" else f"{name} ({oid.dotted_string})"


def malformed_extension(cert: x509.Certificate) -> tuple[str | None, bool]:
    """``(dotted OID, repeated)`` of the extension that makes ``cert.extensions`` fail; ``(None, False)`` if unknown.

    A repeated extension is found by its OID; a malformed one by parsing
    each extension alone with cryptography, in a copy of the TBS holding
    only that extension (the copy is parsed, never verified).
    """
    from asn1crypto import x509 as asn1_x509

    try:
        parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
        tbs = parsed["tbs_certificate"]
        extensions = list(tbs["extensions"])
        oids = [ext["extn_id"].dotted for ext in extensions]
    except ASN1_ERRORS:
        return None, False
    for index, oid in enumerate(oids):
        if oid in oids[:index]:
            return oid, True
    for ext, oid in zip(extensions, oids):
        try:
            single = tbs.copy()
            single["extensions"] = asn1_x509.Extensions([ext.copy()])
            copy = asn1_x509.Certificate({"tbs_certificate": single,
                                          "signature_algorithm": parsed["signature_algorithm"],
                                          "signature_value": parsed["signature_value"]}).dump()
        except ASN1_ERRORS:
            return oid, False
        try:
            with quiet_library_warnings():
                _ = x509.load_der_x509_certificate(copy).extensions
        except (*X509_LOAD_ERRORS, *X509_EXTENSION_ERRORS):
            return oid, False
    return None, False


def check_extensions(cert: x509.Certificate, label: str = "certificate") -> x509.Extensions:
    """All extensions of ``cert``, parsed; the one guarded read every other read goes through.

    Args:
        cert: a certificate from the input (hostile bytes).
        label: how findings name it: ``certificate N`` (N = its depth in the path, 0 the leaf).

    Raises:
        MalformedExtensionError: an extension is malformed or repeated (RFC 5280 §4.2) (exit 3,
            or a finding of a refusal where the caller makes it one).
    """
    try:
        with quiet_library_warnings():
            return cert.extensions
    except X509_EXTENSION_ERRORS as exc:
        name, repeated = malformed_extension(cert)
        if name is None and isinstance(exc, x509.DuplicateExtension):
            name, repeated = exc.oid.dotted_string, True
        raise MalformedExtensionError(cert, label, name, repeated) from exc


def extension(cert: x509.Certificate, kind: type[ExtensionT], label: str = "certificate") -> ExtensionT | None:
    """The value of ``cert``'s extension of class ``kind``, or None when it has none.

    Raises:
        MalformedExtensionError: any extension of ``cert`` is malformed or repeated (see :func:`check_extensions`).
    """
    try:
        return check_extensions(cert, label).get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def extensions_ok(cert: x509.Certificate) -> bool:
    """True when every extension of ``cert`` parses (nothing repeated)."""
    try:
        with quiet_library_warnings():
            _ = cert.extensions
    except X509_EXTENSION_ERRORS:
        return False
    return True


@contextlib.contextmanager
def quiet_library_warnings() -> Iterator[None]:
    """Suppress the parsing libraries' Python warnings (cryptography's deprecation warnings) inside the block.

    What they warn about is reported as a finding instead (:func:`serial_findings`).
    """
    from cryptography.utils import CryptographyDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


def serial_findings(certs: list[x509.Certificate]) -> list[Finding]:
    """A finding for each certificate whose serial is zero or negative (RFC 5280 §4.1.2.2: MUST be positive).

    RFC 5280 asks certificate users to handle such certificates gracefully,
    so it is reported, not refused.  ``certs[0]`` is "certificate 0".
    """
    found: list[Finding] = []
    for index, cert in enumerate(certs):
        with quiet_library_warnings():
            serial = cert.serial_number
        if serial <= 0:
            word = "zero" if serial == 0 else "negative"
            found.append(Finding(RULE_SERIAL, False, f"certificate {index}: serial number is {word} "
                                                     "(RFC 5280 4.1.2.2 requires a positive one)"))
    return found
