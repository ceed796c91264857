"""Private keys: generation, serialisation and loading, for subscribers and CAs.

Key files are PKCS#8 PEM, encrypted with cryptography's best available
scheme unless the caller explicitly asks for none.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from twcactl.errors import AuthError, InputError, UsageError
from twcactl.rules.vocab import KEY_TYPES

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


_CURVES: dict[int, ec.EllipticCurve] = {256: ec.SECP256R1(), 384: ec.SECP384R1()}


def generate_key(key_type: str) -> PrivateKey:
    """Generate a software key of ``key_type`` (a :data:`KEY_TYPES` name).

    RSA keys use public exponent 65537.

    Raises:
        UsageError: unknown key type (exit 2).
    """
    try:
        family, size = KEY_TYPES[key_type]
    except KeyError as exc:
        raise UsageError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}.") from exc
    if family == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    return ec.generate_private_key(_CURVES[size])


def describe_public_key(public_key: object) -> tuple[str, int, str | None]:
    """``(key_type, bits, curve)`` of a public key: e.g. ``("rsa", 2048, None)``, ``("ec", 256, "secp256r1")``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa", public_key.key_size, None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ec", public_key.curve.key_size, public_key.curve.name
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519", 256, None
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "ed448", 456, None
    from cryptography.hazmat.primitives.asymmetric import dsa

    if isinstance(public_key, dsa.DSAPublicKey):
        return "dsa", public_key.key_size, None
    return "unknown", 0, None


def key_label(public_key: object) -> str:
    """A short human label: ``RSA 2048`` or ``EC P-256``."""
    kind, bits, curve = describe_public_key(public_key)
    if kind == "ec":
        return f"EC P-{bits}" if curve in ("secp256r1", "secp384r1", "secp521r1") else f"EC {curve}"
    return f"{kind.upper()} {bits}" if bits else kind.upper()


def private_key_pem(key: PrivateKey, passphrase: str | None) -> bytes:
    """PKCS#8 PEM of ``key``; encrypted with ``passphrase`` unless it is None."""
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    else:
        encryption = serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def is_encrypted_key(data: bytes) -> bool:
    """True when ``data`` is a PEM private key that needs a passphrase."""
    return b"ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data


def load_private_key(
    data: bytes,
    passphrase: str | None,
    *,
    name: str = "key",
    trusted: bool = False,
) -> PrivateKey:
    """Load a PEM or DER private key (PKCS#8 or traditional).

    Args:
        data: the file's bytes.
        passphrase: the passphrase, or None for an unencrypted key.
        name: the file name for messages.
        trusted: skip RSA key validation (about 35 ms) for keys twcactl wrote
            itself into the CA home (architecture.md, performance notes).

    Raises:
        AuthError: the key is encrypted and the passphrase is wrong or missing (exit 4).
        InputError: not a private key, or an unsupported type (exit 3).
    """
    pw = passphrase.encode("utf-8") if passphrase is not None else None
    loaders = (serialization.load_pem_private_key,) if b"-----BEGIN" in data else (serialization.load_der_private_key,)
    try:
        key = loaders[0](data, pw, unsafe_skip_rsa_key_validation=trusted)
    except TypeError as exc:
        # cryptography says TypeError both for "password missing" and "password given to a plain key"
        if pw is None:
            raise AuthError(f"{name} is encrypted and no passphrase was given.") from exc
        key = loaders[0](data, None, unsafe_skip_rsa_key_validation=trusted)
    except ValueError as exc:
        if is_encrypted_key(data) or (pw is not None and b"-----BEGIN" not in data):
            raise AuthError(f"the passphrase for {name} is wrong.") from exc
        raise InputError(f"{name} is not a readable private key.") from exc
    except UnsupportedAlgorithm as exc:
        raise InputError(f"{name} is not a supported private key.") from exc
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise InputError(f"{name} holds a {type(key).__name__}; only RSA and EC keys are supported.")
    return key
