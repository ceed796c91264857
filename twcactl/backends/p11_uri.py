"""PKCS#11 URIs (RFC 7512): where a CA key on a token lives.

``ca init --key-uri 'pkcs11:token=CA'`` names the token the CA keys are made
on; the store records one URI per CA key in place of a key file path
(``cas.key_file``), e.g.
``pkcs11:token=CA;object=Lab%20uca;id=%9a%0b...;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so``.

Pure text handling, no ``pkcs11`` import.  Parsed here: the path attributes
``token``, ``object``, ``id``, ``serial``, ``manufacturer``, ``model``,
``type`` (RFC 7512 §2.3) and the query attributes ``module-path`` and
``pin-source``; the other standard attributes are accepted and ignored,
vendor attributes (``x-...``) likewise.  ``pin-value`` is refused: a PIN in a
URI ends up in argv, shell history and the database (twcactl takes secrets as
SOURCEs only).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from twcactl.errors import UsageError

SCHEME = "pkcs11:"

#: Path attributes of RFC 7512 §2.3 (those twcactl uses are fields of :class:`Pkcs11Uri`).
PATH_ATTRIBUTES = frozenset({
    "token", "manufacturer", "serial", "model", "library-manufacturer", "library-description",
    "library-version", "object", "type", "id", "slot-description", "slot-manufacturer", "slot-id",
})
#: Query attributes of RFC 7512 §2.3.
QUERY_ATTRIBUTES = frozenset({"pin-source", "pin-value", "module-name", "module-path"})
OBJECT_TYPES = frozenset({"public", "private", "cert", "secret-key", "data"})

# RFC 7512 §2.3 pk11-pchar / pk11-qchar without the percent sign: what may stay unencoded.
_PATH_SAFE = "-._~!$'()*+,=:@&"
_QUERY_SAFE = "-._~!$'()*+,=:/?|@"


def is_pkcs11_uri(text: str) -> bool:
    """True when ``text`` starts with the ``pkcs11:`` scheme (case-insensitive, RFC 3986 §3.1)."""
    return text[: len(SCHEME)].lower() == SCHEME


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of a PKCS#11 URI twcactl uses (RFC 7512).

    Attributes:
        token: CKA token label (``token=``).
        object: CKA_LABEL of the object (``object=``).
        id_hex: CKA_ID, lower-case hex (``id=``, pct-encoded bytes in the URI).
        serial / manufacturer / model: the token's serial number, manufacturer and model.
        type: ``private``, ``public``, ``cert``, ``secret-key`` or ``data``.
        module_path: the PKCS#11 library to load (``?module-path=``).
        pin_source: where the PIN is (``?pin-source=``; a file path or ``file:`` URI).
    """

    token: str | None = None
    object: str | None = None
    id_hex: str | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    type: str | None = None
    module_path: str | None = None
    pin_source: str | None = None

    def to_text(self) -> str:
        """The URI in RFC 7512 form: path attributes ``;``-separated, then ``?`` query attributes; every
        value pct-encoded where RFC 7512 §2.3 requires it (``id`` always, byte by byte)."""
        path = [f"{name}={quote(value, safe=_PATH_SAFE)}" for name, value in (
            ("token", self.token), ("manufacturer", self.manufacturer), ("serial", self.serial),
            ("model", self.model), ("object", self.object)) if value is not None]
        if self.id_hex is not None:
            path.append("id=" + "".join(f"%{b:02x}" for b in bytes.fromhex(self.id_hex)))
        if self.type is not None:
            path.append(f"type={self.type}")
        query = [f"{name}={quote(value, safe=_QUERY_SAFE)}" for name, value in (
            ("module-path", self.module_path), ("pin-source", self.pin_source)) if value is not None]
        return SCHEME + ";".join(path) + ("?" + "&".join(query) if query else "")

    def redacted(self) -> str:
        """The URI for messages and the store: without ``pin-source``."""
        return Pkcs11Uri(token=self.token, object=self.object, id_hex=self.id_hex, serial=self.serial,
                         manufacturer=self.manufacturer, model=self.model, type=self.type,
                         module_path=self.module_path).to_text()


def _decode(name: str, raw: str) -> bytes:
    if "%" in raw:
        pieces = raw.split("%")[1:]
        if any(len(p) < 2 or any(c not in "0123456789abcdefABCDEF" for c in p[:2]) for p in pieces):
            raise UsageError(f"the PKCS#11 URI's {name} holds a bad %-escape.")
    return unquote_to_bytes(raw)


def _text(name: str, raw: str) -> str:
    try:
        return _decode(name, raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the PKCS#11 URI's {name} is not UTF-8 text.") from exc


def _attributes(part: str, separator: str, known: frozenset[str], where: str) -> dict[str, str]:
    """name -> raw value of one component; duplicates and unknown standard names refused (RFC 7512 §2.3)."""
    out: dict[str, str] = {}
    for item in part.split(separator) if part else []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"the PKCS#11 URI has a {where} attribute without a name=value form: {item!r}.")
        name = name.lower()
        if name not in known and not name.startswith("x-"):
            raise UsageError(f"the PKCS#11 URI has an unknown {where} attribute {name!r} (RFC 7512 §2.3).")
        if name in out:
            raise UsageError(f"the PKCS#11 URI gives {name} twice.")
        out[name] = value
    return out


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse an RFC 7512 PKCS#11 URI.

    Args:
        text: ``pkcs11:path-attrs[?query-attrs]``, e.g. ``pkcs11:token=CA`` or
            ``pkcs11:token=CA;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so``.

    Raises:
        UsageError: not a ``pkcs11:`` URI, a malformed or repeated attribute, an unknown standard attribute,
            a bad ``type`` or %-escape, or a ``pin-value`` (refused: give the PIN as a SOURCE) (exit 2).
    """
    if not is_pkcs11_uri(text):
        raise UsageError(f"{text[:40]!r} is not a PKCS#11 URI (RFC 7512: pkcs11:token=LABEL;...).")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise UsageError("a PKCS#11 URI holds no spaces or control characters; %-encode them (%20).")
    path_part, _q, query_part = text[len(SCHEME):].partition("?")
    if "#" in query_part or "#" in path_part:
        raise UsageError("a PKCS#11 URI has no fragment (#).")
    path = _attributes(path_part, ";", PATH_ATTRIBUTES, "path")
    query = _attributes(query_part, "&", QUERY_ATTRIBUTES, "query")
    if "pin-value" in query:
        raise UsageError("the PKCS#11 URI holds a pin-value; twcactl never takes a PIN in a URI.",
                         hint="give the PIN with --ca-passphrase SOURCE (env:NAME, file:PATH, fd:N, stdin)")
    object_type = _text("type", path["type"]) if "type" in path else None
    if object_type is not None and object_type not in OBJECT_TYPES:
        raise UsageError(f"the PKCS#11 URI's type {object_type!r} is not one of {', '.join(sorted(OBJECT_TYPES))}.")
    fields = {name: _text(name, path[name]) for name in ("token", "object", "serial", "manufacturer", "model")
              if name in path}
    return Pkcs11Uri(
        **fields,
        id_hex=_decode("id", path["id"]).hex() if "id" in path else None,
        type=object_type,
        module_path=_text("module-path", query["module-path"]) if "module-path" in query else None,
        pin_source=_text("pin-source", query["pin-source"]) if "pin-source" in query else None,
    )


__all__ = ["Pkcs11Uri", "is_pkcs11_uri", "parse_pkcs11_uri"]
