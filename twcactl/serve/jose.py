"""JWS requests of ACME (RFC 8555 §6.2), parsed and verified with ``acme.jws`` / ``josepy``; no JOSE of our own.

Only the flattened JSON serialization, one signature, no unprotected header;
``alg`` an asymmetric algorithm; exactly one of ``jwk`` and ``kid``;
``nonce`` and ``url`` present.  The EAB inner JWS (§7.3.4) is an HMAC over
the account key; the keyChange inner JWS (§7.3.5) is signed by the new key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
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


def _raw(body: Any, *, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The flattened JWS object and its decoded protected header, nothing checked beyond their shape.

    Raises:
        AcmeProblem: ``malformed``.
    """
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
    except (ValueError, TypeError) as exc:
        raise AcmeProblem("malformed", f"{what} cannot be decoded.") from exc
    if not isinstance(protected, dict):
        raise AcmeProblem("malformed", f"{what}'s protected header is not an object.")
    return obj, protected


def _josepy(obj: dict[str, Any], *, what: str) -> Any:
    """The josepy JWS of a flattened object whose header was checked already.

    Raises:
        AcmeProblem: ``malformed`` for anything josepy cannot read (it raises several kinds).
    """
    try:
        return acme_jws.JWS.from_json(obj)
    except Exception as exc:  # noqa: BLE001 - every failure to deserialize is the client's malformed JWS
        raise AcmeProblem("malformed", f"{what} cannot be decoded.") from exc


def _flattened(body: Any, *, what: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    obj, protected = _raw(body, what=what)
    return _josepy(obj, what=what), protected, obj


def _alg(protected: dict[str, Any], accepted: Collection[str], *, what: str) -> str:
    """The header's ``alg`` when it is one of ``accepted`` (a string; never ``none``, RFC 8555 §6.2).

    Raises:
        AcmeProblem: ``badSignatureAlgorithm`` with the accepted list (RFC 8555 §6.2: ``algorithms``).
    """
    alg = protected.get("alg")
    if not isinstance(alg, str) or alg not in accepted:
        raise AcmeProblem("badSignatureAlgorithm", f"{what}: alg {alg!r} is not accepted; use one of "
                                                   f"{', '.join(sorted(accepted))}.",
                          extra={"algorithms": sorted(accepted)})
    return alg


def parse(body: bytes) -> Signed:
    """Parse an ACME request body (RFC 8555 §6.2): the header is checked before josepy reads it, so that
    every bad header is a 400 with its own error type.

    Raises:
        AcmeProblem: ``malformed``, ``badSignatureAlgorithm`` or ``badNonce``.
    """
    obj, protected = _raw(body, what="the request")
    _alg(protected, ALGORITHMS, what="the request")
    nonce, url = protected.get("nonce"), protected.get("url")
    if not isinstance(nonce, str) or not nonce or not _is_b64url(nonce):
        raise AcmeProblem("badNonce", "the protected header needs a nonce the server gave (base64url).")
    if not isinstance(url, str) or not url:
        raise AcmeProblem("malformed", "the protected header needs the request's url.")
    if ("jwk" in protected) == ("kid" in protected):
        raise AcmeProblem("malformed", "the protected header needs exactly one of jwk and kid.")
    kid = protected.get("kid")
    if "kid" in protected and (not isinstance(kid, str) or not kid):
        raise AcmeProblem("malformed", "kid must be an account URL.")
    jwk = _public_jwk(protected["jwk"]) if "jwk" in protected else None
    parsed = _josepy(obj, what="the request")
    return Signed(jws=parsed, protected=protected, payload=parsed.payload, url=url, nonce=nonce, kid=kid, jwk=jwk)


def _is_b64url(text: str) -> bool:
    try:
        b64url_decode(text)
    except ValueError:
        return False
    return True


#: The JWS alg each key fits (RFC 7518 §3.4: ES256 is P-256 and SHA-256...; RFC 8555 §6.2 asks for RS256 and
#: ES256); RSA keys must have at least this many bits (NIST SP 800-57, BR §6.1.5).
EC_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
MIN_RSA_BITS = 2048


def check_key_alg(alg: str, key: Any) -> None:
    """``alg`` must be the algorithm of ``key`` (a josepy JWK): ES256/P-256, ES384/P-384, ES512/P-521, RS*/PS*
    with an RSA key of at least :data:`MIN_RSA_BITS` bits (RFC 7518 §3.4).

    Raises:
        AcmeProblem: ``badSignatureAlgorithm`` (alg and key do not match), ``badPublicKey`` (RSA too short,
            another key type).
    """
    if isinstance(key, jose.JWKEC):
        curve = str(getattr(getattr(key.key, "curve", None), "name", ""))
        wanted = EC_ALGS.get(curve)
        if wanted is None:
            raise AcmeProblem("badPublicKey", "the key's curve is not P-256, P-384 or P-521.")
        if alg != wanted:
            raise AcmeProblem("badSignatureAlgorithm", f"alg {alg} does not fit a {curve} key; use {wanted}.",
                              extra={"algorithms": [wanted]})
    elif isinstance(key, jose.JWKRSA):
        if key.key.key_size < MIN_RSA_BITS:
            raise AcmeProblem("badPublicKey", f"an RSA account key needs at least {MIN_RSA_BITS} bits.")
        if alg not in RSA_ALGS:
            raise AcmeProblem("badSignatureAlgorithm", f"alg {alg} does not fit an RSA key.",
                              extra={"algorithms": sorted(RSA_ALGS)})
    else:
        raise AcmeProblem("badPublicKey", "the key must be an EC (P-256, P-384, P-521) or RSA key.")


def _public_jwk(doc: Any) -> Any:
    try:
        key = jose.JWK.from_json(doc)
    except (jose.DeserializationError, ValueError, TypeError, KeyError) as exc:
        raise AcmeProblem("malformed", "the jwk cannot be decoded.") from exc
    if isinstance(key, jose.JWKOct) or not isinstance(key, jose.JWK) or key.public_key() != key:
        raise AcmeProblem("malformed", "the jwk must be a public key.")
    if isinstance(key, jose.JWKRSA) and key.key.key_size < MIN_RSA_BITS:
        raise AcmeProblem("badPublicKey", f"an RSA account key needs at least {MIN_RSA_BITS} bits.")
    return key


def verify(signed: Signed, key: Any) -> None:
    """Check the signature with ``key`` (a josepy JWK), whose algorithm must be the header's ``alg``.

    Raises:
        AcmeProblem: ``malformed`` when it does not verify; see :func:`check_key_alg`.
    """
    check_key_alg(str(signed.protected.get("alg")), key)
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
    """The key ID of an EAB inner JWS (before it is verified), its header checked (RFC 8555 §7.3.4).

    Raises:
        AcmeProblem: ``malformed`` or ``badSignatureAlgorithm`` (not an HMAC alg).
    """
    _obj, protected = _raw(eab, what="externalAccountBinding")
    _alg(protected, EAB_ALGORITHMS, what="externalAccountBinding")
    kid = protected.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AcmeProblem("malformed", "externalAccountBinding has no kid.")
    if "nonce" in protected or "jwk" in protected:
        raise AcmeProblem("malformed", "externalAccountBinding must have no nonce and no jwk.")
    return kid


def verify_eab(eab: Any, *, hmac_key: bytes, url: str, account_key: Any) -> None:
    """Check an EAB inner JWS (RFC 8555 §7.3.4): an HMAC alg, no nonce, the newAccount url, the account key
    as payload, the MAC under ``hmac_key``.

    Raises:
        AcmeProblem: ``badSignatureAlgorithm``, ``malformed`` or ``unauthorized``.
    """
    eab_kid(eab)
    parsed, protected, _obj = _flattened(eab, what="externalAccountBinding")
    if protected.get("url") != url:
        raise AcmeProblem("malformed", "externalAccountBinding needs the newAccount url.")
    try:
        inner_key = jose.JWK.from_json(json.loads(parsed.payload))
    except Exception as exc:  # noqa: BLE001 - josepy raises several kinds for what is not a key
        raise AcmeProblem("malformed", "the externalAccountBinding payload is not a JWK.") from exc
    try:
        ok = parsed.verify(jose.JWKOct(key=hmac_key))
    except Exception:  # noqa: BLE001 - a MAC that cannot be computed is a MAC that does not match
        ok = False
    if not ok or thumbprint(inner_key) != thumbprint(account_key):
        raise AcmeProblem("unauthorized", "the external account binding does not verify.", status=403)


def verify_key_change(inner_body: Any, *, outer_url: str, account_url: str, old_key: Any) -> Any:
    """Check a keyChange inner JWS (RFC 8555 §7.3.5) and return the new key.

    Raises:
        AcmeProblem: ``malformed``.
    """
    obj, protected = _raw(inner_body, what="the keyChange inner JWS")
    _alg(protected, ALGORITHMS, what="the keyChange inner JWS")
    if "jwk" not in protected or "nonce" in protected or protected.get("url") != outer_url:
        raise AcmeProblem("malformed", "the inner keyChange JWS needs an alg, a jwk, the same url and no nonce.")
    new_key = _public_jwk(protected["jwk"])
    parsed = _josepy(obj, what="the keyChange inner JWS")
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


def csr_key_is_an_account_key(csr_der: bytes, account_by_thumbprint: Callable[[str], object | None]) -> bool:
    """True when the CSR's public key is an ACME account's key (RFC 8555 §11.1: the server MUST NOT issue
    for an account key), looked up by its RFC 7638 thumbprint; False for a CSR that cannot be read (the
    finalize workflow refuses it as badCSR itself).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        public = x509.load_der_x509_csr(csr_der).public_key()
        key = jose.JWK.load(public.public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    except Exception:  # noqa: BLE001 - not a CSR, or a key type JOSE has no form for: not an account key
        return False
    return account_by_thumbprint(thumbprint(key)) is not None
