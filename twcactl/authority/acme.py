"""The ACME workflows (RFC 8555, RFC 9773) over the store, so that ``twcactl serve`` stays a thin HTTP layer.

Every ACME account acts for one twcactl account through the External Account
Binding key it registered with (RFC 8555 §7.3.4): ``acme eab ACCOUNT`` makes
the key and registers the operator ``acme:<kid>`` as a manager, and every
change that account causes (issue, renew, revoke) goes through
:mod:`twcactl.authority.lifecycle` under that operator, with the same policy
(:func:`twcactl.policy.checks.check_request`, the rules of ``csr check``) and
the same books (certificate-years) as the CLI.  Deactivating the ACME account
or revoking its EAB key deactivates the operator, so nothing more can be done
in its name.

JOSE (JWS signatures, JWK thumbprints, the EAB MAC) is checked by the HTTP
layer with ``josepy``; these functions take what it verified: an ACME
account, a thumbprint (RFC 7638, base64url), a payload.  Refusals are
:class:`AcmeProblem`, which the HTTP layer writes as a problem document
(RFC 7807, RFC 8555 §6.7).

The EAB HMAC key must be known to the server to check the client's MAC, so
it cannot be stored hashed: it is sealed with AES-256-GCM under a key file
in the home's private directory (``ca/private/acme-eab.key``, 0600, like the
CA keys), so that the database alone (a backup, a PostgreSQL dump) reveals
no HMAC key, and it is erased once the key is bound to an ACME account or
revoked (docs/serve.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twcactl.errors import AuthError, InputError, PolicyError, QuotaError, StateError, TwcaError
from twcactl.policy.checks import dns_name_problems, domain_match
from twcactl.rules.acme_profiles import ACME_PROFILES, DEFAULT_PROFILE
from twcactl.rules.serials import format_serial
from twcactl.rules.times import rfc3339, utcnow
from twcactl.rules.validity import Validity
from twcactl.rules.vocab import REVOKE_REASONS
from twcactl.store import Store
from twcactl.store.acme import AcmeAccount, AcmeAuthz, AcmeChallenge, AcmeOrder

PassphraseProvider = Callable[[], "str | None"]

NONCE_LIFETIME = dt.timedelta(hours=1)
ORDER_LIFETIME = dt.timedelta(days=7)
#: ACME certificates run one calendar year and cost one certificate-year (domain.md §3).
ACME_VALIDITY = Validity(years=1)
#: RFC 5280 CRLReason codes an ACME client may give in revokeCert (RFC 8555 §7.6; the BR allow these).
REVOCATION_CODES = {0: "unspecified", 1: "keyCompromise", 3: "affiliationChanged", 4: "superseded",
                    5: "cessationOfOperation"}
CHALLENGE_TYPES = ("http-01", "dns-01", "tls-alpn-01")
#: Pending (unexpired) authorizations one ACME account may hold; a new order past it is rateLimited
#: (each one is a validation the account can start: issue 24).
MAX_PENDING_AUTHZ = 300
_SEAL_KEY = "acme-eab.key"


class AcmeProblem(TwcaError):
    """A refusal the ACME server answers with a problem document (RFC 8555 §6.7).

    Attributes:
        acme_type: the short error type, e.g. ``malformed``, ``badNonce``, ``rejectedIdentifier``
            (the document's ``type`` is ``urn:ietf:params:acme:error:`` plus it).
        status: the HTTP status.
        rule: the policy rule ID behind the refusal (``cn.domain``...), or None.
        extra: more members of the document (``algorithms`` of ``badSignatureAlgorithm``, RFC 8555 §6.2).
    """

    exit_code = 1
    kind = "acme"

    def __init__(self, acme_type: str, detail: str, *, status: int = 400, rule: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.acme_type = acme_type
        self.status = status
        self.rule = rule
        self.extra = extra or {}

    def document(self) -> dict[str, Any]:
        """The problem document (JSON object)."""
        doc: dict[str, Any] = {"type": f"urn:ietf:params:acme:error:{self.acme_type}", "detail": self.message,
                               "status": self.status}
        if self.rule:
            doc["rule"] = self.rule
        return {**self.extra, **doc}


def problem_from(exc: TwcaError) -> AcmeProblem:
    """The ACME problem for a refusal of the core (policy, quota, state, input)."""
    if isinstance(exc, AcmeProblem):
        return exc
    if isinstance(exc, PolicyError):
        findings = getattr(exc, "findings", ()) or ()
        # ACME requests are domain-validated: the subject.* rules do not apply to them (CsrInput.domain_validated)
        failed = [f.rule for f in findings if not f.ok and not f.rule.startswith("subject.")]
        return AcmeProblem("badCSR", exc.message, rule=failed[0] if failed else None)
    if isinstance(exc, QuotaError):
        return AcmeProblem("userActionRequired", f"quota: {exc.message}", status=403, rule="quota")
    if isinstance(exc, InputError):
        return AcmeProblem("badCSR", exc.message)
    if isinstance(exc, AuthError):
        return AcmeProblem("serverInternal", "the CA key cannot be used.", status=500)
    if isinstance(exc, StateError):
        return AcmeProblem("unauthorized", exc.message, status=403)
    return AcmeProblem("serverInternal", exc.message, status=500)


def _token(n: int = 16) -> str:
    return secrets.token_urlsafe(n)


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 8555 §6.1)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url.

    Raises:
        ValueError: not base64url.
    """
    if not isinstance(text, str) or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                                        for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------- EAB keys (operator side)

def _seal_key(store: Store, *, create: bool) -> bytes:
    path = store.private_dir / _SEAL_KEY
    if not path.exists():
        if not create:
            raise StateError(f"{path} is missing; EAB keys made before cannot be checked.",
                             hint="hand out new keys with: twcactl acme eab ACCOUNT")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
        except FileExistsError:
            pass
    data = path.read_bytes()
    if len(data) != 32:
        raise StateError(f"{path} is not a 32-byte key.")
    return data


def _seal(store: Store, kid: str, secret: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    return b64url(nonce + AESGCM(_seal_key(store, create=True)).encrypt(nonce, secret, kid.encode()))


def _unseal(store: Store, kid: str, sealed: str) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = b64url_decode(sealed)
    try:
        return AESGCM(_seal_key(store, create=False)).decrypt(raw[:12], raw[12:], kid.encode())
    except InvalidTag as exc:
        raise StateError(f"the EAB key {kid} cannot be unsealed with this home's key file.") from exc


@dataclass(frozen=True)
class EabGrant:
    """A new EAB key: ``kid`` and the HMAC key (base64url, as clients take it), shown once."""

    kid: str
    hmac: str
    account_id: str
    operator: str

    def to_json(self) -> dict[str, str]:
        """``{"kid", "hmac", "account", "operator"}``."""
        return {"kid": self.kid, "hmac": self.hmac, "account": self.account_id, "operator": self.operator}


def create_eab(store: Store, account_id: str, *, operator: str) -> EabGrant:
    """Issue an EAB key bound to ``account_id`` and register its operator ``acme:<kid>`` as a manager.

    One transaction: the sealed key, the operator, the log entry ``acme.eab`` (the HMAC key never reaches
    the log or the database in clear).

    Raises:
        StateError: ``operator`` is not a manager (exit 5).  NotFoundError: no such account (exit 5).
    """
    store.operators.require_manager(operator)
    store.accounts.get(account_id, ledger=False)
    kid = "kid-" + _token(12)
    secret = secrets.token_bytes(32)
    acme_operator = f"acme:{kid}"
    sealed = _seal(store, kid, secret)
    with store.transaction():
        store.acme.add_eab(kid=kid, account_id=account_id, hmac_sealed=sealed, operator=acme_operator, by=operator)
        store.operators.add(acme_operator, "manager", by=operator)
        store.log.append(operator=operator, action="acme.eab", account=account_id,
                         details={"kid": kid, "operator": acme_operator})
        # the operator record, stated as operator add states it, so that ca check replays it (issue 13)
        store.log.append(operator=operator, action="operator.add",
                         details={"name": acme_operator, "role": "manager", "kid": kid})
    return EabGrant(kid=kid, hmac=b64url(secret), account_id=account_id, operator=acme_operator)


def eab_hmac_key(store: Store, kid: str) -> bytes | None:
    """The HMAC key of an EAB key not yet bound nor revoked, or None."""
    key = store.acme.eab(kid)
    if key is None or key.state != "issued" or not key.hmac_sealed:
        return None
    return _unseal(store, kid, key.hmac_sealed)


def list_accounts(store: Store) -> dict[str, Any]:
    """``{"accounts": [ACME accounts], "eab_keys": [{"kid", "account", "state", "created_at"}]}``."""
    return {"accounts": [a.to_json() for a in store.acme.accounts()],
            "eab_keys": [{"kid": k.kid, "account": k.account_id, "state": k.state, "created_at": k.created_at}
                         for k in store.acme.eab_keys()]}


def deactivate(store: Store, ident: str, *, operator: str) -> dict[str, Any]:
    """End an ACME account (by its ID) or an EAB key (by its kid) and deactivate its ``acme:<kid>`` operator.

    Returns:
        ``{"id", "kid", "status"}``.

    Raises:
        StateError: ``operator`` is not a manager (exit 5).  NotFoundError: neither an account nor a key (exit 5).
    """
    from twcactl.errors import NotFoundError

    store.operators.require_manager(operator)
    account = store.acme.account(ident)
    kid = account.eab_kid if account else ident
    key = store.acme.eab(kid)
    if key is None:
        raise NotFoundError(f"no ACME account or EAB key {ident}.", hint="list them with: twcactl acme accounts")
    with store.transaction():
        if account is not None:
            store.acme.update_account(account.id, status="deactivated")
        if key.state == "issued":
            store.acme.set_eab_state(kid, "revoked")
        store.acme.set_operator_active(key.operator, False)
        store.log.append(operator=operator, action="acme.deactivate", account=key.account_id,
                         details={"kid": kid, "acme_account": account.id if account else None})
    return {"id": account.id if account else None, "kid": kid, "status": "deactivated"}


# ---------------------------------------------------------------- nonces

def new_nonce(store: Store) -> str:
    """A fresh nonce, remembered in the store for :data:`NONCE_LIFETIME` (RFC 8555 §7.2)."""
    nonce = _token(16)
    now = utcnow()
    with store.transaction():
        store.acme.add_nonce(nonce, now + NONCE_LIFETIME)
        if secrets.randbelow(64) == 0:
            store.acme.purge_nonces(now)
    return nonce


def use_nonce(store: Store, nonce: str | None) -> None:
    """Consume a nonce: it must have been handed out by a server over this store and not used.

    Raises:
        AcmeProblem: ``badNonce``.
    """
    if not nonce:
        raise AcmeProblem("badNonce", "the request carries no nonce.")
    with store.transaction():
        ok = store.acme.use_nonce(nonce, utcnow())
    if not ok:
        raise AcmeProblem("badNonce", "the nonce is unknown, used or expired.")


# ---------------------------------------------------------------- accounts

def find_account(store: Store, thumbprint: str) -> AcmeAccount | None:
    """The ACME account of the key with this thumbprint, or None."""
    return store.acme.account_by_thumbprint(thumbprint)


def require_account(store: Store, acme_id: str) -> AcmeAccount:
    """The valid ACME account ``acme_id``.

    Raises:
        AcmeProblem: ``accountDoesNotExist`` or ``unauthorized`` (deactivated).
    """
    account = store.acme.account(acme_id)
    if account is None:
        raise AcmeProblem("accountDoesNotExist", "no such ACME account.", status=400)
    if account.status != "valid":
        raise AcmeProblem("unauthorized", f"the ACME account is {account.status}.", status=403)
    if store.operators.role(account.operator) != "manager":
        raise AcmeProblem("unauthorized", "the ACME account's EAB key has been revoked.", status=403)
    return account


def new_account(store: Store, *, jwk_json: str, thumbprint: str, kid: str, contact: Sequence[str]) -> AcmeAccount:
    """Register an ACME account whose EAB MAC with key ``kid`` the caller has verified (RFC 8555 §7.3.4).

    The EAB key is bound once: a second account with the same key is refused.

    Raises:
        AcmeProblem: ``unauthorized`` for a used or revoked EAB key.
    """
    key = store.acme.eab(kid)
    if key is None:
        raise AcmeProblem("unauthorized", "unknown EAB key ID.", status=403)
    acme_id = _token(12)
    with store.transaction():
        if not store.acme.set_eab_state(kid, "bound", expect="issued"):
            raise AcmeProblem("unauthorized", "this EAB key has been used or revoked.", status=403)
        try:
            store.acme.add_account(acme_id=acme_id, thumbprint=thumbprint, jwk=jwk_json, account_id=key.account_id,
                                   eab_kid=kid, contact=contact)
        except StateError as exc:
            raise AcmeProblem("unauthorized", exc.message, status=403) from exc
        store.log.append(operator=key.operator, action="acme.account", account=key.account_id,
                         details={"acme_account": acme_id, "kid": kid, "thumbprint": thumbprint})
    account = store.acme.account(acme_id)
    assert account is not None
    return account


def new_account_without_eab(store: Store, *, account_id: str, jwk_json: str, thumbprint: str,
                            contact: Sequence[str], by: str) -> AcmeAccount:
    """Register an ACME account that came without External Account Binding, acting for ``account_id``
    (``serve --acme-eab optional --acme-default-account ID``; closed networks only, docs/serve.md).

    It is made like an EAB account so that every later check is the same: an internal key record
    ``noeab-<token>`` (bound at once, no HMAC key), its manager operator ``acme:noeab-<token>`` registered
    by ``by`` (the operator who started the server), and the log entries ``operator.add`` and
    ``acme.account`` (``"eab": false``).  Deactivating it ends its operator like any other.

    Raises:
        AcmeProblem: ``unauthorized`` (403) when ``account_id`` no longer exists.
    """
    from twcactl.errors import NotFoundError

    try:
        store.accounts.get(account_id, ledger=False)
    except NotFoundError as exc:
        raise AcmeProblem("unauthorized", "the server's default account does not exist.", status=403) from exc
    kid = "noeab-" + _token(12)
    operator = f"acme:{kid}"
    acme_id = _token(12)
    with store.transaction():
        store.acme.add_eab(kid=kid, account_id=account_id, hmac_sealed="", operator=operator, by=by)
        store.acme.set_eab_state(kid, "bound", expect="issued")
        store.operators.add(operator, "manager", by=by)
        store.log.append(operator=by, action="operator.add", details={"name": operator, "role": "manager", "kid": kid})
        try:
            store.acme.add_account(acme_id=acme_id, thumbprint=thumbprint, jwk=jwk_json, account_id=account_id,
                                   eab_kid=kid, contact=contact)
        except StateError as exc:
            raise AcmeProblem("unauthorized", exc.message, status=403) from exc
        store.log.append(operator=operator, action="acme.account", account=account_id,
                         details={"acme_account": acme_id, "kid": kid, "thumbprint": thumbprint, "eab": False})
    account = store.acme.account(acme_id)
    assert account is not None
    return account


def update_account(store: Store, account: AcmeAccount, *, contact: Sequence[str] | None,
                   deactivate_it: bool) -> AcmeAccount:
    """Change the contact or deactivate (RFC 8555 §7.3.2, §7.3.6); deactivation also ends the operator."""
    with store.transaction():
        store.acme.update_account(account.id, contact=contact, status="deactivated" if deactivate_it else None)
        if deactivate_it:
            store.acme.set_operator_active(account.operator, False)
            store.log.append(operator=account.operator, action="acme.deactivate", account=account.account_id,
                             details={"acme_account": account.id, "kid": account.eab_kid})
    updated = store.acme.account(account.id)
    assert updated is not None
    return updated


def change_key(store: Store, account: AcmeAccount, *, jwk_json: str, thumbprint: str) -> AcmeAccount:
    """Replace the account's key (RFC 8555 §7.3.5), after the caller verified both signatures.

    Raises:
        AcmeProblem: ``conflict`` when the new key is another account's.
    """
    if store.acme.account_by_thumbprint(thumbprint) is not None:
        raise AcmeProblem("conflict", "the new key is already bound to an ACME account.", status=409)
    with store.transaction():
        store.acme.update_account(account.id, jwk=jwk_json, thumbprint=thumbprint)
        store.log.append(operator=account.operator, action="acme.keychange", account=account.account_id,
                         details={"acme_account": account.id, "old": account.thumbprint, "new": thumbprint})
    updated = store.acme.account(account.id)
    assert updated is not None
    return updated


# ---------------------------------------------------------------- orders

def _check_identifier(value: str, domains: Sequence[str]) -> None:
    """A DNS identifier must pass the name rules and sit under an agreed domain (domain.md §2).

    Raises:
        AcmeProblem: ``rejectedIdentifier`` carrying the rule ID (``cn.syntax``..., ``cn.domain``).
    """
    problems = dns_name_problems(value, allow_wildcard=value.startswith("*."))
    if problems:
        rule, message = problems[0]
        raise AcmeProblem("rejectedIdentifier", f"{rule}: {value} {message}", rule=rule)
    if domain_match(value, domains) is None:
        raise AcmeProblem("rejectedIdentifier",
                          f"cn.domain: {value} is not under an agreed domain of the account", rule="cn.domain")


@dataclass(frozen=True)
class OrderView:
    """An order with its authorizations, the status brought up to date."""

    order: AcmeOrder
    authzs: list[AcmeAuthz]


def new_order(store: Store, account: AcmeAccount, identifiers: Sequence[tuple[str, str]], *,
              replaces: str | None = None, profile: str | None = None) -> OrderView:
    """Make a pending order with one authorization (http-01 and dns-01 challenges) per name.

    ``replaces`` (RFC 9773 §5) names the certificate this order renews, as an ARI certificate ID; it must
    be the same twcactl account's, renewable and not already replaced by a live order (one that became
    invalid or expired no longer counts).  ``profile`` (draft-ietf-acme-profiles) is a name of
    :data:`twcactl.rules.acme_profiles.ACME_PROFILES`, None for the default.

    Raises:
        AcmeProblem: ``malformed`` (no identifiers), ``unsupportedIdentifier`` (not ``dns``),
            ``rejectedIdentifier`` (rule ID), ``alreadyReplaced``, ``invalidProfile``.
    """
    if not identifiers:
        raise AcmeProblem("malformed", "the order has no identifiers.")
    if profile is not None and profile not in ACME_PROFILES:
        raise AcmeProblem("invalidProfile", f"no profile {profile!r}; this CA offers "
                                            f"{', '.join(ACME_PROFILES)} (see the directory's meta.profiles).")
    domains = store.accounts.get(account.account_id, ledger=False).domains
    names: list[str] = []
    for kind, value in identifiers:
        if kind != "dns" or not isinstance(value, str):
            raise AcmeProblem("unsupportedIdentifier", f"only dns identifiers are supported, not {kind!r}.")
        _check_identifier(value, domains)
        if value.lower().rstrip(".") not in names:
            names.append(value.lower().rstrip("."))
    max_sans = store.settings().max_sans
    if len(names) > max_sans:  # the CSR will carry them all as SANs: refused now rather than after validation
        raise AcmeProblem("rejectedIdentifier", f"san.count: {len(names)} names, more than the {max_sans} "
                                                "SANs a certificate may carry", rule="san.count")
    replaced = _replaced_serial(store, account, replaces) if replaces else None
    now = utcnow()
    if store.acme.pending_authz_count(account.id, now) + len(names) > MAX_PENDING_AUTHZ:
        raise AcmeProblem("rateLimited", f"more than {MAX_PENDING_AUTHZ} pending authorizations; finish or "
                                         "deactivate some first.", status=429)
    order_id = _token(12)
    with store.transaction():
        store.acme.add_order(order_id=order_id, acme_account=account.id, identifiers=names,
                             expires=now + ORDER_LIFETIME, replaces=replaced, profile=profile or DEFAULT_PROFILE)
        for name in names:
            authz_id = _token(12)
            wildcard = name.startswith("*.")
            store.acme.add_authz(authz_id=authz_id, order_id=order_id, acme_account=account.id,
                                 identifier=name[2:] if wildcard else name, expires=now + ORDER_LIFETIME,
                                 wildcard=wildcard)
            for kind in (("dns-01",) if wildcard else CHALLENGE_TYPES):
                store.acme.add_challenge(challenge_id=_token(12), authz_id=authz_id, type_=kind, token=_token(32))
    return order_view(store, account, order_id)


def ari_cert_id(cert: Any) -> str:
    """The RFC 9773 §4.1 certificate ID of an ``x509.Certificate``: b64url(AKI keyIdentifier) "." b64url(serial)."""
    from cryptography import x509

    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = cert.serial_number
    return f"{b64url(aki)}.{b64url(serial.to_bytes((serial.bit_length() + 8) // 8, 'big'))}"


def ari_cert_id_of_serial(store: Store, serial: str) -> str:
    """The RFC 9773 §4.1 certificate ID of the certificate record ``serial`` (what ``replaces`` names)."""
    from cryptography import x509

    return ari_cert_id(x509.load_der_x509_certificate(store.certificates.get(serial).der))


def _serial_of_cert_id(cert_id: str) -> tuple[bytes, str]:
    try:
        aki_part, serial_part = cert_id.split(".")
        aki, serial_der = b64url_decode(aki_part), b64url_decode(serial_part)
        if not aki or not serial_der:
            raise ValueError("empty")
        return aki, format_serial(int.from_bytes(serial_der, "big", signed=True))
    except ValueError as exc:
        raise AcmeProblem("malformed", "not an ARI certificate ID.") from exc


def _record_of_cert_id(store: Store, cert_id: str) -> Any:
    """The certificate record an RFC 9773 §4.1 certificate ID names: the serial must be known and the
    keyIdentifier must be its issuing CA's subjectKeyIdentifier.

    Raises:
        AcmeProblem: ``malformed`` (400) for a malformed ID, 404 for a certificate this CA did not issue.
    """
    from cryptography import x509

    aki, serial = _serial_of_cert_id(cert_id)
    try:
        record = store.certificates.get(serial)
        ca_cert = store.cas.by_name(record.ca_name).certificate()
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (StateError, x509.ExtensionNotFound) as exc:
        raise AcmeProblem("malformed", "unknown certificate.", status=404) from exc
    if ski != aki:
        raise AcmeProblem("malformed", "unknown certificate (another issuer's key identifier).", status=404)
    return record


def _replaced_serial(store: Store, account: AcmeAccount, cert_id: str) -> str:
    from twcactl.authority.lifecycle import check_renewable

    serial = _record_of_cert_id(store, cert_id).serial
    try:
        record = check_renewable(store, serial, early=True)
    except TwcaError as exc:
        raise AcmeProblem("malformed", f"replaces: {exc.message}") from exc
    if record.account != account.account_id:
        raise AcmeProblem("unauthorized", "replaces: the certificate is another account's.", status=403)
    if any(_refreshed_status(store, order_id) != "invalid" for order_id in store.acme.orders_replacing(serial)):
        raise AcmeProblem("alreadyReplaced", "replaces: another order already replaces this certificate.",
                          status=409)
    return serial


def _own_order(store: Store, account: AcmeAccount, order_id: str) -> AcmeOrder:
    order = store.acme.order(order_id)
    if order is None or order.acme_account != account.id:
        raise AcmeProblem("malformed", "no such order.", status=404)
    return order


def _current_status(order: AcmeOrder, authzs: Sequence[AcmeAuthz], now: dt.datetime) -> str:
    """The status an order has now (RFC 8555 §7.1.6): ``pending`` becomes ``ready`` once every authorization
    is valid; ``pending`` or ``ready`` becomes ``invalid`` once one is invalid or the order has expired."""
    status = order.status
    if status in ("pending", "ready"):
        if any(a.status == "invalid" for a in authzs) or order.expires <= now:
            return "invalid"
        if status == "pending" and authzs and all(a.status == "valid" for a in authzs):
            return "ready"
    return status


def _refreshed_status(store: Store, order_id: str) -> str:
    """The order's current status, written back when it changed (so that a failed renewal order stops
    blocking the certificate it ``replaces``)."""
    order = store.acme.order(order_id)
    if order is None:
        return "invalid"
    status = _current_status(order, store.acme.authzs_of(order_id), utcnow())
    if status != order.status:
        with store.transaction():
            store.acme.set_order(order_id, status=status, expect=order.status)
    return status


def order_view(store: Store, account: AcmeAccount, order_id: str) -> OrderView:
    """An order of ``account`` and its authorizations; ``pending`` becomes ``ready`` once all are valid,
    ``invalid`` once one is invalid or the order has expired (RFC 8555 §7.1.6).

    Raises:
        AcmeProblem: not this account's order (404).
    """
    order = _own_order(store, account, order_id)
    if _refreshed_status(store, order_id) != order.status:
        order = _own_order(store, account, order_id)
    return OrderView(order=order, authzs=store.acme.authzs_of(order_id))


def authorization(store: Store, account: AcmeAccount, authz_id: str) -> tuple[AcmeAuthz, list[AcmeChallenge]]:
    """An authorization of ``account`` with its challenges.

    Raises:
        AcmeProblem: not this account's (404).
    """
    authz = store.acme.authz(authz_id)
    if authz is None or authz.acme_account != account.id:
        raise AcmeProblem("malformed", "no such authorization.", status=404)
    return authz, store.acme.challenges_of(authz_id)


def key_authorization(token: str, thumbprint: str) -> str:
    """RFC 8555 §8.1: ``token || '.' || base64url(JWK thumbprint)``."""
    return f"{token}.{thumbprint}"


#: Checks one challenge against the outside world: ``(type, name, token, key authorization)`` -> None when it
#: holds, else its problem or a sentence why not (the HTTP layer does the HTTP fetch or the DNS query).
Validator = Callable[[str, str, str, str], "str | AcmeProblem | None"]
#: Runs a validation later, off the request: ``(ACME account id, job)``; the job takes that thread's store.
Later = Callable[[str, Callable[[Store], None]], None]


def respond_challenge(store: Store, account: AcmeAccount, challenge_id: str,
                      validator: Validator, *, later: Later | None = None) -> tuple[AcmeAuthz, AcmeChallenge]:
    """Validate a challenge (RFC 8555 §7.5.1) and record the outcome on it and its authorization: now, or with
    ``later`` the challenge becomes ``processing`` and ``later`` runs the validation and records it.

    Returns:
        The authorization and the challenge afterwards.

    Raises:
        AcmeProblem: not this account's (404).
    """
    challenge = store.acme.challenge(challenge_id)
    authz = store.acme.authz(challenge.authz_id) if challenge else None
    if challenge is None or authz is None or authz.acme_account != account.id:
        raise AcmeProblem("malformed", "no such challenge.", status=404)
    if challenge.status != "pending" or authz.status != "pending":
        return authz, challenge
    args = (challenge.type, authz.identifier, challenge.token, key_authorization(challenge.token, account.thumbprint))
    if later is not None:
        with store.transaction():  # only one of two simultaneous POSTs starts the validation
            started = store.acme.set_challenge(challenge_id, status="processing", expect="pending")
        if started:
            later(account.id, lambda own: _record_validation(own, challenge_id, authz.id, validator(*args)))
    else:
        _record_validation(store, challenge_id, authz.id, validator(*args))
    after_authz = store.acme.authz(authz.id)
    after = store.acme.challenge(challenge_id)
    assert after is not None and after_authz is not None
    return after_authz, after


def _record_validation(store: Store, challenge_id: str, authz_id: str, failure: str | AcmeProblem | None) -> None:
    challenge = store.acme.challenge(challenge_id)
    authz = store.acme.authz(authz_id)
    if challenge is None or challenge.status not in ("pending", "processing") or authz is None \
            or authz.status != "pending":  # deactivated or decided meanwhile: the outcome comes too late
        return
    with store.transaction():
        if failure is None:
            store.acme.set_challenge(challenge_id, status="valid", validated=utcnow())
            store.acme.set_authz(authz_id, "valid")
        else:
            if not isinstance(failure, AcmeProblem):
                failure = AcmeProblem("dns" if challenge.type == "dns-01" else "connection", failure)
            store.acme.set_challenge(challenge_id, status="invalid", error=failure.document())
            store.acme.set_authz(authz_id, "invalid")


def _csr_names(csr_der: bytes) -> tuple[Any, set[str]]:
    from cryptography import x509

    try:
        csr = x509.load_der_x509_csr(csr_der)
        subject = list(csr.subject)
        try:
            sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = [n.lower() for n in sans.get_values_for_type(x509.DNSName)]
            others = [n for n in sans if not isinstance(n, x509.DNSName)]
        except x509.ExtensionNotFound:
            dns, others = [], []
    except (ValueError, TypeError) as exc:
        raise AcmeProblem("badCSR", "the CSR cannot be parsed.") from exc
    if any(attr.oid != x509.NameOID.COMMON_NAME for attr in subject) or len(subject) > 1 or others:
        raise AcmeProblem("badCSR", "an ACME CSR's subject holds at most a CN and its SANs only DNS names "
                                    "(the certificate is domain-validated).")
    names = set(dns)
    names.update(str(attr.value).lower() for attr in subject)
    return csr, names


def finalize(store: Store, account: AcmeAccount, order_id: str, csr_der: bytes, *,
             passphrase: PassphraseProvider) -> OrderView:
    """Issue the order's certificate from the CSR (RFC 8555 §7.4): through the account's policy and its books.

    A new order is :func:`twcactl.authority.lifecycle.issue_certificates` (one certificate-year); an order
    that ``replaces`` a certificate is :func:`twcactl.authority.lifecycle.renew_certificate` (validity carried
    forward once, the old certificate marked renewed, charged like ``cert renew``).  The order moves to
    ``processing`` first, so two finalize requests never issue twice.

    Raises:
        AcmeProblem: ``orderNotReady``, ``badCSR`` (rule ID), ``userActionRequired`` (quota), ...
    """
    from twcactl.authority.lifecycle import CsrInput, issue_certificates, renew_certificate

    view = order_view(store, account, order_id)
    if view.order.status != "ready":
        raise AcmeProblem("orderNotReady", f"the order is {view.order.status}, not ready.", status=403)
    _csr, names = _csr_names(csr_der)
    if names != set(view.order.identifiers):
        raise AcmeProblem("badCSR", "the CSR's names are not exactly the order's identifiers.")
    with store.transaction():
        if not store.acme.set_order(order_id, status="processing", expect="ready"):
            raise AcmeProblem("orderNotReady", "the order is being finalized already.", status=403)
    acme_profile = ACME_PROFILES[view.order.profile or DEFAULT_PROFILE]
    item = CsrInput(name=f"acme-order-{order_id}", data=csr_der, domain_validated=True,
                    profile="wildcard" if any(n.startswith("*.") for n in names) else "ssl",
                    short_lived=acme_profile.short_lived)
    try:
        # a short-lived certificate starts its few days now: a renewal would carry the old notAfter forward
        if view.order.replaces and not acme_profile.short_lived:
            renewed = renew_certificate(store, view.order.replaces, item, validity=None, early=True,
                                        operator=account.operator, passphrase=passphrase, note="acme renewal")
            serial = renewed.certificate.serial
        else:
            issued = issue_certificates(store, [item], account_id=account.account_id, profile=item.profile or "ssl",
                                        validity=acme_profile.validity(utcnow()), operator=account.operator,
                                        passphrase=passphrase,
                                        note="acme")
            serial = issued.issued[0].serial
    except TwcaError as exc:
        problem = problem_from(exc)
        with store.transaction():
            store.acme.set_order(order_id, status="invalid", error=problem.document())
        raise problem from exc
    with store.transaction():
        store.acme.set_order(order_id, status="valid", serial=serial)
    return order_view(store, account, order_id)


def certificate_chain_pem(store: Store, account: AcmeAccount, order_id: str) -> bytes:
    """The issued certificate and the CA certificates above it up to (not including) the root, PEM.

    Raises:
        AcmeProblem: not this account's order, or not issued yet (404).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from twcactl.authority.lifecycle import ca_chain_for

    order = _own_order(store, account, order_id)
    if order.serial is None:
        raise AcmeProblem("malformed", "the order has no certificate yet.", status=404)
    record = store.certificates.get(order.serial)
    chain = ca_chain_for(store, record)
    pems = [x509.load_der_x509_certificate(record.der).public_bytes(serialization.Encoding.PEM)]
    pems += [c.public_bytes(serialization.Encoding.PEM) for c in reversed(chain[1:])]
    return b"".join(pems)


# ---------------------------------------------------------------- revocation and renewal information

def revoke(store: Store, cert_der: bytes, reason_code: int, *, account: AcmeAccount | None,
           cert_key_signed: bool, passphrase: PassphraseProvider) -> str:
    """Revoke a certificate (RFC 8555 §7.6) signed by its ACME account or by the certificate's own key.

    By an account: the certificate must be its twcactl account's.  By the certificate's key (the caller
    checked the JWS against the certificate's public key): it must have been issued through ACME, and the
    operator is that order's ACME account.  Through :func:`twcactl.authority.lifecycle.revoke_certificate`
    (refund rules, CRL regenerated).

    Returns:
        The serial revoked.

    Raises:
        AcmeProblem: ``malformed`` (unknown certificate), ``unauthorized``, ``badRevocationReason``,
            ``alreadyRevoked``.
    """
    from twcactl.authority.lifecycle import revoke_certificate

    reason = REVOCATION_CODES.get(reason_code) if isinstance(reason_code, int) else None
    if reason is None or reason not in REVOKE_REASONS:
        raise AcmeProblem("badRevocationReason", f"reason {reason_code!r} is not allowed; use 0, 1, 3, 4 or 5.")
    record = store.certificates.find_by_der(cert_der)
    if record is None:
        raise AcmeProblem("malformed", "this CA did not issue that certificate.", status=404)
    if record.state == "revoked":
        raise AcmeProblem("alreadyRevoked", f"certificate {record.serial} is already revoked.")
    operator: str | None = None
    if account is not None and not cert_key_signed:
        if record.account != account.account_id:
            raise AcmeProblem("unauthorized", "the certificate is another account's.", status=403)
        operator = account.operator
    else:
        order = store.acme.order_by_serial(record.serial)
        owner = store.acme.account(order.acme_account) if order else None
        if owner is None:
            raise AcmeProblem("unauthorized", "only certificates issued through ACME can be revoked by their key.",
                              status=403)
        operator = owner.operator
    try:
        revoke_certificate(store, record.serial, reason=reason, operator=operator, passphrase=passphrase)
    except TwcaError as exc:
        raise problem_from(exc) from exc
    return record.serial


def renewal_info(store: Store, cert_id: str) -> dict[str, Any]:
    """The RFC 9773 renewal information of a certificate: a window inside the CA's renewal window
    (``renewal_window_days`` before notAfter, its first two thirds), or in the past when revoked.

    Raises:
        AcmeProblem: a malformed ID (400) or an unknown certificate (404).
    """
    record = _record_of_cert_id(store, cert_id)
    now = utcnow()
    if record.state in ("revoked", "suspended"):
        start, end = now - dt.timedelta(days=1), now - dt.timedelta(hours=1)
    else:
        window = dt.timedelta(days=store.settings().renewal_window_days)
        start = record.not_after - window
        end = record.not_after - window / 3
        if end <= start:
            end = start + dt.timedelta(hours=1)
    return {"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}


def dumps(doc: Any) -> bytes:
    """Compact JSON bytes of a response body."""
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")
