"""PKCS#12 (PFX) files: export, open, change the password, split (domain.md §7).

``export_pfx`` writes the key, the certificate and its whole chain with
strong protection (domain.md §7): AES-256-CBC with PBKDF2-HMAC-SHA256 for
keys and certificates and a SHA-256 MAC by default; ``legacy`` gives 3DES
with a SHA-1 MAC for old Windows and Java.

``open_pfx`` reads the structure first (``pkcs12_info``: iteration caps,
the MAC checked with the password) so a wrong password (exit 4) is told
apart from a damaged file (exit 3), then lets cryptography load the
objects.  ``rekey_pfx`` writes the same key, certificates and friendly
names under a new password (``change_password`` is the whole workflow;
a new key from the CA home is :mod:`twcactl.authority.rekey`);
``split_pfx`` gives PEM files.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from twcactl.errors import AuthError, InputError, PolicyError, UsageError
from twcactl.pkix.keys import PrivateKey
from twcactl.pkix.parse_errors import KEY_ERRORS, X509_LOAD_ERRORS
from twcactl.pkix.pkcs12_info import (
    PfxStructure,
    decrypt_containers,
    mac_matches,
    parse_pfx,
)

MIN_PASSWORD = 6
#: PBKDF2 iterations for new files (OpenSSL 3's default is 2048; NIST SP 800-132 asks for more).
KDF_ROUNDS = 100_000


def key_matches(key: Any, cert: x509.Certificate) -> bool:
    """True when ``key`` is the private half of ``cert``'s public key."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.DER, fmt) == cert.public_key().public_bytes(
        serialization.Encoding.DER, fmt
    )


def default_friendly_name(cert: x509.Certificate) -> str | None:
    """The friendly name a PFX gets when none is given: the CN, with `` (signing)`` or `` (encryption)`` for one
    half of a signing and encryption pair (judged by its key usage), so the two PFX files of a pair are told apart
    in a certificate store (issue 28; domain.md §7).  None when the subject has no CN."""
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not cns:
        return None
    cn = cns[0].value if isinstance(cns[0].value, str) else cns[0].value.decode("latin-1")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return cn
    encrypts = ku.key_encipherment or ku.data_encipherment or ku.key_agreement
    if ku.content_commitment and not encrypts:
        return f"{cn} (signing)"
    if encrypts and not ku.digital_signature:
        return f"{cn} (encryption)"
    return cn


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
    name = friendly_name.encode("utf-8") if friendly_name else None
    return pkcs12.serialize_key_and_certificates(
        name, key, cert, list(chain) or None, _encryption(password, legacy=legacy)
    )


def chain_for_export(leaf: x509.Certificate, candidates: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The CA certificates a PFX carries beside ``leaf``: each once, never the leaf again (issue 17: a fullchain
    given as the chain put the leaf in twice), the path above the leaf first (issuer first), then the others in
    input order.

    Raises:
        InputError: more candidates than the path builder takes (exit 3).
    """
    from twcactl.pkix.chain import build_path

    path = build_path(leaf, candidates)
    return [*path.cas, *path.unused]


def _encryption(password: str, *, legacy: bool, rounds: int = KDF_ROUNDS) -> Any:
    """cryptography's PKCS#12 encryption: AES-256 + SHA-256 MAC, or 3DES + SHA-1 MAC when ``legacy``."""
    builder = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(rounds)
    if legacy:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1())
    else:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256())
    return builder.build(password.encode("utf-8"))


# ---------------------------------------------------------------- opening


@dataclass(frozen=True)
class PfxEntry:
    """One certificate of an opened PFX.

    Attributes:
        certificate: the certificate.
        friendly_name: its friendlyName attribute, or None.
        local_key_id: its localKeyId (hex), or None (or not visible: RC2-40 contents).
        is_key_certificate: True for the certificate of the file's private key.
    """

    certificate: x509.Certificate
    friendly_name: str | None
    local_key_id: str | None
    is_key_certificate: bool


@dataclass(frozen=True)
class OpenedPfx:
    """A PFX opened with its password.

    Attributes:
        structure: what ``pkcs12_info`` read (protection, MAC, bags).
        key: the private key (any cryptography key type), or None for a certificate-only file.
        key_count: keys the file holds (at least 1 when ``key`` is set).
        key_friendly_name / key_local_key_id: the key bag's attributes.
        certificates: the key's certificate first (when there is one), then the others in file order.
    """

    structure: PfxStructure
    key: Any
    key_count: int
    key_friendly_name: str | None
    key_local_key_id: str | None
    certificates: tuple[PfxEntry, ...]

    @property
    def key_certificate(self) -> PfxEntry | None:
        """The entry of the key's certificate, or None."""
        return next((c for c in self.certificates if c.is_key_certificate), None)

    @property
    def others(self) -> list[PfxEntry]:
        """Every certificate but the key's."""
        return [c for c in self.certificates if not c.is_key_certificate]


def _friendly(value: bytes | None) -> str | None:
    if value is None:
        return None
    for encoding in ("utf-8", "latin-1"):
        try:
            return value.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def open_pfx(data: bytes, password: str | None, *, name: str = "PFX file") -> OpenedPfx:
    """Open a PFX: structure first, then the MAC, then cryptography.

    Args:
        data: the file's bytes.
        password: the password; None (or empty) tries the empty password
            the way OpenSSL does (a Java trust store has one).
        name: the file name for messages.

    Raises:
        InputError: malformed, absurd iteration counts (refused before any
            key derivation), or the MAC matches but the content cannot be read (exit 3).
        AuthError: the MAC does not match the password (exit 4); with no MAC
            in the file, the content does not open with it.
    """
    structure = parse_pfx(data, name=name)
    matched = mac_matches(structure, password)
    if matched is False:
        if password:
            raise AuthError(f"the password for {name} is wrong.")
        raise AuthError(f"{name} needs a password.", hint="give it with --password SOURCE")
    pw = password.encode("utf-8") if password else None
    try:
        with warnings.catch_warnings():
            # some real files are BER; cryptography warns and reads them anyway
            warnings.simplefilter("ignore")
            loaded = pkcs12.load_pkcs12(data, pw)
    except (*X509_LOAD_ERRORS, *KEY_ERRORS) as exc:  # a wrong password and damage look alike here
        if matched is None:
            raise AuthError(f"{name} does not open with this password (the file has no MAC to tell a wrong "
                            "password from damage).") from exc
        raise InputError(f"{name} is damaged: the password is right but the content cannot be read.") from exc
    structure = decrypt_containers(structure, password, name=name)

    bag_info = {b.der: b for b in structure.bags if b.kind == "certificate" and b.der is not None}
    key_bag = next((b for b in structure.bags if b.kind in ("key", "shrouded_key")), None)
    entries: list[PfxEntry] = []
    if loaded.cert is not None:
        der = loaded.cert.certificate.public_bytes(serialization.Encoding.DER)
        bag = bag_info.get(der)
        entries.append(PfxEntry(loaded.cert.certificate, _friendly(loaded.cert.friendly_name),
                                bag.local_key_id if bag else None, loaded.key is not None))
    for extra in loaded.additional_certs:
        der = extra.certificate.public_bytes(serialization.Encoding.DER)
        bag = bag_info.get(der)
        entries.append(PfxEntry(extra.certificate, _friendly(extra.friendly_name),
                                bag.local_key_id if bag else None, False))
    key_count = structure.key_count
    if loaded.key is not None:
        key_count = max(key_count, 1)
    return OpenedPfx(structure, loaded.key, key_count, key_bag.friendly_name if key_bag else None,
                     key_bag.local_key_id if key_bag else None, tuple(entries))


# ---------------------------------------------------------------- changing the password


def rekey_pfx(opened: OpenedPfx, *, password: str, legacy: bool = False) -> bytes:
    """The same key, certificates and friendly names under a new password.

    Protection: AES-256-CBC with PBKDF2-HMAC-SHA256 and a SHA-256 MAC (an
    upgrade for 3DES and RC2 files), at least :data:`KDF_ROUNDS` iterations
    and no fewer than the input used; ``legacy`` downgrades on purpose to
    3DES with a SHA-1 MAC for old Windows and Java.

    Raises:
        UsageError: the new password is shorter than 6 characters (exit 2).
        PolicyError: the file holds several keys (writing one would lose the
            others) or nothing at all (exit 1).
    """
    check_password(password)
    if opened.key_count > 1:
        raise PolicyError(f"the file holds {opened.key_count} private keys; refusing to write one and lose the others.")
    if opened.key is None and not opened.certificates:
        raise PolicyError("the file holds neither a key nor a certificate.")
    seen = [b.protection.iterations for b in opened.structure.bags if b.protection and b.protection.iterations]
    seen += [c.protection.iterations for c in opened.structure.containers if c.protection.iterations]
    rounds = max([KDF_ROUNDS, *seen])
    key_entry = opened.key_certificate
    cert = key_entry.certificate if key_entry else None
    friendly = (key_entry.friendly_name if key_entry else None) or opened.key_friendly_name
    cas = [pkcs12.PKCS12Certificate(e.certificate, e.friendly_name.encode("utf-8") if e.friendly_name else None)
           for e in opened.others]
    return pkcs12.serialize_key_and_certificates(
        friendly.encode("utf-8") if friendly else None, opened.key, cert, cas or None,
        _encryption(password, legacy=legacy, rounds=rounds),
    )


@dataclass(frozen=True)
class RepackedPfx:
    """A PFX written anew (``pfx rekey``).

    Attributes:
        data: the new file's DER, to be written with mode 0600.
        protection: the new file's protection, read back from ``data``.
        was: the old file's protection.
        certificates: how many certificates the new file holds.
        has_key: whether it holds a private key.
        same_password: the new password is the old one (worth a warning, not a refusal).
    """

    data: bytes
    protection: PfxStructure
    was: PfxStructure
    certificates: int
    has_key: bool
    same_password: bool


def check_rekeyable(opened: OpenedPfx, *, new_key: bool = False, name: str = "the file") -> None:
    """Refuse what a rewrite would damage, before a new password is asked for.

    Raises:
        PolicyError: several keys (writing one would lose the others), or, with ``new_key``, no key
            with its certificate (exit 1).
    """
    if opened.key_count > 1:
        raise PolicyError(f"{name} holds {opened.key_count} private keys; refusing to write one and lose the others.")
    if new_key and opened.key_certificate is None:
        raise PolicyError(f"{name} holds no key with its certificate; --new-key needs both.")


def repacked(opened: OpenedPfx, data: bytes, password: str, *, old_password: str | None, certificates: int,
             name: str = "the file") -> RepackedPfx:
    """Describe a rewrite of ``opened`` as ``data`` (opened again under ``password`` to read its protection)."""
    written = open_pfx(data, password, name=name)
    return RepackedPfx(data, written.structure, opened.structure, certificates, written.key is not None,
                       password == old_password)


def change_password(opened: OpenedPfx, *, old_password: str | None, new_password: Callable[[], str],
                    legacy: bool = False, name: str = "the file") -> RepackedPfx:
    """The "change PFX password" workflow (domain.md §7): the same key, certificates and friendly names under a new
    password, AES-256 unless ``legacy`` (:func:`rekey_pfx`).

    Args:
        opened: the PFX, opened with ``old_password`` (None: it has the empty password or none).
        new_password: asked only after the file passed :func:`check_rekeyable`; at least 6 characters.
        legacy: 3DES and a SHA-1 MAC, for old Windows and Java.
        name: the file's name for messages.

    Returns:
        The new file's bytes and a summary of old and new protection.

    Raises:
        PolicyError: several keys, or nothing in the file (exit 1).
        UsageError: the new password is shorter than 6 characters (exit 2).
    """
    check_rekeyable(opened, name=name)
    password = new_password()
    data = rekey_pfx(opened, password=password, legacy=legacy)
    return repacked(opened, data, password, old_password=old_password, certificates=len(opened.certificates),
                    name=name)


# ---------------------------------------------------------------- splitting


@dataclass(frozen=True)
class SplitFiles:
    """PEM files from a PFX: ``key.pem`` (None without a key), ``cert.pem`` (None without the key's
    certificate), ``chain.pem`` (the other certificates, issuer first where a path can be built)."""

    key_pem: bytes | None
    cert_pem: bytes | None
    chain_pem: bytes | None


def ordered_others(opened: OpenedPfx) -> list[x509.Certificate]:
    """The certificates other than the key's: the path above it first (issuer first), then the rest in file order."""
    from twcactl.pkix.chain import build_path, fingerprint

    others = [e.certificate for e in opened.others]
    key_entry = opened.key_certificate
    if key_entry is None:
        return others
    path = build_path(key_entry.certificate, others).cas
    on_path = {fingerprint(c) for c in path}
    return [*path, *(c for c in others if fingerprint(c) not in on_path)]


def split_pfx(opened: OpenedPfx, *, key_passphrase: str | None) -> SplitFiles:
    """PEM files of an opened PFX; the key as PKCS#8, encrypted unless ``key_passphrase`` is None.

    Raises:
        PolicyError: several keys (exit 1).
    """
    from twcactl.pkix.keys import private_key_pem

    if opened.key_count > 1:
        raise PolicyError(f"the file holds {opened.key_count} private keys; refusing to write one and lose the others.")
    key_pem = private_key_pem(opened.key, key_passphrase) if opened.key is not None else None
    key_entry = opened.key_certificate
    cert_pem = key_entry.certificate.public_bytes(serialization.Encoding.PEM) if key_entry else None
    others = ordered_others(opened)
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in others) or None
    return SplitFiles(key_pem, cert_pem, chain_pem)


# ---------------------------------------------------------------- a new key pair


def new_key_like(public_key: Any) -> PrivateKey:
    """A fresh key of the same type and size as ``public_key`` (RSA: e = 65537; EC: the same curve).

    Raises:
        InputError: another key type (exit 3).
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        return rsa.generate_private_key(public_exponent=65537, key_size=public_key.key_size)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return ec.generate_private_key(public_key.curve)
    raise InputError(f"cannot make a new key like a {type(public_key).__name__}; only RSA and EC are supported.")


def replacement_csr(key: PrivateKey, cert: x509.Certificate) -> bytes:
    """A PEM CSR for ``cert``'s subject and DNS / e-mail SANs, signed by ``key`` (domain.md §1: renewal in one step).

    Raises:
        InputError: the subject holds an attribute twcactl cannot write (exit 3).
    """
    from twcactl.csr import build_csr
    from twcactl.pkix.names import attributes

    pairs = [(a.name, a.value) for a in attributes(cert.subject)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns, emails = san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        dns, emails = [], []
    try:
        csr = build_csr(key, pairs, dns_names=dns, emails=emails)
    except (KeyError, ValueError) as exc:
        raise InputError(f"cannot rebuild the subject {cert.subject.rfc4514_string()} for a new request.") from exc
    return csr.public_bytes(serialization.Encoding.PEM)
