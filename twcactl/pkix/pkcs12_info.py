"""The structure of a PKCS#12 (PFX) file, read with asn1crypto (RFC 7292).

cryptography's ``pkcs12.load_pkcs12`` raises the same error for a wrong
password and a damaged file, keeps only one key and reports nothing about
the protection (architecture.md, "Library facts").  This module reads the
structure first, without the password:

* the MAC (digest algorithm, iterations, salt) and every AuthenticatedSafe
  content with its encryption scheme and iteration count;
* the bags of the unencrypted contents (keys, shrouded keys with their
  scheme, certificates, friendly names, local key IDs);

refuses absurd iteration counts before any key derivation, and then, with
the password, checks the MAC itself (:func:`mac_matches`, the PKCS#12 KDF
of RFC 7292 Appendix B.2) so a wrong password (exit 4) is told apart from a
damaged file (exit 3).  :func:`decrypt_containers` opens the encrypted
contents that cryptography's primitives can decrypt (PBES2 with AES or
3DES, PKCS#12 PBES1 with 3DES or RC2-128) to list their bags too; RC2-40
and RC4 contents stay closed (``bags is None``).

Nothing here builds ASN.1: writing PFX files is cryptography's job
(``pfx.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass, replace
from typing import Any

from twcactl.errors import InputError
from twcactl.pkix.parse_errors import ASN1_ERRORS, KEY_ERRORS

#: Iteration counts above this are refused before any work (a hostile file could ask for years of hashing).
MAX_ITERATIONS = 10_000_000
#: More bags than this is not a key store but an attack on our memory.
MAX_BAGS = 10_000
#: safeContentsBag nesting deeper than this is refused.
MAX_NESTING = 4

_DIGESTS: dict[str, str] = {
    "sha1": "sha1", "sha224": "sha224", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512",
    "sha512_224": "sha512_224", "sha512_256": "sha512_256",
}

#: OpenSSL's names of the PKCS#12 PBES1 schemes (what ``openssl pkcs12 -info`` prints).
_PBES1_NAMES: dict[str, str] = {
    "pkcs12_sha1_tripledes_3key": "pbeWithSHA1And3-KeyTripleDES-CBC",
    "pkcs12_sha1_tripledes_2key": "pbeWithSHA1And2-KeyTripleDES-CBC",
    "pkcs12_sha1_rc2_128": "pbeWithSHA1And128BitRC2-CBC",
    "pkcs12_sha1_rc2_40": "pbeWithSHA1And40BitRC2-CBC",
    "pkcs12_sha1_rc4_128": "pbeWithSHA1And128BitRC4",
    "pkcs12_sha1_rc4_40": "pbeWithSHA1And40BitRC4",
}


@dataclass(frozen=True)
class Protection:
    """How a content or a key is encrypted.

    Attributes:
        scheme: a readable name, OpenSSL's where it has one: ``"none"``,
            ``"pbeWithSHA1And3-KeyTripleDES-CBC"``,
            ``"PBES2 PBKDF2-HMAC-SHA256 AES-256-CBC"``...
        iterations: the KDF iteration count, None when not encrypted.
        legacy: True for the PKCS#12 PBES1 and PKCS#5 v1 schemes (3DES, RC2,
            RC4, DES): what old Windows and Java need, weak by today's measure.
    """

    scheme: str
    iterations: int | None = None
    legacy: bool = False

    def to_json(self) -> dict[str, Any]:
        """``{"scheme", "iterations", "legacy"}``."""
        return {"scheme": self.scheme, "iterations": self.iterations, "legacy": self.legacy}


NO_PROTECTION = Protection("none")


@dataclass(frozen=True)
class MacInfo:
    """The integrity MAC (RFC 7292 §4): HMAC with the named digest, key from the PKCS#12 KDF."""

    algorithm: str
    iterations: int
    salt_length: int

    def to_json(self) -> dict[str, Any]:
        """``{"algorithm", "iterations", "salt_length"}``."""
        return {"algorithm": self.algorithm, "iterations": self.iterations, "salt_length": self.salt_length}


@dataclass(frozen=True)
class Bag:
    """One SafeBag (RFC 7292 §4.2).

    Attributes:
        kind: ``key`` (an unencrypted keyBag), ``shrouded_key``,
            ``certificate``, ``crl``, ``secret`` or ``other``.
        friendly_name: the friendlyName attribute (PKCS#9), or None.
        local_key_id: the localKeyId attribute as lowercase hex, or None.
        protection: a shrouded key's encryption; None for other bags.
        der: an X.509 certificate's DER (certificate bags), else None.
        container: index of the AuthenticatedSafe content that holds it.
    """

    kind: str
    friendly_name: str | None
    local_key_id: str | None
    protection: Protection | None
    der: bytes | None
    container: int


@dataclass(frozen=True)
class Container:
    """One ContentInfo of the AuthenticatedSafe.

    Attributes:
        kind: ``data`` (plain), ``encrypted`` (password-based EncryptedData)
            or ``enveloped`` (public-key EnvelopedData, which we cannot open).
        protection: its encryption (``none`` for data).
        bags: its bags, or None while encrypted and not (or not yet) opened.
    """

    kind: str
    protection: Protection
    bags: tuple[Bag, ...] | None
    _algorithm: Any = None  # asn1crypto EncryptionAlgorithm, for decrypt_containers
    _ciphertext: bytes = b""


@dataclass(frozen=True)
class PfxStructure:
    """What a PFX file holds, as can be seen without the password.

    Attributes:
        mac: the MAC, or None when the file has no integrity MAC.
        containers: the AuthenticatedSafe contents, in file order.
    """

    mac: MacInfo | None
    containers: tuple[Container, ...]
    _auth_safe: bytes = b""
    _mac_salt: bytes = b""
    _mac_digest: bytes = b""

    @property
    def bags(self) -> list[Bag]:
        """Every bag seen so far (containers not opened contribute none)."""
        return [bag for c in self.containers for bag in (c.bags or ())]

    @property
    def certificate_protection(self) -> Protection:
        """The encryption of the contents that hold certificates (the first encrypted one, else none)."""
        for c in self.containers:
            if c.kind != "data" and (c.bags is None or any(b.kind == "certificate" for b in c.bags)):
                return c.protection
        return NO_PROTECTION

    @property
    def key_protection(self) -> Protection | None:
        """The encryption of the first key: its shroud, else its container's; None when no key is seen."""
        for c in self.containers:
            for b in c.bags or ():
                if b.kind == "shrouded_key" and b.protection is not None:
                    return b.protection
                if b.kind == "key":
                    return c.protection
        return None

    @property
    def key_count(self) -> int:
        """Keys seen (plain and shrouded)."""
        return sum(1 for b in self.bags if b.kind in ("key", "shrouded_key"))

    def to_json(self) -> dict[str, Any]:
        """``{"mac", "certificate_encryption", "key_encryption", "containers": [...]}``."""
        key_prot = self.key_protection
        return {
            "mac": self.mac.to_json() if self.mac else None,
            "certificate_encryption": self.certificate_protection.to_json(),
            "key_encryption": key_prot.to_json() if key_prot else None,
            "containers": [
                {"kind": c.kind, "encryption": c.protection.to_json(),
                 "bags": None if c.bags is None else [b.kind for b in c.bags]}
                for c in self.containers
            ],
        }


# ---------------------------------------------------------------- structure


def _bad(name: str, why: str) -> InputError:
    return InputError(f"{name} is not a well-formed PKCS#12 file: {why}.")


def _check_iterations(count: object, *, name: str, where: str) -> int:
    if not isinstance(count, int) or count < 1:
        raise _bad(name, f"the {where} iteration count is {count!r}")
    if count > MAX_ITERATIONS:
        raise InputError(
            f"{name}: the {where} asks for {count:,} iterations (more than {MAX_ITERATIONS:,}); refusing to try.",
            hint="a file from a real tool uses a few thousand to a few hundred thousand",
        )
    return count


def describe_algorithm(algorithm: Any, *, name: str, where: str) -> Protection:
    """The :class:`Protection` of an asn1crypto ``EncryptionAlgorithm``, iteration count capped.

    Raises:
        InputError: unknown or malformed parameters, or an iteration count
            below 1 or above :data:`MAX_ITERATIONS` (exit 3).
    """
    try:
        algo = algorithm["algorithm"].native
        if algo == "pbes2":
            kdf = algorithm.kdf
            if kdf != "pbkdf2":
                raise _bad(name, f"the {where} uses the unsupported key derivation {kdf}")
            iterations = _check_iterations(algorithm.kdf_iterations, name=name, where=where)
            prf = str(algorithm.kdf_hmac).replace("_", "-").upper()
            enc = algorithm["parameters"]["encryption_scheme"]["algorithm"].native
            cipher = {"aes128_cbc": "AES-128-CBC", "aes192_cbc": "AES-192-CBC", "aes256_cbc": "AES-256-CBC",
                      "tripledes_3key": "DES-EDE3-CBC", "des": "DES-CBC", "rc2": "RC2-CBC"}.get(enc, str(enc))
            return Protection(f"PBES2 PBKDF2-HMAC-{prf} {cipher}", iterations, legacy=not cipher.startswith("AES"))
        if algo in _PBES1_NAMES:
            iterations = _check_iterations(algorithm.kdf_iterations, name=name, where=where)
            return Protection(_PBES1_NAMES[algo], iterations, legacy=True)
        if isinstance(algo, str) and algo.startswith("pbes1_"):
            iterations = _check_iterations(algorithm.kdf_iterations, name=name, where=where)
            return Protection(algo, iterations, legacy=True)
    except ASN1_ERRORS as exc:
        raise _bad(name, f"the {where} parameters cannot be read") from exc
    raise _bad(name, f"the {where} uses the unknown scheme {algo}")


def _attributes(bag: Any) -> tuple[str | None, str | None]:
    friendly: str | None = None
    local_id: str | None = None
    attrs = bag["bag_attributes"]
    if attrs.native is None:
        return None, None
    for attr in attrs:
        kind = attr["type"].native
        values = list(attr["values"])
        if not values:
            continue
        if kind == "friendly_name":
            friendly = str(values[0].native)
        elif kind == "local_key_id":
            local_id = bytes(values[0].native).hex()
    return friendly, local_id


def _parse_bags(content: bytes, *, name: str, container: int, depth: int = 0) -> tuple[Bag, ...]:
    """The bags of a DER SafeContents (RFC 7292 §4.2), nested safeContentsBags flattened."""
    from asn1crypto import pkcs12 as asn1_p12

    if depth > MAX_NESTING:
        raise _bad(name, "safe contents are nested too deeply")
    try:
        items = list(asn1_p12.SafeContents.load(content, strict=True))
    except ASN1_ERRORS as exc:
        raise _bad(name, "a SafeContents cannot be read") from exc
    if len(items) > MAX_BAGS:
        raise _bad(name, f"more than {MAX_BAGS} bags")
    out: list[Bag] = []
    for bag in items:
        try:
            bag_id = bag["bag_id"].native
            friendly, local_id = _attributes(bag)
            value = bag["bag_value"]
            if bag_id == "pkcs8_shrouded_key_bag":
                out.append(Bag("shrouded_key", friendly, local_id,
                               describe_algorithm(value["encryption_algorithm"], name=name, where="key encryption"),
                               None, container))
            elif bag_id == "key_bag":
                value["private_key_algorithm"]["algorithm"].native  # noqa: B018 - force the parse
                out.append(Bag("key", friendly, local_id, None, None, container))
            elif bag_id == "cert_bag":
                der = bytes(value["cert_value"]) if value["cert_id"].native == "x509" else None
                out.append(Bag("certificate", friendly, local_id, None, der, container))
            elif bag_id == "safe_contents":
                out.extend(_parse_bags(value.dump(), name=name, container=container, depth=depth + 1))
            else:
                kind = {"crl_bag": "crl", "secret_bag": "secret"}.get(str(bag_id), "other")
                out.append(Bag(kind, friendly, local_id, None, None, container))
        except ASN1_ERRORS as exc:
            raise _bad(name, "a SafeBag cannot be read") from exc
    if len(out) > MAX_BAGS:
        raise _bad(name, f"more than {MAX_BAGS} bags")
    return tuple(out)


def parse_pfx(data: bytes, *, name: str = "PFX file") -> PfxStructure:
    """Read a PFX's structure without the password (RFC 7292 §4).

    Iteration counts (the MAC's, each encrypted content's, each visible
    shrouded key's) are checked here, before any key derivation.

    Args:
        data: the file's bytes (DER; PEM is not a PFX form).
        name: the file name for messages.

    Returns:
        The structure; encrypted containers have ``bags=None``.

    Raises:
        InputError: not a PFX, a damaged one, a public-key integrity mode
            (signed), or an iteration count < 1 or > :data:`MAX_ITERATIONS` (exit 3).
    """
    try:
        return _parse_pfx(data, name=name)
    except ASN1_ERRORS as exc:  # asn1crypto parses lazily: a damaged field can fail at any access
        raise _bad(name, "a field cannot be decoded") from exc


def _parse_pfx(data: bytes, *, name: str) -> PfxStructure:
    from asn1crypto import pkcs12 as asn1_p12

    if data[:1] != b"\x30":
        raise _bad(name, "it does not start with a DER SEQUENCE")
    try:
        pfx = asn1_p12.Pfx.load(data, strict=True)
        version = pfx["version"].native
        auth_safe = pfx["auth_safe"]
        content_type = auth_safe["content_type"].native
    except ASN1_ERRORS as exc:
        raise _bad(name, "the outer PFX structure cannot be read") from exc
    if version != "v3":
        raise _bad(name, f"version {version} (expected 3)")
    if content_type != "data":
        raise _bad(name, f"the integrity mode is {content_type}; only password integrity is supported")
    try:
        auth_octets: bytes = auth_safe["content"].native
        if not isinstance(auth_octets, bytes):
            raise TypeError("content is not an OCTET STRING")
        safe = asn1_p12.AuthenticatedSafe.load(auth_octets, strict=True)
        infos = list(safe)
    except ASN1_ERRORS as exc:
        raise _bad(name, "the AuthenticatedSafe cannot be read") from exc

    mac, mac_salt, mac_digest = _parse_mac(pfx["mac_data"], name=name)
    containers = [_parse_container(info, index, name=name) for index, info in enumerate(infos)]
    return PfxStructure(mac, tuple(containers), auth_octets, mac_salt, mac_digest)


def _parse_mac(mac_data: Any, *, name: str) -> tuple[MacInfo | None, bytes, bytes]:
    """The MacData of RFC 7292 §4: ``(mac info or None, salt, digest)``; iteration counts capped before any KDF."""
    if mac_data.native is None:
        return None, b"", b""
    try:
        algo = mac_data["mac"]["digest_algorithm"]["algorithm"].native
        mac_salt = bytes(mac_data["mac_salt"].native)
        mac_digest = bytes(mac_data["mac"]["digest"].native)
        iterations = mac_data["iterations"].native
    except ASN1_ERRORS as exc:
        raise _bad(name, "the MAC cannot be read") from exc
    if algo not in _DIGESTS:
        raise _bad(name, f"the MAC uses the unsupported digest {algo}")
    info = MacInfo(str(algo), _check_iterations(iterations, name=name, where="MAC"), len(mac_salt))
    return info, mac_salt, mac_digest


def _parse_container(info: Any, index: int, *, name: str) -> Container:
    """One ContentInfo of the AuthenticatedSafe (RFC 7292 §4.1): plain data, password-encrypted or enveloped."""
    try:
        kind = info["content_type"].native
    except ASN1_ERRORS as exc:
        raise _bad(name, "a content of the AuthenticatedSafe cannot be read") from exc
    if kind == "data":
        try:
            octets = info["content"].native
            if not isinstance(octets, bytes):
                raise TypeError("content is not an OCTET STRING")
        except ASN1_ERRORS as exc:
            raise _bad(name, "a data content cannot be read") from exc
        return Container("data", NO_PROTECTION, _parse_bags(octets, name=name, container=index))
    if kind == "encrypted_data":
        try:
            eci = info["content"]["encrypted_content_info"]
            algorithm = eci["content_encryption_algorithm"]
            ciphertext = eci["encrypted_content"].native
            if not isinstance(ciphertext, bytes):
                raise TypeError("no encrypted content")
        except ASN1_ERRORS as exc:
            raise _bad(name, "an encrypted content cannot be read") from exc
        prot = describe_algorithm(algorithm, name=name, where="certificate encryption")
        return Container("encrypted", prot, None, algorithm, ciphertext)
    if kind == "enveloped_data":
        return Container("enveloped", Protection("public-key (EnvelopedData)"), None)
    raise _bad(name, f"a content of type {kind} in the AuthenticatedSafe")


# ---------------------------------------------------------------- passwords and the PKCS#12 KDF


def bmp_password(password: str | None) -> bytes:
    """The password as RFC 7292 Appendix B.1 wants it: UTF-16BE (BMPString) with two zero bytes; None gives b""."""
    if password is None:
        return b""
    return password.encode("utf-16-be") + b"\x00\x00"


def pkcs12_kdf(digest: str, password: bytes, salt: bytes, purpose: int, iterations: int, length: int) -> bytes:
    """The PKCS#12 key derivation of RFC 7292 Appendix B.2.

    Args:
        digest: a hashlib name (``sha1``, ``sha256``...).
        password: :func:`bmp_password` output.
        salt: the salt bytes.
        purpose: 1 for key material, 2 for an IV, 3 for a MAC key (the ID byte).
        iterations: the iteration count (checked against :data:`MAX_ITERATIONS` by the caller).
        length: bytes wanted.

    Returns:
        ``length`` bytes.
    """
    u = hashlib.new(digest).digest_size
    v = hashlib.new(digest).block_size
    d = bytes([purpose]) * v

    def stretch(value: bytes) -> bytes:
        if not value:
            return b""
        n = v * math.ceil(len(value) / v)
        return (value * (n // len(value) + 1))[:n]

    i = bytearray(stretch(salt) + stretch(password))
    out = b""
    for _ in range(math.ceil(length / u)):
        a = hashlib.new(digest, d + bytes(i)).digest()
        for _ in range(iterations - 1):
            a = hashlib.new(digest, a).digest()
        out += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big") + 1
        for j in range(0, len(i), v):
            block = (int.from_bytes(i[j:j + v], "big") + b) % (1 << (8 * v))
            i[j:j + v] = block.to_bytes(v, "big")
    return out[:length]


def _mac_with(structure: PfxStructure, password: bytes) -> bool:
    mac = structure.mac
    assert mac is not None
    digest = _DIGESTS[mac.algorithm]
    size = hashlib.new(digest).digest_size
    key = pkcs12_kdf(digest, password, structure._mac_salt, 3, mac.iterations, size)
    expected = hmac.new(key, structure._auth_safe, digest).digest()
    return hmac.compare_digest(expected, structure._mac_digest)


def mac_matches(structure: PfxStructure, password: str | None) -> bool | None:
    """Check the integrity MAC with ``password`` (RFC 7292 §5.1).

    An empty or missing password is tried in both forms real tools use (no
    bytes at all, and an empty BMPString with its two zero bytes).

    Returns:
        True or False; None when the file has no MAC.
    """
    if structure.mac is None:
        return None
    if not password:
        return _mac_with(structure, b"") or _mac_with(structure, b"\x00\x00")
    return _mac_with(structure, bmp_password(password))


# ---------------------------------------------------------------- opening encrypted contents


def _decrypt(algorithm: Any, ciphertext: bytes, password: str | None) -> bytes | None:
    """Plaintext of a password-encrypted content, or None for a scheme we cannot decrypt (RC2-40, RC4).

    Raises:
        ValueError: bad padding (a wrong password, or damage).
    """
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    algo = algorithm["algorithm"].native
    cipher_alg: Any
    if algo == "pbes2":
        enc = algorithm["parameters"]["encryption_scheme"]["algorithm"].native
        iv = algorithm.encryption_iv
        key_len = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32, "tripledes_3key": 24}.get(enc)
        if key_len is None:
            return None
        prf = {"sha1": hashes.SHA1(), "sha224": hashes.SHA224(), "sha256": hashes.SHA256(),
               "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}.get(algorithm.kdf_hmac)
        if prf is None:
            return None
        pw = (password or "").encode("utf-8")
        key = PBKDF2HMAC(prf, key_len, bytes(algorithm.kdf_salt), algorithm.kdf_iterations).derive(pw)
        if enc == "tripledes_3key":
            from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

            cipher_alg = TripleDES(key)
        else:
            cipher_alg = algorithms.AES(key)
    elif algo in ("pkcs12_sha1_tripledes_3key", "pkcs12_sha1_tripledes_2key", "pkcs12_sha1_rc2_128"):
        salt, iterations = bytes(algorithm.kdf_salt), algorithm.kdf_iterations
        pw_bytes = bmp_password(password)
        if algo == "pkcs12_sha1_rc2_128":
            from cryptography.hazmat.decrepit.ciphers.algorithms import RC2

            key = pkcs12_kdf("sha1", pw_bytes, salt, 1, iterations, 16)
            cipher_alg = RC2(key)
        else:
            from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

            key = pkcs12_kdf("sha1", pw_bytes, salt, 1, iterations, 24 if algo.endswith("3key") else 16)
            cipher_alg = TripleDES(key)
        iv = pkcs12_kdf("sha1", pw_bytes, salt, 2, iterations, 8)
    else:
        return None
    decryptor = Cipher(cipher_alg, modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(cipher_alg.block_size).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def decrypt_containers(structure: PfxStructure, password: str | None, *, name: str = "PFX file") -> PfxStructure:
    """``structure`` with the bags of its encrypted contents listed, where the scheme allows.

    Call it after the password is known to be right (the MAC matched, or
    cryptography opened the file).  RC2-40, RC4 and EnvelopedData contents
    stay closed (``bags is None``).

    Raises:
        InputError: a content decrypts to garbage although the password is right (exit 3).
    """
    opened: list[Container] = []
    for index, c in enumerate(structure.containers):
        if c.kind != "encrypted" or c.bags is not None:
            opened.append(c)
            continue
        try:
            plain = _decrypt(c._algorithm, c._ciphertext, password)
        except (*ASN1_ERRORS, *KEY_ERRORS) as exc:
            raise _bad(name, "an encrypted content does not decrypt") from exc
        if plain is None:
            opened.append(c)
            continue
        opened.append(replace(c, bags=_parse_bags(plain, name=name, container=index)))
    return replace(structure, containers=tuple(opened))
