"""Renewal requests signed by the old key: CMS SignedData (PKCS#7) over a new CSR.

This is the form Windows ``certreq -renew`` produces (architecture.md,
library facts): a SignedData whose encapsulated content (id-data) is the DER
of the new PKCS#10 request, signed with the *old* private key, carrying the
old certificate.  A CA that receives it learns that the holder of the
certificate being renewed asked for the new key (domain.md §8: "the request
is signed with the old card certificate").

cryptography builds the SignedData (any private key, a token key too);
cryptography has no CMS verification, so :func:`verify_renewal_request`
reads the structure with asn1crypto and checks the signature with
cryptography, as RFC 5652 §5.4 describes: the signature covers the DER of
the signed attributes re-tagged as a SET OF, and their messageDigest must
equal the digest of the content.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from twcactl.errors import InputError, PolicyError
from twcactl.pkix.keys import PrivateKey
from twcactl.pkix.parse_errors import ASN1_ERRORS, KEY_ERRORS, X509_LOAD_ERRORS
from twcactl.pkix.pem import load_csr, pem_blocks

#: PEM labels a renewal request may carry: OpenSSL writes PKCS7 or CMS; certreq's
#: base64 files often say NEW CERTIFICATE REQUEST around the PKCS#7.
REQUEST_LABELS = frozenset({"PKCS7", "CMS", "NEW CERTIFICATE REQUEST", "CERTIFICATE REQUEST"})

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class RenewalRequest:
    """A verified renewal request.

    Attributes:
        csr: the new PKCS#10 request inside it.
        signer: the certificate whose key signed it (the one being renewed).
        csr_der: the CSR's DER exactly as signed.
        hash_name: the digest algorithm of the signature (``sha256`` ...).
    """

    csr: x509.CertificateSigningRequest
    signer: x509.Certificate
    csr_der: bytes = b""
    hash_name: str = "sha256"


def build_renewal_request(csr: x509.CertificateSigningRequest, old_cert: x509.Certificate,
                          old_key: PrivateKey) -> bytes:
    """A DER CMS SignedData over ``csr`` signed by ``old_key``, carrying ``old_cert`` (SHA-256).

    Args:
        csr: the new request (made with the new key).
        old_cert: the certificate being renewed; its public key must match ``old_key``.
        old_key: any cryptography RSA or EC private key, a token key included.

    Returns:
        The DER of a ContentInfo (RFC 5652 §3) of type signedData with the
        CSR's DER as attached id-data content, signed attributes
        (contentType, signingTime, messageDigest) and ``old_cert`` in
        ``certificates``.

    Raises:
        ValueError: ``old_key`` does not belong to ``old_cert``.
    """
    old_public = old_cert.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    key_public = old_key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    if old_public != key_public:
        raise ValueError("the old key does not belong to the old certificate.")
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(csr.public_bytes(serialization.Encoding.DER))
        .add_signer(old_cert, old_key, hashes.SHA256())
    )
    # Binary: the CSR is bytes, not MIME text; no canonicalisation of line ends.
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])


def request_pem(der: bytes) -> bytes:
    """``der`` as a ``-----BEGIN PKCS7-----`` PEM block (what ``openssl cms -inform PEM`` reads)."""
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN PKCS7-----\n" + b"\n".join(lines) + b"\n-----END PKCS7-----\n"


def _request_der(data: bytes, name: str) -> bytes:
    if b"-----BEGIN" in data:
        blocks = pem_blocks(data, REQUEST_LABELS, name=name)
        if len(blocks) != 1:
            raise InputError(f"{name} holds {'no' if not blocks else len(blocks)} PKCS#7 block(s); expected one.")
        return blocks[0]
    if data[:1] == b"\x30":
        return data
    raise InputError(f"{name} is not a PKCS#7 / CMS renewal request in PEM or DER form.")


def verify_renewal_request(data: bytes, *, name: str = "request") -> RenewalRequest:
    """Parse a renewal request (PEM or DER CMS SignedData) and check its signature.

    Checks (RFC 5652 §5.4, §11.1, §11.2): one SignerInfo; its certificate
    is in the SignedData; signed attributes are present, their contentType
    equals the encapsulated content type and their messageDigest equals the
    digest of the content (a CSR); the signature over the signed attributes
    (DER, as a SET OF) verifies with the signer certificate's public key.
    Whether the signer is the certificate being renewed is the caller's
    check (the CA compares it with its records).

    Returns:
        A :class:`RenewalRequest` with the CSR and the signer certificate.

    Raises:
        InputError: not CMS, not SignedData, no attached CSR, no or several
            signers, signer certificate missing, unsupported algorithms (exit 3).
        PolicyError: the messageDigest does not match or the signature does
            not verify (exit 1).
    """
    from asn1crypto import cms

    der = _request_der(data, name)
    try:
        info = cms.ContentInfo.load(der, strict=True)
        info.native  # noqa: B018 - asn1crypto parses lazily: decode it all here, so damage is an InputError
        if info["content_type"].native != "signed_data":
            raise InputError(f"{name} is CMS {info['content_type'].native}, not signedData.")
        signed = info["content"]
        encap = signed["encap_content_info"]
        content = encap["content"]
        if content.native is None:
            raise InputError(f"{name} does not carry the CSR (detached content).")
        content_bytes = content.native
        if not isinstance(content_bytes, bytes):
            raise InputError(f"{name} carries {encap['content_type'].native} content, not a CSR.")
        signer_infos = list(signed["signer_infos"])
        certificates = [c.chosen for c in (signed["certificates"] or []) if c.name == "certificate"]
    except ASN1_ERRORS as exc:
        raise InputError(f"{name} is not a well-formed CMS SignedData.") from exc
    if len(signer_infos) != 1:
        raise InputError(f"{name} has {len(signer_infos)} signers; a renewal request has exactly one.")
    signer_info = signer_infos[0]
    csr = load_csr(content_bytes, name=f"the CSR inside {name}")

    signer = _find_signer(signer_info, certificates, name)
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise InputError(f"{name} is signed with digest {digest_name}; twcactl accepts SHA-256, SHA-384 or SHA-512.")
    hash_alg = _HASHES[digest_name]()

    signed_attrs = signer_info["signed_attrs"]
    if not signed_attrs:
        raise InputError(f"{name} has no signed attributes; twcactl needs contentType and messageDigest.")
    attr_values: dict[str, list[object]] = {}
    for attr in signed_attrs:
        attr_values.setdefault(attr["type"].native, []).extend(attr["values"])
    digests = attr_values.get("message_digest", [])
    types = attr_values.get("content_type", [])
    if len(digests) != 1 or len(types) != 1:
        raise InputError(f"{name} must have exactly one messageDigest and one contentType signed attribute.")
    if types[0].native != encap["content_type"].native:  # type: ignore[attr-defined]
        raise PolicyError(f"{name}: the signed contentType does not match the content.")
    h = hashes.Hash(hash_alg)
    h.update(content_bytes)
    if digests[0].native != h.finalize():  # type: ignore[attr-defined]
        raise PolicyError(f"{name}: the CSR inside does not match the signed digest; the request was altered.")

    # RFC 5652 §5.4: the signature is over the DER of the attributes with the SET OF tag, not [0] IMPLICIT.
    to_verify = signed_attrs.untag().dump()
    signature = signer_info["signature"].native
    sig_algo = signer_info["signature_algorithm"]
    _verify(signer, signature, to_verify, hash_alg, sig_algo, name)
    return RenewalRequest(csr=csr, signer=signer, csr_der=content_bytes, hash_name=digest_name)


def _find_signer(signer_info: object, certificates: list[object], name: str) -> x509.Certificate:
    sid = signer_info["sid"]  # type: ignore[index]
    for cert in certificates:
        if sid.name == "issuer_and_serial_number":
            match = (cert.issuer == sid.chosen["issuer"]  # type: ignore[attr-defined]
                     and cert.serial_number == sid.chosen["serial_number"].native)  # type: ignore[attr-defined]
        else:
            match = cert.key_identifier == sid.chosen.native  # type: ignore[attr-defined]
        if match:
            try:
                return x509.load_der_x509_certificate(cert.dump())  # type: ignore[attr-defined]
            except X509_LOAD_ERRORS as exc:
                raise InputError(f"{name}: the signer's certificate is malformed.") from exc
    raise InputError(f"{name} does not carry the signer's certificate.")


def _verify(signer: x509.Certificate, signature: bytes, data: bytes, hash_alg: hashes.HashAlgorithm,
            sig_algo: object, name: str) -> None:
    algo_name = sig_algo["algorithm"].native  # type: ignore[index]
    try:
        public = signer.public_key()
    except KEY_ERRORS as exc:
        raise InputError(f"{name}: the signer's certificate holds a key twcactl cannot read.") from exc
    try:
        if isinstance(public, rsa.RSAPublicKey):
            if algo_name == "rsassa_pss":
                params = sig_algo["parameters"]  # type: ignore[index]
                pss_hash = _HASHES.get(params["hash_algorithm"]["algorithm"].native)
                if pss_hash is None:
                    raise InputError(f"{name}: unsupported RSASSA-PSS hash.")
                mgf_hash = _HASHES.get(params["mask_gen_algorithm"]["parameters"]["algorithm"].native, pss_hash)
                pad: padding.AsymmetricPadding = padding.PSS(mgf=padding.MGF1(mgf_hash()),
                                                             salt_length=int(params["salt_length"].native))
                public.verify(signature, data, pad, pss_hash())
            elif algo_name in ("rsa", "rsassa_pkcs1v15", "sha256_rsa", "sha384_rsa", "sha512_rsa"):
                public.verify(signature, data, padding.PKCS1v15(), hash_alg)
            else:
                raise InputError(f"{name}: signature algorithm {algo_name} does not fit an RSA key.")
        elif isinstance(public, ec.EllipticCurvePublicKey):
            if algo_name not in ("ecdsa", "sha256_ecdsa", "sha384_ecdsa", "sha512_ecdsa"):
                raise InputError(f"{name}: signature algorithm {algo_name} does not fit an EC key.")
            public.verify(signature, data, ec.ECDSA(hash_alg))
        else:
            raise InputError(f"{name}: the signer's key type is not supported (RSA or EC only).")
    except InvalidSignature as exc:
        raise PolicyError(f"{name}: the signature does not verify with the certificate it carries.",
                          hint="the request must be signed with the key of the certificate being renewed") from exc
