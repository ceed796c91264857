"""PKCS#12 (PFX) files.

``export_pfx`` writes the key, the certificate and its whole chain with
strong protection (domain.md §7): AES-256-CBC with PBKDF2-HMAC-SHA256 for
keys and certificates and a SHA-256 MAC by default; ``legacy`` gives 3DES
with a SHA-1 MAC for old Windows and Java.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from twcactl.errors import PolicyError, UsageError
from twcactl.keys import PrivateKey

MIN_PASSWORD = 6
#: PBKDF2 iterations for new files (OpenSSL 3's default is 2048; NIST SP 800-132 asks for more).
KDF_ROUNDS = 100_000


def key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    """True when ``key`` is the private half of ``cert``'s public key."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.DER, fmt) == cert.public_key().public_bytes(
        serialization.Encoding.DER, fmt
    )


def check_password(password: str) -> None:
    """Refuse a PFX password shorter than 6 characters (cli-contract.md, Secrets).

    Raises:
        UsageError: too short (exit 2).
    """
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"a PFX password must be at least {MIN_PASSWORD} characters.")


def export_pfx(
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    *,
    password: str,
    friendly_name: str | None = None,
    legacy: bool = False,
) -> bytes:
    """The DER of a PFX holding ``key``, ``cert`` and ``chain`` (leaf's issuer first).

    Raises:
        UsageError: password shorter than 6 characters (exit 2).
        PolicyError: the key does not belong to the certificate (exit 1).
    """
    check_password(password)
    if not key_matches(key, cert):
        raise PolicyError("the private key does not match the certificate.")
    builder = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(KDF_ROUNDS)
    if legacy:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1())
    else:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256())
    name = friendly_name.encode("utf-8") if friendly_name else None
    return pkcs12.serialize_key_and_certificates(
        name, key, cert, list(chain) or None, builder.build(password.encode("utf-8"))
    )
