"""JWS requests of ACME (RFC 8555 §6.2), parsed and verified with ``acme.jws`` / ``josepy``; no JOSE of our own.

Only the flattened JSON serialization, one signature, no unprotected header;
``alg`` an asymmetric algorithm; exactly one of ``jwk`` and ``kid``;
``nonce`` and ``url`` present.  The EAB inner JWS (§7.3.4) is an HMAC over
the account key; the keyChange inner JWS (§7.3.5) is signed by the new key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import josepy as jose
from acme import jws as acme_jws

from twcactl.authority.acme import AcmeProblem, b64url, b64url_decode

#: Signature algorithms accepted on the outer JWS (RFC 8555 §6.2: RS256 and ES256 at least).
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
EAB_ALGORITHMS = {"HS256": jose.HS256, "HS384": jose.HS384, "HS512": jose.HS512}


@dataclass(frozen=True)
class Signed:
    """A parsed (not yet verified) JWS request."""

    jws: Any
    protected: dict[str, Any]
    payload: bytes
    url: str
    nonce: str
    kid: str | None
    jwk: Any | None

    def payload_json(self) -> dict[str, Any]:
        """The payload as a JSON object ({} for POST-as-GET).

        Raises:
            AcmeProblem: ``malformed``.
        """
        if self.payload == b"":
            return {}
        try:
            doc = json.loads(self.payload)
        except ValueError as exc:
            raise AcmeProblem("malformed", "the JWS payload is not JSON.") from exc
        if not isinstance(doc, dict):
            raise AcmeProblem("malformed", "the JWS payload is not a JSON object.")
        return doc


def _flattened(body: bytes, *, what: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    try:
        obj = json.loads(body) if isinstance(body, bytes | str) else body
        if isinstance(obj, Mapping):  # josepy hands nested objects over as immutable mappings
            obj = dict(obj)
    except ValueError as exc:
        raise AcmeProblem("malformed", f"{what} is not JSON.") from exc
    if not isinstance(obj, dict) or set(obj) != {"protected", "payload", "signature"}:
        raise AcmeProblem("malformed", f"{what} must be a flattened JWS with protected, payload and signature only.")
    try:
        protected = json.loads(b64url_decode(obj["protected"]))
        b64url_decode(obj["payload"])
        b64url_decode(obj["signature"])
        parsed = acme_jws.JWS.from_json(obj)
    except (ValueError, TypeError, jose.DeserializationError) as exc:
        raise AcmeProblem("malformed", f"{what} cannot be decoded.") from exc
    if not isinstance(protected, dict):
        raise AcmeProblem("malformed", f"{what}'s protected header is not an object.")
    return parsed, protected, obj


def parse(body: bytes) -> Signed:
    """Parse an ACME request body.

    Raises:
        AcmeProblem: ``malformed`` or ``badSignatureAlgorithm``.
    """
    parsed, protected, _obj = _flattened(body, what="the request")
    alg = protected.get("alg")
    if alg not in ALGORITHMS:
        raise AcmeProblem("badSignatureAlgorithm", f"alg {alg!r} is not accepted; use one of ES256, RS256.")
    if ("jwk" in protected) == ("kid" in protected):
        raise AcmeProblem("malformed", "the protected header needs exactly one of jwk and kid.")
    nonce, url = protected.get("nonce"), protected.get("url")
    if not isinstance(nonce, str) or not isinstance(url, str):
        raise AcmeProblem("malformed" if isinstance(nonce, str) else "badNonce",
                          "the protected header needs a nonce and a url.")
    jwk = None
    if "jwk" in protected:
        jwk = _public_jwk(protected["jwk"])
    kid = protected.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise AcmeProblem("malformed", "kid must be a string.")
    return Signed(jws=parsed, protected=protected, payload=parsed.payload, url=url, nonce=nonce, kid=kid, jwk=jwk)


def _public_jwk(doc: Any) -> Any:
    try:
        key = jose.JWK.from_json(doc)
    except (jose.DeserializationError, ValueError, TypeError, KeyError) as exc:
        raise AcmeProblem("malformed", "the jwk cannot be decoded.") from exc
    if isinstance(key, jose.JWKOct) or not isinstance(key, jose.JWK) or key.public_key() != key:
        raise AcmeProblem("malformed", "the jwk must be a public key.")
    return key


def verify(signed: Signed, key: Any) -> None:
    """Check the signature with ``key`` (a josepy JWK).

    Raises:
        AcmeProblem: ``malformed`` when it does not verify.
    """
    try:
        ok = signed.jws.verify(key)
    except Exception:  # noqa: BLE001 - any failure inside the verifier is a bad signature
        ok = False
    if not ok:
        raise AcmeProblem("malformed", "the JWS signature does not verify.")


def thumbprint(key: Any) -> str:
    """The RFC 7638 SHA-256 thumbprint of a JWK, base64url."""
    return b64url(key.thumbprint())


def jwk_json(key: Any) -> str:
    """The public JWK as compact JSON."""
    return json.dumps(key.public_key().to_partial_json(), sort_keys=True, separators=(",", ":"))


def load_jwk(text: str) -> Any:
    """A JWK stored by :func:`jwk_json`."""
    return jose.JWK.from_json(json.loads(text))


def eab_kid(eab: Any) -> str:
    """The key ID of an EAB inner JWS (before it is verified).

    Raises:
        AcmeProblem: ``malformed``.
    """
    _parsed, protected, _obj = _flattened(eab, what="externalAccountBinding")
    kid = protected.get("kid")
    if not isinstance(kid, str):
        raise AcmeProblem("malformed", "externalAccountBinding has no kid.")
    return kid


def verify_eab(eab: Any, *, hmac_key: bytes, url: str, account_key: Any) -> None:
    """Check an EAB inner JWS (RFC 8555 §7.3.4): an HMAC alg, no nonce, the newAccount url, the account key
    as payload, the MAC under ``hmac_key``.

    Raises:
        AcmeProblem: ``unauthorized`` or ``malformed``.
    """
    parsed, protected, _obj = _flattened(eab, what="externalAccountBinding")
    alg = protected.get("alg")
    if alg not in EAB_ALGORITHMS or "nonce" in protected or protected.get("url") != url:
        raise AcmeProblem("malformed", "externalAccountBinding needs an HMAC alg, the newAccount url and no nonce.")
    try:
        inner_key = jose.JWK.from_json(json.loads(parsed.payload))
        ok = parsed.verify(jose.JWKOct(key=hmac_key))
    except Exception:  # noqa: BLE001 - a payload that is not a key or a bad MAC: refused alike
        ok = False
        inner_key = None
    if not ok or inner_key is None or thumbprint(inner_key) != thumbprint(account_key):
        raise AcmeProblem("unauthorized", "the external account binding does not verify.", status=403)


def verify_key_change(inner_body: Any, *, outer_url: str, account_url: str, old_key: Any) -> Any:
    """Check a keyChange inner JWS (RFC 8555 §7.3.5) and return the new key.

    Raises:
        AcmeProblem: ``malformed``.
    """
    parsed, protected, _obj = _flattened(inner_body, what="the keyChange inner JWS")
    if (protected.get("alg") not in ALGORITHMS or "jwk" not in protected or "nonce" in protected
            or protected.get("url") != outer_url):
        raise AcmeProblem("malformed", "the inner keyChange JWS needs an alg, a jwk, the same url and no nonce.")
    new_key = _public_jwk(protected["jwk"])
    signed = Signed(jws=parsed, protected=protected, payload=parsed.payload, url=outer_url, nonce="", kid=None,
                    jwk=new_key)
    verify(signed, new_key)
    doc = signed.payload_json()
    if doc.get("account") != account_url:
        raise AcmeProblem("malformed", "keyChange: the account URL does not match.")
    try:
        old = jose.JWK.from_json(doc.get("oldKey") or {})
    except Exception as exc:  # noqa: BLE001
        raise AcmeProblem("malformed", "keyChange: oldKey is not a key.") from exc
    if thumbprint(old) != thumbprint(old_key):
        raise AcmeProblem("malformed", "keyChange: oldKey is not the account's key.")
    return new_key
