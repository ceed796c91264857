"""The PKCS#11 adapter: the only module that imports ``pkcs11`` (python-pkcs11), lazily.

One class per level of the standard: :class:`Pkcs11Module` (a loaded
library, C_Initialize), :class:`P11Token` (a slot with a token: PIN
operations), :class:`P11Session` (objects, key generation, certificates) and
the token keys :class:`TokenRSAPrivateKey` / :class:`TokenECPrivateKey`,
which are cryptography private keys whose ``sign()`` runs on the token
(architecture.md, "A token key is a cryptography key").

Every ``pkcs11`` exception is wrapped where it enters, into the error tree of
``twcactl.errors``: a wrong or locked PIN is :class:`PinError` (exit 4) carrying
the token's flags read *after* the refusal and worded from them by
``twcactl.rules.pin``, a new PIN's length or value the
token refuses is :class:`PolicyError` (exit 1), anything about the module,
slot or token is :class:`DeviceError` (exit 6).  No PIN is ever retried here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    encode_dss_signature,
)

from twcactl.backends import (
    PinState,
    TokenInfo,
    TokenObject,
    locked_pin_error,
    wrong_pin_error,
)
from twcactl.errors import DeviceError, PolicyError, TwcaError, UsageError
from twcactl.pkix.parse_errors import ASN1_ERRORS, KEY_ERRORS, X509_LOAD_ERRORS
from twcactl.rules.pin import NEW_PIN_LENGTH_HINT, PinFailure, new_pin_refused_message
from twcactl.rules.serials import format_serial

if TYPE_CHECKING:
    import pkcs11 as _pkcs11_types  # noqa: F401

#: Where the usual modules live, searched in this order when none is named
#: (cli-contract.md: OpenSC for real cards first, then SoftHSM2, then opencryptoki).
MODULE_CANDIDATES: tuple[str, ...] = (
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib64/opensc-pkcs11.so",
    "/usr/lib/opensc-pkcs11.so",
    "/usr/local/lib/opensc-pkcs11.so",
    "/Library/OpenSC/lib/opensc-pkcs11.so",
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so",
    "/usr/lib64/opencryptoki/libopencryptoki.so",
    "/usr/lib/opencryptoki/libopencryptoki.so",
    # p11-kit's proxy: every module registered in /usr/share/p11-kit/modules behind one (issue 17)
    "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib64/p11-kit-proxy.so",
    "/usr/lib/p11-kit-proxy.so",
)

MODULE_HINT = "name it with --module PATH or $TWCACTL_PKCS11_MODULE (e.g. OpenSC's opensc-pkcs11.so)"

#: DER prefixes of DigestInfo for PKCS#1 v1.5 signatures made with raw RSA_PKCS (RFC 8017 §9.2, note 1).
_DIGEST_INFO_PREFIX: dict[str, bytes] = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}

_CURVES: dict[str, ec.EllipticCurve] = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(),
                                        "secp521r1": ec.SECP521R1()}

#: Key types ``card enroll --key-type`` accepts: (family, bits or curve name).
TOKEN_KEY_TYPES: dict[str, tuple[str, int | str]] = {
    "rsa2048": ("rsa", 2048),
    "rsa3072": ("rsa", 3072),
    "rsa4096": ("rsa", 4096),
    "ec-p256": ("ec", "secp256r1"),
    "ec-p384": ("ec", "secp384r1"),
}

_INTERESTING_MECHANISMS = ("RSA_PKCS", "SHA256_RSA_PKCS", "ECDSA", "ECDSA_SHA256", "EC_KEY_PAIR_GEN",
                           "RSA_PKCS_KEY_PAIR_GEN")


def _p11() -> Any:
    """python-pkcs11, imported on first use (architecture.md: only this module imports it)."""
    try:
        import pkcs11
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise DeviceError("python-pkcs11 is not installed.", hint="pip install python-pkcs11") from exc
    return pkcs11


def find_module(explicit: str | None, *, candidates: Sequence[str] = MODULE_CANDIDATES) -> str:
    """The PKCS#11 module to load.

    Args:
        explicit: ``--module``, ``$TWCACTL_PKCS11_MODULE`` or the config's
            ``pkcs11_module``, already resolved in that order by the CLI; None
            to search ``candidates``.
        candidates: paths tried in order (cli-contract.md: usual OpenSC /
            SoftHSM2 / opencryptoki paths).

    Raises:
        DeviceError: the named file does not exist, or none of the candidates does (exit 6).
    """
    if explicit:
        if not os.path.isfile(explicit):
            raise DeviceError(f"the PKCS#11 module {explicit} does not exist.", hint=MODULE_HINT)
        return explicit
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DeviceError("no PKCS#11 module found in the usual OpenSC, SoftHSM2 or opencryptoki paths.",
                      hint="install OpenSC for your card, or " + MODULE_HINT)


def search_order(first: str | None, *, candidates: Sequence[str] = MODULE_CANDIDATES) -> list[str]:
    """The modules :func:`open_token_anywhere` tries: ``first``, then every existing candidate, each library once.

    Two paths to one file (a symlink) are one library: python-pkcs11 would load it twice and the second
    C_Initialize fails, so only the first path of each real file is kept.
    """
    order: list[str] = []
    seen: set[str] = set()
    for path in ([first] if first else []) + [c for c in candidates if os.path.isfile(c)]:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            order.append(path)
    return order


def open_token_anywhere(first: str | None, label: str | None, *,
                        candidates: Sequence[str] = MODULE_CANDIDATES) -> P11Token:
    """The token named ``label`` (or the only token) in the first module that holds it (issue 17).

    Tries ``first`` (the CA home's configured module, already checked by
    :func:`configured_module_path`), then the known system modules in
    :data:`MODULE_CANDIDATES` order (OpenSC, SoftHSM2, opencryptoki, the p11-kit
    proxy).  A module that does not load or holds no such token is released and
    the next one tried; the answering token's ``module`` says which one it was.

    Raises:
        DeviceError: no module holds such a token, or none exists (exit 6), naming the modules tried.
        UsageError: the answering module holds several tokens and no ``label`` was given (exit 2).
    """
    order = search_order(first, candidates=candidates)
    if not order:
        raise DeviceError("no PKCS#11 module found in the usual OpenSC, SoftHSM2, opencryptoki or p11-kit paths.",
                          hint="install OpenSC for your card, or " + MODULE_HINT)
    for path in order:
        try:
            return Pkcs11Module(path).open_token(label)
        except DeviceError:
            release_module(path)
    what = f"no token labelled {label!r}" if label is not None else "no card or token"
    raise DeviceError(f"{what} in any PKCS#11 module tried: {', '.join(order)}.",
                      hint="insert the card (twcactl card readers shows what PC/SC sees), or " + MODULE_HINT)


def configured_module_path(path: str) -> str:
    """Check a PKCS#11 module named by a CA home's ``pkcs11_module`` setting; the path to load.

    Card commands load (execute) that library, and anyone who can write
    ``config.toml`` or the file could otherwise run code as the card user.
    Accepted: one of :data:`MODULE_CANDIDATES`, or an absolute path whose real
    file (symlinks resolved; the resolved path is what gets loaded) is owned
    by root and not writable by group or others, in a directory owned by root
    and not writable by group or others (issue 13).  ``--module`` and
    ``$TWCACTL_PKCS11_MODULE`` are the user's own choice and are not checked.

    Raises:
        StateError: a relative path, or a file or directory another user could change (exit 5).
        DeviceError: the file does not exist (exit 6).
    """
    from twcactl.errors import StateError

    if path in MODULE_CANDIDATES:
        return path
    if not os.path.isabs(path):
        raise StateError(f"the configured PKCS#11 module {path!r} is not an absolute path; refusing to load it.",
                         hint="twcactl ca config pkcs11_module /usr/lib/.../module.so (a root-owned file)")
    real = os.path.realpath(path)
    if not os.path.isfile(real):
        raise DeviceError(f"the PKCS#11 module {path} does not exist.", hint=MODULE_HINT)
    for what, target in (("file", real), ("directory", os.path.dirname(real))):
        st = os.stat(target)
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise StateError(f"the configured PKCS#11 module {path}: its {what} {target} is not owned by root or is "
                             "writable by group or others; refusing to load it.",
                             hint="install the module as root in a system directory, or pass --module PATH")
    return real


#: path -> how many times this process has (re-)initialised that module: a session opened before the last
#: C_Initialize is gone, and its handle may since name another session (PKCS#11 v2.40 §5.4, §5.6).
_GENERATIONS: dict[str, int] = {}


def _wrap_device(exc: Exception, doing: str) -> DeviceError:
    name = type(exc).__name__
    detail = str(exc).strip()
    text = f"{name}: {detail}" if detail and detail != name else name
    return DeviceError(f"the token failed while {doing} ({text}).")


class Pkcs11Module:
    """A loaded and freshly initialised PKCS#11 library.

    python-pkcs11 keeps one library object per path for the whole process;
    we call C_Finalize + C_Initialize on every open, so each command sees
    the tokens present now (SoftHSM2 reads its token directory, and
    SOFTHSM2_CONF, at C_Initialize) and no session left over from an
    earlier command in the same process (a failed login leaks one, which
    would block a later SO login with CKR_SESSION_READ_ONLY_EXISTS).

    Raises (constructor):
        DeviceError: the file is not a loadable PKCS#11 module, or its
            C_Initialize fails (opencryptoki without ``pkcsslotd`` says
            CKR_HOST_MEMORY) (exit 6).
    """

    def __init__(self, path: str, *, reinitialize: bool = True) -> None:
        p11 = _p11()
        self.path = path
        try:
            self._lib = p11.lib(path)
            if reinitialize:  # False: keep this process's other sessions on it (a CA key's, issue 14)
                self._lib.reinitialize()
                _GENERATIONS[path] = _GENERATIONS.get(path, 0) + 1
        except p11.PKCS11Error as exc:
            hint = MODULE_HINT
            if isinstance(exc, p11.exceptions.HostMemory) and "opencryptoki" in path:
                hint = "opencryptoki needs its slot daemon: start pkcsslotd"
            raise DeviceError(f"cannot load or initialise the PKCS#11 module {path} ({type(exc).__name__}).",
                              hint=hint) from exc

    def reinitialize(self) -> None:
        """C_Finalize + C_Initialize: closes every session of this process (PKCS#11 v2.40 §5.4)."""
        p11 = _p11()
        _GENERATIONS[self.path] = _GENERATIONS.get(self.path, 0) + 1
        try:
            self._lib.reinitialize()
        except p11.PKCS11Error as exc:
            raise _wrap_device(exc, "re-initialising the module") from exc

    def _raw_tokens(self) -> list[Any]:
        p11 = _p11()
        try:
            slots = self._lib.get_slots(token_present=True)
            tokens = [slot.get_token() for slot in slots]
        except p11.PKCS11Error as exc:
            raise _wrap_device(exc, "listing its slots") from exc
        # An uninitialised token (SoftHSM2's free slot, a blank card) holds nothing to use.
        return [t for t in tokens if t.flags & p11.TokenFlag.TOKEN_INITIALIZED]

    def tokens(self) -> list[TokenInfo]:
        """Every initialised token, as :class:`TokenInfo`."""
        return [_token_info(self.path, t) for t in self._raw_tokens()]

    def open_token(self, label: str | None) -> P11Token:
        """The token named ``label``, or the only one when ``label`` is None.

        Raises:
            DeviceError: no token, or none with that label (exit 6).
            UsageError: several tokens and no ``--token`` (exit 2).
        """
        tokens = self._raw_tokens()
        if not tokens:
            raise DeviceError(f"no card or token found through {self.path}.",
                              hint="insert the card (twcactl card readers shows what PC/SC sees), or check --module")
        if label is not None:
            matching = [t for t in tokens if t.label == label]
            if not matching:
                names = ", ".join(repr(t.label) for t in tokens)
                raise DeviceError(f"no token labelled {label!r} (found: {names}).", hint="check --token")
            if len(matching) > 1:
                raise UsageError(f"{len(matching)} tokens are labelled {label!r}; remove all but one.")
            return P11Token(self, matching[0])
        if len(tokens) > 1:
            names = ", ".join(repr(t.label) for t in tokens)
            raise UsageError(f"{len(tokens)} tokens are present ({names}).", hint="name one with --token LABEL")
        return P11Token(self, tokens[0])


def _token_info(module: str, token: Any) -> TokenInfo:
    p11 = _p11()
    flags = token.flags
    tf = p11.TokenFlag
    pin = PinState(
        count_low=bool(flags & tf.USER_PIN_COUNT_LOW),
        final_try=bool(flags & tf.USER_PIN_FINAL_TRY),
        locked=bool(flags & tf.USER_PIN_LOCKED),
        to_be_changed=bool(flags & tf.USER_PIN_TO_BE_CHANGED),
        initialized=bool(flags & tf.USER_PIN_INITIALIZED),
        so_locked=bool(flags & tf.SO_PIN_LOCKED),
        so_to_be_changed=bool(flags & tf.SO_PIN_TO_BE_CHANGED),
    )
    try:
        mechanisms = {m.name for m in token.slot.get_mechanisms() if getattr(m, "name", None)}
    except p11.PKCS11Error:
        mechanisms = set()
    serial = token.serial.decode("ascii", "replace").strip() if isinstance(token.serial, bytes) else str(token.serial)
    return TokenInfo(
        module=module,
        slot_id=int(token.slot.slot_id),
        slot_description=token.slot.slot_description.strip(),
        label=token.label,
        manufacturer=token.manufacturer_id.strip(),
        model=token.model.strip(),
        serial=serial,
        pin=pin,
        mechanisms=frozenset(mechanisms & set(_INTERESTING_MECHANISMS)),
    )


def _so_state(info: TokenInfo, token: Any) -> PinState:
    """The SO PIN's flags in the shape of a :class:`PinState` (CKF_SO_PIN_*)."""
    tf = _p11().TokenFlag
    flags = token.flags
    return PinState(count_low=bool(flags & tf.SO_PIN_COUNT_LOW), final_try=bool(flags & tf.SO_PIN_FINAL_TRY),
                    locked=bool(flags & tf.SO_PIN_LOCKED), to_be_changed=bool(flags & tf.SO_PIN_TO_BE_CHANGED))


class P11Token:
    """One token in one slot: its description and the PIN operations (PKCS#11 v2.40 §5.6, §5.7)."""

    def __init__(self, module: Pkcs11Module, token: Any) -> None:
        self.module = module
        self._token = token
        self._serial = token.serial
        self._label = token.label
        self.info = _token_info(module.path, token)

    def _refetch(self) -> Any:
        """The token again (its flags are a snapshot), found by serial and label after any re-initialisation."""
        for token in self.module._raw_tokens():
            if token.serial == self._serial and token.label == self._label:
                self._token = token
                self.info = _token_info(self.module.path, token)
                return token
        raise DeviceError(f"the token {self._label!r} went away.", hint="was the card removed? insert it and retry")

    def refresh(self) -> TokenInfo:
        """Read the token's flags again and return the new :class:`TokenInfo`."""
        self._refetch()
        return self.info

    def _after_refusal(self) -> TokenInfo:
        # Close the session python-pkcs11 leaks on a failed C_Login, then read the new flags.
        self.module.reinitialize()
        return self.refresh()

    def session(self, pin: str | None = None, *, rw: bool = False) -> P11Session:
        """Open a session, logged in as the user when ``pin`` is given (one C_Login, never retried).

        A PIN the token already reports as locked is not tried at all.

        Raises:
            PinError: wrong PIN, a length the token refuses, or locked (exit 4), with the flags after the refusal.
            DeviceError: the token fails otherwise (exit 6).
        """
        p11 = _p11()
        if pin is not None and self.refresh().pin.locked:
            raise locked_pin_error(self.info.pin)
        try:
            session = self._token.open(rw=rw, user_pin=pin)
        except p11.exceptions.PinLocked as exc:
            raise locked_pin_error(self._after_refusal().pin) from exc
        except (p11.exceptions.PinIncorrect, p11.exceptions.PinInvalid) as exc:
            raise wrong_pin_error(self._after_refusal().pin) from exc
        except p11.exceptions.PinLenRange as exc:
            raise wrong_pin_error(self._after_refusal().pin, failure=PinFailure.LENGTH_INVALID) from exc
        except p11.exceptions.UserPinNotInitialized as exc:
            raise DeviceError("the token has no user PIN yet.",
                              hint="set one with the SO PIN: twcactl card unblock") from exc
        except p11.PKCS11Error as exc:
            raise _wrap_device(exc, "opening a session") from exc
        return P11Session(self, session, logged_in=pin is not None)

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        """C_SetPIN in a read/write public session: the user PIN ``old_pin`` becomes ``new_pin``.

        The caller checks the new PIN first (``card.check_new_pin``).

        Raises:
            PinError: the old PIN is wrong or locked (exit 4).
            PolicyError: the token refuses the new PIN's length or value
                (CKR_PIN_LEN_RANGE / CKR_PIN_INVALID), never retried (exit 1).
            DeviceError: any other failure (exit 6).
        """
        p11 = _p11()
        if self.refresh().pin.locked:
            raise locked_pin_error(self.info.pin)
        try:
            session = self._token.open(rw=True)
        except p11.PKCS11Error as exc:
            raise _wrap_device(exc, "opening a session") from exc
        try:
            session.set_pin(old_pin, new_pin)
        except p11.exceptions.PinLocked as exc:
            raise locked_pin_error(self._after_refusal().pin) from exc
        except p11.exceptions.PinIncorrect as exc:
            raise wrong_pin_error(self._after_refusal().pin, what="current PIN") from exc
        except p11.exceptions.PinLenRange as exc:
            self._after_refusal()
            raise PolicyError(new_pin_refused_message(PinFailure.LENGTH_INVALID, action="changed"),
                              hint=NEW_PIN_LENGTH_HINT) from exc
        except p11.exceptions.PinInvalid as exc:
            self._after_refusal()
            raise PolicyError(new_pin_refused_message(PinFailure.INCORRECT, action="changed")) from exc
        except p11.PKCS11Error as exc:
            self._after_refusal()
            raise _wrap_device(exc, "changing the PIN") from exc
        with contextlib.suppress(p11.PKCS11Error):
            session.close()

    def unblock(self, so_pin: str, new_pin: str) -> None:
        """Log in as the security officer and C_InitPIN ``new_pin``: unlocks a locked user PIN.

        Raises:
            PinError: the SO PIN is wrong or locked (exit 4), with the SO flags.
            PolicyError: the token refuses the new PIN (exit 1).
            DeviceError: any other failure (exit 6).
        """
        p11 = _p11()
        # A leftover read-only session (e.g. from a failed user login earlier in this process) blocks SO login.
        self.module.reinitialize()
        token = self._refetch()
        so_state = _so_state(self.info, token)
        if so_state.locked:
            raise locked_pin_error(so_state, what="SO PIN")
        try:
            session = token.open(rw=True, so_pin=so_pin)
        except p11.exceptions.PinLocked as exc:
            self._after_refusal()
            raise locked_pin_error(_so_state(self.info, self._token), what="SO PIN") from exc
        except (p11.exceptions.PinIncorrect, p11.exceptions.PinLenRange, p11.exceptions.PinInvalid) as exc:
            self._after_refusal()
            raise wrong_pin_error(_so_state(self.info, self._token), what="SO PIN") from exc
        except p11.PKCS11Error as exc:
            raise _wrap_device(exc, "logging in as security officer") from exc
        try:
            session.init_pin(new_pin)
        except p11.exceptions.PinLenRange as exc:
            raise PolicyError(new_pin_refused_message(PinFailure.LENGTH_INVALID, action="set")) from exc
        except p11.exceptions.PinInvalid as exc:
            raise PolicyError(new_pin_refused_message(PinFailure.INCORRECT, action="set")) from exc
        except p11.PKCS11Error as exc:
            raise _wrap_device(exc, "setting the new PIN") from exc
        finally:
            with contextlib.suppress(p11.PKCS11Error):
                session.close()
        self.module.reinitialize()


def _attr(obj: Any, attribute: Any, default: Any = None) -> Any:
    p11 = _p11()
    try:
        return obj[attribute]
    except (p11.PKCS11Error, KeyError, NotImplementedError):
        return default


def _ec_point(raw: bytes, curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey:
    """CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); some tokens omit the wrapper."""
    coord = (curve.key_size + 7) // 8
    if not (raw[:1] == b"\x04" and len(raw) == 1 + 2 * coord):
        from asn1crypto.core import OctetString

        raw = OctetString.load(raw).native
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, raw)


def _ec_curve(params: bytes) -> ec.EllipticCurve:
    from asn1crypto.keys import ECDomainParameters

    try:
        parsed = ECDomainParameters.load(params)
        name = parsed.chosen.native if parsed.name == "named" else None
    except ASN1_ERRORS as exc:
        raise DeviceError("the token's EC key has parameters twcactl cannot read.") from exc
    if name not in _CURVES:
        raise DeviceError(f"the token's EC key is on curve {name!r}, which twcactl does not support.")
    return _CURVES[name]


def _public_key_of(obj: Any) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None:
    """The public key held in a public (or RSA private) key object, None when the token hides it."""
    p11 = _p11()
    key_type = _attr(obj, p11.Attribute.KEY_TYPE)
    if key_type == p11.KeyType.RSA:
        modulus = _attr(obj, p11.Attribute.MODULUS)
        exponent = _attr(obj, p11.Attribute.PUBLIC_EXPONENT)
        if not modulus or not exponent:
            return None
        return rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")).public_key()
    if key_type == p11.KeyType.EC:
        params = _attr(obj, p11.Attribute.EC_PARAMS)
        point = _attr(obj, p11.Attribute.EC_POINT)
        if not params or not point:
            return None
        return _ec_point(point, _ec_curve(params))
    return None


def _spki(public_key: object | None) -> bytes:
    if public_key is None:
        return b""
    return public_key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _describe_public(public_key: object | None) -> tuple[str | None, int]:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ec", public_key.curve.key_size
    return None, 0


class P11Session:
    """An open session on a token: objects, key pairs, certificates.  Use as a context manager."""

    def __init__(self, token: P11Token, session: Any, *, logged_in: bool) -> None:
        self.token = token
        self._session = session
        self.logged_in = logged_in
        self._mechanisms = token.info.mechanisms
        self._generation = _GENERATIONS.get(token.module.path, 0)

    @property
    def current(self) -> bool:
        """False once the module was re-initialised in this process since the session was opened: the
        session is gone (and its handle may now be another's)."""
        return self._generation == _GENERATIONS.get(self.token.module.path, 0)

    def __enter__(self) -> P11Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session (logging out); errors closing are ignored.  A session the module's
        re-initialisation already ended is not closed again: its handle may now be another session's."""
        p11 = _p11()
        if not self.current:
            return
        with contextlib.suppress(p11.PKCS11Error):
            self._session.close()

    def _objects(self, object_class: Any, id_hex: str | None = None) -> list[Any]:
        p11 = _p11()
        template: dict[Any, Any] = {p11.Attribute.CLASS: object_class}
        if id_hex is not None:
            template[p11.Attribute.ID] = bytes.fromhex(id_hex)
        try:
            return list(self._session.get_objects(template))
        except p11.PKCS11Error as exc:
            raise _wrap_device(exc, "listing objects") from exc

    def objects(self) -> list[TokenObject]:
        """Private keys (only visible when logged in), public keys and certificates, in that order."""
        p11 = _p11()
        out: list[TokenObject] = []
        for obj in self._objects(p11.ObjectClass.PRIVATE_KEY):
            public = _public_key_of(obj)
            kind_name = {p11.KeyType.RSA: "rsa", p11.KeyType.EC: "ec"}.get(_attr(obj, p11.Attribute.KEY_TYPE))
            key_type, bits = _describe_public(public)
            out.append(TokenObject(
                kind="private-key", label=_attr(obj, p11.Attribute.LABEL, "") or "",
                id=(_attr(obj, p11.Attribute.ID, b"") or b"").hex(), key_type=key_type or kind_name, key_bits=bits,
                sensitive=_attr(obj, p11.Attribute.SENSITIVE),
                never_extractable=_attr(obj, p11.Attribute.NEVER_EXTRACTABLE), public_der=_spki(public)))
        for obj in self._objects(p11.ObjectClass.PUBLIC_KEY):
            public = _public_key_of(obj)
            key_type, bits = _describe_public(public)
            out.append(TokenObject(
                kind="public-key", label=_attr(obj, p11.Attribute.LABEL, "") or "",
                id=(_attr(obj, p11.Attribute.ID, b"") or b"").hex(), key_type=key_type, key_bits=bits,
                public_der=_spki(public)))
        for obj in self._objects(p11.ObjectClass.CERTIFICATE):
            der = _attr(obj, p11.Attribute.VALUE, b"") or b""
            label = _attr(obj, p11.Attribute.LABEL, "") or ""
            id_hex = (_attr(obj, p11.Attribute.ID, b"") or b"").hex()
            try:
                cert = x509.load_der_x509_certificate(der)
                cert_public = cert.public_key()
                key_type, bits = _describe_public(cert_public)
                out.append(TokenObject(
                    kind="certificate", label=label, id=id_hex, key_type=key_type, key_bits=bits,
                    subject=cert.subject.rfc4514_string(), serial=format_serial(cert.serial_number),
                    not_after=cert.not_valid_after_utc, der=der, public_der=_spki(cert_public)))
            except (*X509_LOAD_ERRORS, *KEY_ERRORS):  # a certificate object twcactl cannot parse is listed, not fatal
                out.append(TokenObject(kind="certificate", label=label, id=id_hex, der=der))
        return out

    def private_key(self, id_hex: str) -> TokenRSAPrivateKey | TokenECPrivateKey:
        """The private key with CKA_ID ``id_hex`` as a cryptography key (needs a logged-in session).

        The public half comes from the public key object with the same ID,
        else from the private key (RSA), else from a certificate with that ID.

        Raises:
            DeviceError: no such key, or its public half cannot be found (exit 6).
        """
        p11 = _p11()
        keys = self._objects(p11.ObjectClass.PRIVATE_KEY, id_hex)
        if not keys:
            raise DeviceError(f"the token has no private key with ID {id_hex}.")
        public: Any = None
        for pub in self._objects(p11.ObjectClass.PUBLIC_KEY, id_hex):
            public = _public_key_of(pub)
            if public is not None:
                break
        if public is None:
            public = _public_key_of(keys[0])
        if public is None:
            for cert in self._objects(p11.ObjectClass.CERTIFICATE, id_hex):
                with contextlib.suppress(Exception):
                    public = x509.load_der_x509_certificate(_attr(cert, p11.Attribute.VALUE, b"")).public_key()
                    break
        return self._wrap_key(keys[0], public, id_hex)

    def public_key(self, id_hex: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None:
        """The public key object with CKA_ID ``id_hex`` (visible without a login when CKA_PRIVATE is false),
        else a certificate's with that ID; None when the session sees neither.

        Raises:
            DeviceError: the token fails (exit 6).
        """
        p11 = _p11()
        for pub in self._objects(p11.ObjectClass.PUBLIC_KEY, id_hex):
            public = _public_key_of(pub)
            if public is not None:
                return public
        for cert in self._objects(p11.ObjectClass.CERTIFICATE, id_hex):
            with contextlib.suppress(*X509_LOAD_ERRORS, *KEY_ERRORS):
                found = x509.load_der_x509_certificate(_attr(cert, p11.Attribute.VALUE, b"")).public_key()
                if isinstance(found, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
                    return found
        return None

    def _wrap_key(self, obj: Any, public: Any, id_hex: str) -> TokenRSAPrivateKey | TokenECPrivateKey:
        if isinstance(public, rsa.RSAPublicKey):
            return TokenRSAPrivateKey(obj, public, self._mechanisms, id_hex=id_hex)
        if isinstance(public, ec.EllipticCurvePublicKey):
            return TokenECPrivateKey(obj, public, id_hex=id_hex)
        raise DeviceError(f"cannot find the public half of the token key {id_hex}.")

    def generate_key_pair(self, key_type: str, *, label: str, encryption: bool = False,
                          id_hex: str | None = None,
                          public_readable: bool = False) -> TokenRSAPrivateKey | TokenECPrivateKey:
        """Generate a key pair on the token (C_GenerateKeyPair) and return its private half.

        The private key is a token object, private, sensitive and not
        extractable (CKA_SENSITIVE true, CKA_EXTRACTABLE false, so the token
        sets CKA_NEVER_EXTRACTABLE; PKCS#11 v2.40 §4.9), with a fresh
        random 16-byte CKA_ID shared by the public key.

        Args:
            key_type: a :data:`TOKEN_KEY_TYPES` name (``rsa2048`` ...).
            label: CKA_LABEL of both halves.
            encryption: also allow decrypt/unwrap (RSA) or derive (EC), for a ``user-enc`` key.
            id_hex: the CKA_ID to use instead of a random one.
            public_readable: make the public half CKA_PRIVATE false, readable without a login (a CA key:
                ``ca check`` compares it with the CA certificate without the PIN); otherwise the token's default.

        Raises:
            UsageError: unknown key type, or EC on a token without EC (exit 2).
            DeviceError: the token refuses (exit 6).
        """
        p11 = _p11()
        if key_type not in TOKEN_KEY_TYPES:
            raise UsageError(f"unknown key type {key_type!r}; choose one of {', '.join(TOKEN_KEY_TYPES)}.")
        family, size = TOKEN_KEY_TYPES[key_type]
        key_id = bytes.fromhex(id_hex) if id_hex else secrets.token_bytes(16)
        mf = p11.MechanismFlag
        private_template = {
            p11.Attribute.TOKEN: True,
            p11.Attribute.PRIVATE: True,
            p11.Attribute.SENSITIVE: True,
            p11.Attribute.EXTRACTABLE: False,
        }
        public_extra = {p11.Attribute.PRIVATE: False} if public_readable else {}
        try:
            if family == "rsa":
                if "RSA_PKCS_KEY_PAIR_GEN" not in self._mechanisms:
                    raise UsageError("this token cannot generate RSA keys.")
                caps = mf.SIGN | mf.VERIFY | ((mf.ENCRYPT | mf.DECRYPT | mf.WRAP | mf.UNWRAP) if encryption else 0)
                public_template = {p11.Attribute.TOKEN: True, p11.Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01",
                                   **public_extra}
                pub, priv = self._session.generate_keypair(
                    p11.KeyType.RSA, int(size), id=key_id, label=label, store=True, capabilities=caps,
                    public_template=public_template, private_template=private_template)
            else:
                if not self.token.info.has_ec:
                    raise UsageError("this token cannot make EC keys (no EC_KEY_PAIR_GEN / ECDSA).",
                                     hint="use --key-type rsa2048")
                from pkcs11.util.ec import encode_named_curve_parameters

                caps = mf.SIGN | mf.VERIFY | (mf.DERIVE if encryption else 0)
                params = self._session.create_domain_parameters(
                    p11.KeyType.EC, {p11.Attribute.EC_PARAMS: encode_named_curve_parameters(str(size))}, local=True)
                pub, priv = params.generate_keypair(id=key_id, label=label, store=True, capabilities=caps,
                                                    public_template={p11.Attribute.TOKEN: True, **public_extra},
                                                    private_template=private_template)
        except TwcaError:
            raise
        except p11.PKCS11Error as exc:
            raise _wrap_device(exc, "generating a key pair") from exc
        public = _public_key_of(pub)
        return self._wrap_key(priv, public, key_id.hex())

    def write_certificate(self, cert: x509.Certificate, *, label: str, id_hex: str) -> None:
        """Store ``cert`` as a token X.509 certificate object with CKA_ID ``id_hex`` (PKCS#11 v2.40 §4.6.3).

        CKA_TOKEN is set, or the object would vanish with the session.

        Raises:
            DeviceError: the token refuses (exit 6).
        """
        p11 = _p11()
        from asn1crypto.x509 import Certificate as Asn1Certificate

        der = cert.public_bytes(serialization.Encoding.DER)
        # CKA_SERIAL_NUMBER is the DER INTEGER as it appears in the certificate; we read it, never encode it.
        serial_der = Asn1Certificate.load(der)["tbs_certificate"]["serial_number"].dump()
        template = {
            p11.Attribute.CLASS: p11.ObjectClass.CERTIFICATE,
            p11.Attribute.CERTIFICATE_TYPE: p11.CertificateType.X_509,
            p11.Attribute.TOKEN: True,
            p11.Attribute.PRIVATE: False,
            p11.Attribute.LABEL: label,
            p11.Attribute.ID: bytes.fromhex(id_hex),
            p11.Attribute.SUBJECT: cert.subject.public_bytes(),
            p11.Attribute.ISSUER: cert.issuer.public_bytes(),
            p11.Attribute.SERIAL_NUMBER: serial_der,
            p11.Attribute.VALUE: der,
        }
        try:
            self._session.create_object(template)
        except p11.PKCS11Error as exc:
            raise _wrap_device(exc, "writing the certificate") from exc

    def destroy(self, id_hex: str, *, kinds: Sequence[str] = ("private-key", "public-key", "certificate")) -> int:
        """Delete the objects with CKA_ID ``id_hex`` of the given kinds; returns how many were deleted.

        Raises:
            DeviceError: the token refuses (exit 6).
        """
        p11 = _p11()
        classes = {"private-key": p11.ObjectClass.PRIVATE_KEY, "public-key": p11.ObjectClass.PUBLIC_KEY,
                   "certificate": p11.ObjectClass.CERTIFICATE}
        count = 0
        for kind in kinds:
            for obj in self._objects(classes[kind], id_hex):
                try:
                    obj.destroy()
                except p11.PKCS11Error as exc:
                    raise _wrap_device(exc, "deleting an object") from exc
                count += 1
        return count


#: One signature at a time per process: a PKCS#11 session runs one operation at a time (C_SignInit..C_Sign,
#: PKCS#11 v2.40 §5.2), and ``twcactl serve`` signs OCSP responses from several threads with one session.
_SIGN_LOCK = threading.Lock()


def _token_sign(obj: Any, data: bytes, mechanism_name: str) -> bytes:
    p11 = _p11()
    try:
        with _SIGN_LOCK:
            return bytes(obj.sign(data, mechanism=getattr(p11.Mechanism, mechanism_name)))
    except p11.exceptions.UserNotLoggedIn as exc:
        raise DeviceError("the token wants a PIN login before it signs.") from exc
    except p11.PKCS11Error as exc:
        raise _wrap_device(exc, "signing") from exc


def _host_digest(data: bytes, algorithm: Any) -> tuple[bytes, hashes.HashAlgorithm]:
    """(digest, hash algorithm) for ``data``: already a digest under ``Prehashed``."""
    if isinstance(algorithm, Prehashed):
        inner: hashes.HashAlgorithm = algorithm._algorithm
        return data, inner
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize(), algorithm


def _not_on_token(what: str) -> NoReturn:
    raise TypeError(f"{what} is not available for a key that lives on a token: the private key never leaves it.")


class TokenRSAPrivateKey(rsa.RSAPrivateKey):
    """An RSA private key on a token: ``sign()`` runs there, PKCS#1 v1.5 only.

    With SHA-256 and a token that lists CKM_SHA256_RSA_PKCS the token hashes;
    otherwise (opencryptoki, other hashes) we hash on the host and sign the
    DigestInfo with CKM_RSA_PKCS (RFC 8017 §9.2).  Decryption, the private
    numbers and serialisation are refused with a TypeError.
    """

    def __init__(self, obj: Any, public: rsa.RSAPublicKey, mechanisms: frozenset[str], *, id_hex: str) -> None:
        self._obj = obj
        self._public = public
        self._mechanisms = mechanisms
        self.id_hex = id_hex

    def sign(self, data: bytes, padding_: padding.AsymmetricPadding, algorithm: Any) -> bytes:  # type: ignore[override]
        """Sign ``data`` on the token (PKCS#1 v1.5, SHA-256/384/512).

        Raises:
            ValueError: PSS or another padding, or an unsupported hash.
            DeviceError: the token fails (exit 6).
        """
        if not isinstance(padding_, padding.PKCS1v15):
            raise ValueError("token RSA keys sign with PKCS#1 v1.5 padding only.")
        on_token = "SHA256_RSA_PKCS" in self._mechanisms
        if not isinstance(algorithm, Prehashed) and algorithm.name == "sha256" and on_token:
            return _token_sign(self._obj, data, "SHA256_RSA_PKCS")
        digest, hash_alg = _host_digest(data, algorithm)
        prefix = _DIGEST_INFO_PREFIX.get(hash_alg.name)
        if prefix is None:
            raise ValueError(f"token RSA keys sign with SHA-256, SHA-384 or SHA-512, not {hash_alg.name}.")
        return _token_sign(self._obj, prefix + digest, "RSA_PKCS")

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        _not_on_token("decrypt() through cryptography")

    @property
    def key_size(self) -> int:
        """The modulus size in bits."""
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        """The public half, read from the token."""
        return self._public

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _not_on_token("private_numbers()")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        _not_on_token("private_bytes()")

    def __copy__(self) -> TokenRSAPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenRSAPrivateKey:
        return self


class TokenECPrivateKey(ec.EllipticCurvePrivateKey):
    """An EC private key on a token: hash on the host, raw CKM_ECDSA on the token, then DER.

    SoftHSM2 lacks CKM_ECDSA_SHA256, and PKCS#11 returns ``r || s`` (v2.40
    §2.3.1), which X.509 and CMS want as a DER ECDSA-Sig-Value (RFC 3279
    §2.2.3): without ``encode_dss_signature`` verification fails silently.
    """

    def __init__(self, obj: Any, public: ec.EllipticCurvePublicKey, *, id_hex: str) -> None:
        self._obj = obj
        self._public = public
        self.id_hex = id_hex

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:  # type: ignore[override]
        """Sign ``data`` on the token with ECDSA; returns the DER signature.

        Raises:
            ValueError: not ECDSA.
            DeviceError: the token fails (exit 6).
        """
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise ValueError("token EC keys sign with ECDSA only.")
        digest, _hash = _host_digest(data, signature_algorithm.algorithm)
        raw = _token_sign(self._obj, digest, "ECDSA")
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        _not_on_token("exchange()")

    @property
    def curve(self) -> ec.EllipticCurve:
        """The key's curve."""
        return self._public.curve

    @property
    def key_size(self) -> int:
        """The curve size in bits."""
        return self._public.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half, read from the token."""
        return self._public

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _not_on_token("private_numbers()")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        _not_on_token("private_bytes()")

    def __copy__(self) -> TokenECPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenECPrivateKey:
        return self


def release_module(path: str) -> None:
    """C_Finalize ``path`` if this process loaded it: ends every session and lets a token
    daemon (opencryptoki's pkcsslotd) stop; the next :class:`Pkcs11Module` initialises it again."""
    import sys

    p11 = sys.modules.get("pkcs11")
    if p11 is None or path not in getattr(p11, "_loaded", {}):
        return
    with contextlib.suppress(p11.PKCS11Error):
        p11.lib(path).finalize()


__all__ = [
    "MODULE_CANDIDATES", "TOKEN_KEY_TYPES", "P11Session", "P11Token", "Pkcs11Module", "TokenECPrivateKey",
    "TokenRSAPrivateKey", "configured_module_path", "find_module", "open_token_anywhere", "release_module",
    "search_order",
]
