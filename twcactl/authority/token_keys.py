"""CA keys on a PKCS#11 token (issue 14): made there by ``ca init --key-uri``, used there by every signing command.

A home whose CA keys live on a token records, for each CA, the RFC 7512 URI
of its private key in ``cas.key_file`` (``pkcs11:token=CA;object=...;id=...;
type=private?module-path=...``; :mod:`twcactl.backends.p11_uri`) and holds no
key file.  The token's user PIN is what ``--ca-passphrase`` gives; the home
is marked ``ca_key_encrypted`` so every signing command asks for it.

The keys are generated on the token by C_GenerateKeyPair as token objects,
private, sensitive and not extractable (CKA_TOKEN, CKA_PRIVATE,
CKA_SENSITIVE true, CKA_EXTRACTABLE false, so CKA_NEVER_EXTRACTABLE is true:
PKCS#11 v2.40 §4.9), with a random 16-byte CKA_ID and the label
``"<label base> <CA name>"``; their public halves are readable without a
login (so ``ca check`` compares them with the certificates without the PIN).

:func:`load_token_key` returns the key as a cryptography private key
(``TokenRSAPrivateKey`` / ``TokenECPrivateKey``) whose ``sign()`` runs on
the token, so certificates, CRLs and OCSP responses are signed by the same
code as with a key file.  Its session stays open until
:func:`release_token_sessions` (the CLI calls it when a command ends).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

from cryptography import x509

from twcactl.backends.p11 import (
    MODULE_CANDIDATES,
    P11Session,
    Pkcs11Module,
    configured_module_path,
    find_module,
)
from twcactl.backends.p11_uri import Pkcs11Uri, parse_pkcs11_uri
from twcactl.errors import AuthError, DeviceError, StateError, TwcaError, UsageError
from twcactl.pkix.keys import PrivateKey
from twcactl.store.records import CaRecord

PIN_HINT = "give the token's user PIN with --ca-passphrase SOURCE, or set TWCACTL_CA_PASSPHRASE_SOURCE"

#: Open logged-in sessions, (module path, token label) -> session; closed by :func:`release_token_sessions`.
_SESSIONS: dict[tuple[str, str], P11Session] = {}


def _open_module(path: str, *, again: bool = False) -> Pkcs11Module:
    """Load ``path``.  The first time in a command it is re-initialised (a fresh view of the tokens), which
    ends every session of this process on it, so those are forgotten.  ``again``: a session of ours was
    ended by someone else's re-initialisation (a card command on the same library) -- open a new one without
    re-initialising, which would end theirs in turn.

    Raises:
        DeviceError: not a loadable module (exit 6).
    """
    for key in [k for k in _SESSIONS if k[0] == path]:
        _SESSIONS.pop(key).close()  # a no-op for a session a re-initialisation already ended
    return Pkcs11Module(path, reinitialize=not again)


def resolve_init_module(uri: Pkcs11Uri, module: str | None) -> str:
    """The PKCS#11 module ``ca init --key-uri`` loads: ``module`` (``--pkcs11-module`` or
    ``$TWCACTL_PKCS11_MODULE``, resolved by the CLI), else the URI's ``module-path``, else the usual paths.

    The module is recorded in each key's URI and loaded by every later signing command, so it must pass
    the check a home's configured module passes (a usual path, or a root-owned file: issue 13).

    Raises:
        UsageError: ``--pkcs11-module`` and the URI's module-path name different files (exit 2).
        DeviceError: no such module (exit 6).  StateError: a module another user could change (exit 5).
    """
    if module and uri.module_path and os.path.realpath(module) != os.path.realpath(uri.module_path):
        raise UsageError("--pkcs11-module and the key URI's module-path name different modules.")
    chosen = find_module(module or uri.module_path)
    return configured_module_path(chosen)


def recorded_module(uri: Pkcs11Uri) -> str:
    """The module a recorded key URI names, checked like a configured module (issue 13: the store could name
    any library); when that path does not exist on this machine, the usual path with the same file name.

    Raises:
        DeviceError: no such module here (exit 6).  StateError: a module another user could change (exit 5).
    """
    if not uri.module_path:
        return find_module(None)
    if not os.path.isfile(uri.module_path):
        same = [p for p in MODULE_CANDIDATES if os.path.basename(p) == os.path.basename(uri.module_path)]
        for path in same:
            if os.path.isfile(path):
                return path
    return configured_module_path(uri.module_path)


class TokenKeyMaker:
    """Makes the CA keys of a new home on a token (``ca init --key-uri``); use as a context manager.

    Keys made are destroyed again when the ``with`` block ends in an exception: a failed ``ca init``
    leaves no orphan CA key on the token (besides one killed outright).  :attr:`places` maps each CA name
    to its key's URI, what the store records in ``cas.key_file``.
    """

    def __init__(self, uri_text: str, module: str | None, pin: str | None, *, label_base: str,
                 names: Sequence[str]) -> None:
        """Load the module, find the token, log in, and check that the labels of ``names``' keys are free.

        Raises:
            UsageError: a bad URI, or no PIN (exit 2).  PinError: the PIN is wrong or locked (exit 4).
            DeviceError: no module or token (exit 6).  StateError: the token already holds a key with one of
                this CA's labels, or the module is not trusted (exit 5).
        """
        self.uri = parse_pkcs11_uri(uri_text)
        if not self.uri.token:
            raise UsageError("the key URI names no token; give pkcs11:token=LABEL.")
        if self.uri.id_hex is not None or (self.uri.type not in (None, "private")):
            raise UsageError("ca init makes one key per CA: the key URI takes token= (and object= as the label base),"
                             " not id= or type=.")
        if pin is None:
            raise UsageError("CA keys on a token need the token's user PIN.", hint=PIN_HINT)
        self.module_path = resolve_init_module(self.uri, module)
        self.label_base = self.uri.object or label_base
        self._made: list[str] = []
        self.places: dict[str, str] = {}
        token = _open_module(self.module_path).open_token(self.uri.token)
        self.session = token.session(pin, rw=True)
        try:
            self.check_labels_free(names)
        except BaseException:
            self.session.close()
            raise

    def __enter__(self) -> TokenKeyMaker:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is not None:
                for id_hex in self._made:
                    with contextlib.suppress(TwcaError):
                        self.session.destroy(id_hex)
        finally:
            self.session.close()

    def check_labels_free(self, names: Sequence[str]) -> None:
        """Refuse a token that already holds an object labelled like one of this CA's keys.

        Raises:
            StateError: such an object exists (exit 5).
        """
        taken = {obj.label for obj in self.session.objects()}
        for name in names:
            if self.label(name) in taken:
                raise StateError(f"the token {self.uri.token!r} already holds an object labelled "
                                 f"{self.label(name)!r}; refusing to make a second CA key under that name.",
                                 hint="use another --name, or object=PREFIX in the key URI")

    def label(self, name: str) -> str:
        """CKA_LABEL of CA ``name``'s key: ``"<label base> <name>"`` (``twcactl Local uca``)."""
        return f"{self.label_base} {name}"

    def new_key(self, name: str, key_type: str) -> PrivateKey:
        """Generate CA ``name``'s key pair on the token; its RFC 7512 URI (no PIN in it) goes to :attr:`places`.

        Raises:
            UsageError: a key type the token cannot make (exit 2).  DeviceError: the token refuses (exit 6).
        """
        key = self.session.generate_key_pair(key_type, label=self.label(name), public_readable=True)
        self._made.append(key.id_hex)
        uri = Pkcs11Uri(token=self.uri.token, object=self.label(name), id_hex=key.id_hex, type="private",
                        module_path=self.module_path)
        self.places[name] = uri.to_text()
        return key

    def finish(self, names: Sequence[str], certs: Sequence[x509.Certificate]) -> None:
        """Put each CA certificate on the token beside its key (same CKA_ID and label), for other PKCS#11 tools.

        Raises:
            DeviceError: the token refuses (exit 6).
        """
        for name, cert, id_hex in zip(names, certs, self._made):
            self.session.write_certificate(cert, label=self.label(name), id_hex=id_hex)


def _stored_uri(ca: CaRecord) -> Pkcs11Uri:
    """The recorded URI of ``ca``'s key, which must name a token and an id.

    Raises:
        StateError: the record's URI is not usable (exit 5).
    """
    try:
        uri = parse_pkcs11_uri(ca.key_uri or "")
    except UsageError as exc:
        raise StateError(f"the key URI recorded for CA {ca.name} is not valid: {exc.message}") from exc
    if not uri.token or not uri.id_hex:
        raise StateError(f"the key URI recorded for CA {ca.name} names no token and id.")
    return uri


#: Seconds between the tries of :func:`_open_session` (a token another process is writing can be missed).
TOKEN_RETRY_WAITS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)


def _open_session(module: str, label: str, pin: str | None, *, again: bool) -> P11Session:
    """A session on the token labelled ``label`` through ``module`` (logged in when ``pin`` is given), tried
    again (re-initialising) a few times when the token is not seen or fails: several processes sharing one
    SoftHSM2 token directory (the nodes of docs/scale-out.md) can miss the token, or get CKR_GENERAL_ERROR,
    while another process's C_Login rewrites its ``token.object`` (SoftHSM2's token integrity check fails
    for that instant; SoftHSMv2 issue 757; about one command in twenty failed so with four nodes).  A wrong
    PIN is never tried again.  A token that is really absent costs :data:`TOKEN_RETRY_WAITS` (0.75 s) more
    before exit 6.

    Raises:
        PinError: the PIN is wrong or locked (exit 4).
        DeviceError: no module, or still no token labelled ``label`` after the last try (exit 6).
    """
    for wait in (*TOKEN_RETRY_WAITS, None):
        try:
            return _open_module(module, again=again).open_token(label).session(pin)
        except DeviceError:
            if wait is None or again:  # without re-initialising, the module would not look again
                raise
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def load_token_key(ca: CaRecord, pin: str | None) -> PrivateKey:
    """``ca``'s private key on its token, logged in with ``pin``, as a cryptography private key.

    The session stays open (and is reused for the other CAs on the same token) until
    :func:`release_token_sessions`.

    Raises:
        AuthError: no PIN given (exit 4).  PinError: the PIN is wrong or locked (exit 4).
        DeviceError: no module, no token with the recorded label, or no key with the recorded id (exit 6).
        StateError: a bad recorded URI or untrusted module (exit 5).
    """
    uri = _stored_uri(ca)
    if pin is None:
        raise AuthError(f"the CA key of {ca.name} is on the token {uri.token!r} and needs its PIN.", hint=PIN_HINT)
    module = recorded_module(uri)
    assert uri.token is not None and uri.id_hex is not None  # _stored_uri checked both
    cached = _SESSIONS.get((module, uri.token))
    if cached is not None and cached.current:
        with contextlib.suppress(DeviceError):
            return cached.private_key(uri.id_hex)
    # a session another Pkcs11Module's C_Initialize ended (a card command on the same library): open a new
    # one without re-initialising, which would end that command's session in turn
    try:
        session = _open_session(module, uri.token, pin, again=cached is not None)
    except DeviceError as exc:
        raise DeviceError(f"the key of CA {ca.name} is out of reach: {exc.message}",
                          hint=f"the CA keys are on the token {uri.token!r} through {module}: make the token "
                               "reachable (pkcs11-tool --module MODULE --list-slots shows what the module sees)"
                          ) from exc
    _SESSIONS[(module, uri.token)] = session
    return session.private_key(uri.id_hex)


def token_public_key(ca: CaRecord) -> Any:
    """The public half of ``ca``'s token key, read without a login (``ca check``).

    Raises:
        DeviceError: no module or token, or the key's public half is not visible (exit 6).
        StateError: a bad recorded URI or untrusted module (exit 5).
    """
    uri = _stored_uri(ca)
    assert uri.token is not None and uri.id_hex is not None
    module = recorded_module(uri)
    cached = _SESSIONS.get((module, uri.token))
    if cached is not None and cached.current:
        with contextlib.suppress(DeviceError):
            found = cached.public_key(uri.id_hex)
            if found is not None:
                return found
    with _open_session(module, uri.token, None, again=False) as session:
        found = session.public_key(uri.id_hex)
    if found is None:
        raise DeviceError(f"the token {uri.token!r} shows no public key with the id of CA {ca.name}'s key.")
    return found


def release_token_sessions() -> None:
    """Close every session :func:`load_token_key` opened (logging out); the CLI calls it when a command ends."""
    while _SESSIONS:
        _SESSIONS.popitem()[1].close()


__all__ = ["TokenKeyMaker", "load_token_key", "release_token_sessions", "token_public_key"]
