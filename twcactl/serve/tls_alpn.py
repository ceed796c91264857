"""tls-alpn-01 validation (RFC 8737): a TLS handshake offering only ALPN ``acme-tls/1`` with the identifier
as SNI, and a check of the self-signed certificate the target answers with.

RFC 8737 §3: the certificate has a subjectAltName with exactly one dNSName, the identifier, and a critical
acmeIdentifier extension (id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31) whose value is the DER OCTET STRING of
SHA-256(key authorization); the server negotiated ``acme-tls/1``.  The handshake runs over memory BIOs so that
the validation's one deadline bounds it as a whole (:class:`twcactl.serve.validation.DeadlineSocket`); the
certificate is parsed with cryptography and the extension value decoded with asn1crypto.
"""

from __future__ import annotations

import hashlib
import ssl

from twcactl.serve.validation import Deadline, DeadlineSocket, Failure, Settings, connect

ALPN = "acme-tls/1"
#: id-pe-acmeIdentifier (RFC 8737 §6.1).
ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31"


def _handshake(sock: DeadlineSocket, name: str) -> ssl.SSLObject:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the certificate is self-signed by design; checked below instead
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 §4
    context.set_alpn_protocols([ALPN])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=name)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            data = sock.recv(16384)
            if not data:
                raise Failure("refused", "the connection closed during the TLS handshake.") from None
            incoming.write(data)
        except ssl.SSLError as exc:
            raise Failure("tls", "the TLS handshake failed.") from exc
    if outgoing.pending:
        sock.sendall(outgoing.read())
    return tls


def certificate_problem(der: bytes, name: str, key_authorization: str) -> str | None:
    """None when ``der`` is a valid RFC 8737 §3 validation certificate for ``name``, else why not.

    Args:
        der: the certificate the target presented (DER).
        name: the identifier (a DNS name, lower case).
        key_authorization: ``token.thumbprint`` (RFC 8555 §8.1).
    """
    from asn1crypto.core import OctetString
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
    except ValueError:
        return "the certificate cannot be parsed."
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the certificate has no subjectAltName."
    names = san.get_values_for_type(x509.DNSName)
    if len(list(san)) != 1 or [n.lower().rstrip(".") for n in names] != [name]:
        return "the subjectAltName is not exactly the identifier."
    try:
        ext = extensions.get_extension_for_oid(x509.ObjectIdentifier(ACME_IDENTIFIER_OID))
    except x509.ExtensionNotFound:
        return "the certificate has no acmeIdentifier extension."
    if not ext.critical or not isinstance(ext.value, x509.UnrecognizedExtension):
        return "the acmeIdentifier extension is not critical."
    try:
        parsed = OctetString.load(ext.value.value, strict=True)
        digest = parsed.native
    except (ValueError, TypeError):
        return "the acmeIdentifier extension is not a DER OCTET STRING."
    if digest != hashlib.sha256(key_authorization.encode("ascii")).digest():
        return "the acmeIdentifier extension does not hold the key authorization's digest."
    return None


def check_tls_alpn01(name: str, key_authorization: str, settings: Settings, deadline: Deadline) -> None:
    """``NAME:--acme-tls-alpn-port`` (443) answers ALPN ``acme-tls/1`` with a valid validation certificate.

    Raises:
        Failure: as :func:`twcactl.serve.validation.connect`; ``tls`` (no handshake, no acme-tls/1),
            ``wrong content`` (the certificate does not prove the key authorization).
    """
    sock = connect(name, settings.tls_alpn_port, settings, deadline)
    try:
        tls = _handshake(sock, name)
        if tls.selected_alpn_protocol() != ALPN:
            raise Failure("tls", f"the server did not negotiate ALPN {ALPN}.")
        der = tls.getpeercert(binary_form=True)
    finally:
        sock.close()
    why = certificate_problem(der or b"", name, key_authorization)
    if why is not None:
        raise Failure("wrong content", why)
