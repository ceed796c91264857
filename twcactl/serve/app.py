"""The ASGI application: ACME, OCSP, CRLs, CA certificates and ``/health`` (docs/serve.md lists the paths).

Each endpoint reads the body (refusing one over the size limit), then runs
one synchronous workflow in a worker thread with that thread's own open
store (an SQLite connection belongs to its thread); OCSP requests are answered on the event loop's own
thread (:class:`_OcspFastPath`).  ACME refusals are
problem documents (``application/problem+json``, RFC 8555 §6.7) with a fresh
``Replay-Nonce``; nothing else of a failure (no traceback) reaches a client.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import josepy
from acme import messages
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from twcactl.authority import acme as core
from twcactl.authority import ocsp_answers, responder
from twcactl.authority.acme import AcmeProblem, OrderView
from twcactl.errors import NotFoundError, TwcaError
from twcactl.rules.acme_profiles import ACME_PROFILES, DEFAULT_PROFILE
from twcactl.serve import jose
from twcactl.serve.capacity import run_public
from twcactl.serve.challenges import make_validator
from twcactl.serve.config import MAX_ACME_BODY, MAX_OCSP_BODY, ServeConfig
from twcactl.serve.orders import new_order_fields
from twcactl.serve.validation import Settings
from twcactl.serve.validation_pool import ValidationPool
from twcactl.store import Store
from twcactl.store.acme import AcmeAccount


class _TooLarge(Exception):
    pass


#: An oversized body up to this size is read and dropped before the 413 answer, so that the client, still
#: sending, reads the answer instead of a reset connection (a lingering close, RFC 9112 §9.6); bytes.
MAX_DRAIN = 1024 * 1024


async def _drain(request: Request) -> None:
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_DRAIN:
                return
    except Exception:  # noqa: BLE001 - the client went away: nothing to drain
        return


async def _body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes.

    Raises:
        _TooLarge: a declared or actual length over ``limit`` (nothing of it is kept).
    """
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        if length.isdigit() and int(length) <= MAX_DRAIN:
            await _drain(request)
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request)
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _http_date(when: Any) -> str:
    return email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=True)


class Server:
    """The application's state: configuration, unlocked OCSP signers, a store per worker thread."""

    def __init__(self, config: ServeConfig, signers: responder.Signers) -> None:
        self.config = config
        self.signers = signers
        self._local = threading.local()
        self.validator = make_validator(Settings(
            resolve=config.acme_resolve, allow_private=config.acme_allow_private,
            http01_port=config.acme_http01_port, tls_alpn_port=config.acme_tls_alpn_port,
            dns_server=config.acme_dns_resolver, timeout=config.acme_validation_timeout))
        self.validations = ValidationPool(self.store, per_account=config.acme_validations_per_account,
                                          total=config.acme_validations_total)
        if config.acme_default_account is not None:  # refused at start (exit 5), not at the first client
            self.store().accounts.get(config.acme_default_account, ledger=False)

    def store(self) -> Store:
        """This thread's open store."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = Store.open(self.config.home, lock_timeout=self.config.lock_timeout)
            self._local.store = store
        return store

    # ----- helpers -----
    @staticmethod
    def base(request: Request) -> str:
        """``scheme://host[:port]`` of the request, without a trailing slash."""
        return str(request.base_url).rstrip("/")

    def acme_response(self, request: Request, body: Any, *, status: int = 200, location: str | None = None,
                      content_type: str = "application/json") -> Response:
        """A response with a fresh nonce, the directory link and ``Location`` when given."""
        headers = {"Replay-Nonce": core.new_nonce(self.store()), "Cache-Control": "no-store",
                   "Link": f'<{self.base(request)}/acme/directory>;rel="index"'}
        if location:
            headers["Location"] = location
        data = body if isinstance(body, bytes) else core.dumps(body)
        return Response(data, status_code=status, headers=headers, media_type=content_type)

    def problem(self, request: Request | None, problem: AcmeProblem) -> Response:
        """The problem document of ``problem``, with a fresh nonce when the store can give one."""
        headers = {"Cache-Control": "no-store"}
        try:
            headers["Replay-Nonce"] = core.new_nonce(self.store())
        except TwcaError:
            pass
        return Response(core.dumps(problem.document()), status_code=problem.status, headers=headers,
                        media_type="application/problem+json")

    # ----- JWS -----
    def authenticate(self, request: Request, body: bytes, *, allow_jwk: bool = False
                     ) -> tuple[jose.Signed, AcmeAccount | None]:
        """Parse and verify a JWS request: the url is this request's, the nonce fresh, the signer known.

        Returns:
            The parsed request and its account (None when signed with a ``jwk`` and ``allow_jwk``).
        """
        signed = jose.parse(body)
        if signed.url != str(request.url):
            raise AcmeProblem("unauthorized", "the url in the protected header is not this request's URL.",
                              status=401)
        store = self.store()
        core.use_nonce(store, signed.nonce)
        if signed.jwk is not None:
            if not allow_jwk:
                raise AcmeProblem("malformed", "this request must be signed with the account's kid.")
            jose.verify(signed, signed.jwk)
            return signed, None
        prefix = f"{self.base(request)}/acme/acct/"
        if not signed.kid or not signed.kid.startswith(prefix):
            raise AcmeProblem("accountDoesNotExist", "the kid is not an account URL of this server.")
        account = store.acme.account(signed.kid[len(prefix):])
        if account is None:
            raise AcmeProblem("accountDoesNotExist", "no such ACME account.")
        jose.verify(signed, jose.load_jwk(account.jwk))
        return signed, core.require_account(store, account.id)

    # ----- views -----
    def order_json(self, request: Request, view: OrderView) -> dict[str, Any]:
        """The RFC 8555 §7.1.3 order object."""
        base = self.base(request)
        order = view.order
        doc: dict[str, Any] = {
            "status": order.status,
            "expires": core.rfc3339(order.expires),
            "identifiers": [{"type": "dns", "value": name} for name in order.identifiers],
            "authorizations": [f"{base}/acme/authz/{a.id}" for a in view.authzs],
            "finalize": f"{base}/acme/order/{order.id}/finalize",
        }
        if order.serial and order.status == "valid":
            doc["certificate"] = f"{base}/acme/cert/{order.id}"
        if order.error:
            doc["error"] = order.error
        if order.replaces:
            doc["replaces"] = core.ari_cert_id_of_serial(self.store(), order.replaces)  # RFC 9773 §5: the ID
        doc["profile"] = order.profile or DEFAULT_PROFILE  # draft-ietf-acme-profiles §5
        return doc

    def authz_json(self, request: Request, authz: Any, challenges: list[Any]) -> dict[str, Any]:
        """The RFC 8555 §7.1.4 authorization object."""
        doc: dict[str, Any] = {
            "status": authz.status, "expires": core.rfc3339(authz.expires),
            "identifier": {"type": "dns", "value": authz.identifier},
            "challenges": [self.challenge_json(request, c) for c in challenges]}
        if authz.wildcard:
            doc["wildcard"] = True
        return doc

    def challenge_json(self, request: Request, challenge: Any) -> dict[str, Any]:
        """The RFC 8555 §8 challenge object."""
        doc: dict[str, Any] = {"type": challenge.type, "url": f"{self.base(request)}/acme/chall/{challenge.id}",
                               "status": challenge.status, "token": challenge.token}
        if challenge.validated:
            doc["validated"] = challenge.validated
        if challenge.error:
            doc["error"] = challenge.error
        return doc

    def account_json(self, account: AcmeAccount, request: Request) -> dict[str, Any]:
        """The RFC 8555 §7.1.2 account object."""
        return {"status": account.status, "contact": list(account.contact),
                "orders": f"{self.base(request)}/acme/acct/{account.id}/orders",
                "externalAccountBinding": {"kid": account.eab_kid}, "twcactlAccount": account.account_id}


def _acme(server: Server, handler: Callable[[Request, bytes], Response], *, limit: int = MAX_ACME_BODY
          ) -> Callable[[Request], Any]:
    """Wrap a synchronous ACME handler: size limit, worker thread, problem documents."""

    async def endpoint(request: Request) -> Response:
        try:
            body = await _body(request, limit)
        except _TooLarge:
            return await run_in_threadpool(server.problem, request,
                                           AcmeProblem("malformed", f"the request body is over {limit} bytes.",
                                                       status=413))

        def run() -> Response:
            try:
                return handler(request, body)
            except AcmeProblem as problem:
                return server.problem(request, problem)
            except TwcaError as exc:
                return server.problem(request, core.problem_from(exc))
            except Exception as exc:  # noqa: BLE001 - a bug: one line on stderr, a problem document to the client
                sys.stderr.write(f"twcactl serve: internal error on {request.url.path}: {type(exc).__name__}\n")
                return server.problem(request, AcmeProblem("serverInternal", "internal error.", status=500))

        return await run_in_threadpool(run)

    return endpoint


def ocsp_reply(server: Server, data: bytes) -> tuple[bytes, dict[str, str]]:
    """The DER answer to an OCSP request and its RFC 5019 §6 caching headers (``malformedRequest`` for bytes
    that are not a request).  ``max-age`` runs to nextUpdate from now (a reused answer is younger than that)."""
    try:
        answer = ocsp_answers.reply(server.store(), data, server.signers)  # produced ahead (issue 29)
        der, this_update, next_update = answer.der, answer.this_update, answer.next_update
    except TwcaError:
        from cryptography.hazmat.primitives import serialization
        from cryptography.x509 import ocsp

        bad = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        return bad.public_bytes(serialization.Encoding.DER), {}
    max_age = max(0, int((next_update - dt.datetime.now(dt.UTC)).total_seconds()))
    return der, {"Last-Modified": _http_date(this_update), "Expires": _http_date(next_update),
                 "ETag": answer.etag,
                 "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate"}


class _OcspFastPath:
    """``POST /ocsp`` and ``GET /ocsp/BASE64`` answered before Starlette's routing, on the event loop itself.

    An answer is the stored bytes of an answer produced ahead (:mod:`twcactl.authority.ocsp_answers`, issue 29)
    after one cheap check for changes, or at most one ECDSA signature: less than handing it to a worker thread
    costs, so it runs inline; it goes to a thread when it may block (the delegated signer is due for
    replacement, which writes to the store, or the store is a PostgreSQL server over the network).
    Everything else, and every refusal (413, 414), goes to the Starlette application unchanged.
    """

    def __init__(self, app: Starlette, server: Server) -> None:
        self.app = app
        self.server = server
        self._inline: bool | None = None

    def _may_block(self) -> bool:
        if self._inline is None:
            self._inline = not self.server.store().shared
        return not self._inline or not self.server.signers.delegates_fresh()

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] == "http":
            send = _timed(send)
            method, path = scope["method"], scope["path"]
            if method == "POST" and path == "/ocsp":
                data = await _small_body(receive, scope, MAX_OCSP_BODY)
                if data is not None:
                    return await self._answer(data, send)
            elif method == "GET" and path.startswith("/ocsp/") and len(path) - 6 <= MAX_OCSP_BODY:
                try:
                    data = base64.b64decode(path[6:], validate=False)
                except (binascii.Error, ValueError):
                    data = b""
                return await self._answer(data, send)
        await self.app(scope, receive, send)

    async def _answer(self, data: bytes, send: Callable[[Any], Any]) -> None:
        if self._may_block():
            der, headers = await run_public(ocsp_reply, self.server, data)
        else:
            der, headers = ocsp_reply(self.server, data)
        raw = [(b"content-type", b"application/ocsp-response"), (b"content-length", str(len(der)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": der})


def _timed(send: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``send`` adding ``Server-Timing: app;dur=MS`` (W3C Server Timing) to the response: the time from the
    request's arrival at the application to its answer, so a client can tell the server's share of its wait
    (bench/serve_bench.py reads it)."""
    start = time.perf_counter()

    async def timed_send(message: Any) -> None:
        if message["type"] == "http.response.start":
            spent = f"app;dur={(time.perf_counter() - start) * 1000:.3f}".encode()
            message = {**message, "headers": [*message.get("headers", ()), (b"server-timing", spent)]}
        await send(message)

    return timed_send


async def _small_body(receive: Callable[[], Any], scope: dict[str, Any], limit: int) -> bytes | None:
    """The whole body when it declares a length within ``limit`` and has it; None otherwise (nothing read:
    the Starlette route then reads and refuses it as before)."""
    length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
    if length is None or not length.isdigit() or int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b""
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def build_app(config: ServeConfig, signers: responder.Signers) -> Any:
    """The ASGI application for ``config``; ``signers`` hold the CA keys unlocked at start."""
    server = Server(config, signers)
    h = _Handlers(server)
    routes = [
        Route("/health", h.health, methods=["GET", "HEAD"]),
        Route("/ocsp", h.ocsp_post, methods=["POST"]),
        Route("/ocsp/{request:path}", h.ocsp_get, methods=["GET"]),
        Route("/crl/{name}.crl", h.crl, methods=["GET", "HEAD"]),
        Route("/ca/{name}.cer", h.ca_cert, methods=["GET", "HEAD"]),
        Route("/acme/directory", h.directory, methods=["GET"]),
        Route("/acme/new-nonce", h.new_nonce, methods=["GET", "HEAD"]),
        Route("/acme/renewal-info/{cert_id}", h.renewal_info, methods=["GET"]),
        Route("/acme/new-account", _acme(server, h.new_account), methods=["POST"]),
        Route("/acme/new-order", _acme(server, h.new_order), methods=["POST"]),
        Route("/acme/acct/{id}", _acme(server, h.account), methods=["POST"]),
        Route("/acme/order/{id}", _acme(server, h.order), methods=["POST"]),
        Route("/acme/order/{id}/finalize", _acme(server, h.finalize), methods=["POST"]),
        Route("/acme/authz/{id}", _acme(server, h.authz), methods=["POST"]),
        Route("/acme/chall/{id}", _acme(server, h.challenge), methods=["POST"]),
        Route("/acme/cert/{id}", _acme(server, h.certificate), methods=["POST"]),
        Route("/acme/revoke-cert", _acme(server, h.revoke), methods=["POST"]),
        Route("/acme/key-change", _acme(server, h.key_change), methods=["POST"]),
    ]
    from twcactl.serve import ra_api, subscriber_api  # issue 27: subscribers and remote RA desks

    routes += subscriber_api.routes(server) + ra_api.routes(server)
    return _OcspFastPath(Starlette(routes=routes), server)


class _Handlers:
    """One method per path; the ACME ones are synchronous and wrapped by :func:`_acme`."""

    def __init__(self, server: Server) -> None:
        self.s = server

    # ----- plain HTTP: health, OCSP, CRL, CA certificates -----
    async def health(self, request: Request) -> Response:
        def check() -> dict[str, Any]:
            store = self.s.store()
            return {"status": "ok", "schema_version": store.schema_version(), "cas": [c.name for c in
                                                                                      store.cas.all()]}
        try:
            return JSONResponse(await run_public(check))
        except TwcaError:
            return JSONResponse({"status": "unavailable"}, status_code=503)

    def _ocsp(self, data: bytes) -> Response:
        der, headers = ocsp_reply(self.s, data)
        return Response(der, headers=headers, media_type="application/ocsp-response")

    async def ocsp_post(self, request: Request) -> Response:
        try:
            data = await _body(request, MAX_OCSP_BODY)
        except _TooLarge:
            return Response(b"request too large", status_code=413)
        return await run_public(self._ocsp, data)

    async def ocsp_get(self, request: Request) -> Response:
        text = request.path_params["request"]
        if len(text) > MAX_OCSP_BODY:
            return Response(b"request too large", status_code=414)
        try:
            data = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            data = b""
        return await run_public(self._ocsp, data)

    async def crl(self, request: Request) -> Response:
        try:
            der, this_update, number = await run_public(
                lambda: responder.latest_crl(self.s.store(), request.path_params["name"]))
        except NotFoundError:
            return Response(b"no such CRL\n", status_code=404, media_type="text/plain")
        tag = responder.etag(der)
        headers = {"Last-Modified": _http_date(this_update), "ETag": tag, "Cache-Control": "max-age=300, public"}
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        del number
        return Response(der, headers=headers, media_type="application/pkix-crl")

    async def ca_cert(self, request: Request) -> Response:
        try:
            der = await run_public(
                lambda: responder.ca_certificate(self.s.store(), request.path_params["name"]))
        except NotFoundError:
            return Response(b"no such CA\n", status_code=404, media_type="text/plain")
        return Response(der, headers={"ETag": responder.etag(der), "Cache-Control": "max-age=86400, public"},
                        media_type="application/pkix-cert")

    # ----- ACME without JWS -----
    async def directory(self, request: Request) -> Response:
        base = self.s.base(request) + "/acme"
        directory = messages.Directory({
            "newNonce": f"{base}/new-nonce", "newAccount": f"{base}/new-account", "newOrder": f"{base}/new-order",
            "revokeCert": f"{base}/revoke-cert", "keyChange": f"{base}/key-change",
            "renewalInfo": f"{base}/renewal-info",
            "meta": messages.Directory.Meta(external_account_required=self.s.config.acme_eab == "required",
                                            website="https://twca.com.tw"),
        })
        doc = directory.to_json()
        # draft-ietf-acme-profiles §3: profile name -> description (acme's Meta of this version lacks it)
        doc["meta"] = {**doc["meta"], "profiles": {p.name: p.description for p in ACME_PROFILES.values()}}
        return JSONResponse(doc)

    async def new_nonce(self, request: Request) -> Response:
        nonce = await run_in_threadpool(lambda: core.new_nonce(self.s.store()))
        return Response(status_code=200 if request.method == "HEAD" else 204,
                        headers={"Replay-Nonce": nonce, "Cache-Control": "no-store",
                                 "Link": f'<{self.s.base(request)}/acme/directory>;rel="index"'})

    async def renewal_info(self, request: Request) -> Response:
        try:
            doc = await run_in_threadpool(
                lambda: core.renewal_info(self.s.store(), request.path_params["cert_id"]))
        except AcmeProblem as problem:
            return Response(core.dumps(problem.document()), status_code=problem.status,
                            media_type="application/problem+json")
        return JSONResponse(doc, headers={"Retry-After": "21600"})

    # ----- ACME with JWS (synchronous, in a worker thread) -----
    def new_account(self, request: Request, body: bytes) -> Response:
        signed, _none = self.s.authenticate(request, body, allow_jwk=True)
        try:
            reg = messages.Registration.from_json(signed.payload_json())
        except Exception as exc:  # noqa: BLE001 - josepy raises several kinds for a bad object
            raise AcmeProblem("malformed", "the newAccount payload is not a registration.") from exc
        store = self.s.store()
        thumb = jose.thumbprint(signed.jwk)
        existing = core.find_account(store, thumb)
        base = self.s.base(request)
        if existing is not None:
            return self.s.acme_response(request, self.s.account_json(existing, request),
                                        location=f"{base}/acme/acct/{existing.id}")
        if reg.only_return_existing:
            raise AcmeProblem("accountDoesNotExist", "no account has this key.")
        eab = reg.external_account_binding
        default_account = self.s.config.acme_default_account
        if not eab and default_account is not None:  # --acme-eab optional (closed networks)
            account = core.new_account_without_eab(store, account_id=default_account,
                                                   jwk_json=jose.jwk_json(signed.jwk),
                                                   thumbprint=thumb, contact=[str(c) for c in reg.contact],
                                                   by=self.s.config.operator)
            return self.s.acme_response(request, self.s.account_json(account, request), status=201,
                                        location=f"{base}/acme/acct/{account.id}")
        if not eab:
            raise AcmeProblem("externalAccountRequired", "this server requires an external account binding "
                                                         "(twcactl acme eab ACCOUNT).")
        kid = jose.eab_kid(eab)
        hmac_key = core.eab_hmac_key(store, kid)
        if hmac_key is None:
            raise AcmeProblem("unauthorized", "the EAB key is unknown, used or revoked.", status=403)
        jose.verify_eab(eab, hmac_key=hmac_key, url=str(request.url), account_key=signed.jwk)
        account = core.new_account(store, jwk_json=jose.jwk_json(signed.jwk), thumbprint=thumb, kid=kid,
                                   contact=[str(c) for c in reg.contact])
        return self.s.acme_response(request, self.s.account_json(account, request), status=201,
                                    location=f"{base}/acme/acct/{account.id}")

    def account(self, request: Request, body: bytes) -> Response:
        signed, account = self.s.authenticate(request, body)
        assert account is not None
        if account.id != request.path_params["id"]:
            raise AcmeProblem("unauthorized", "this is another account.", status=403)
        doc = signed.payload_json()
        contact = doc.get("contact")
        if contact is not None and (not isinstance(contact, list) or not all(isinstance(c, str) for c in contact)):
            raise AcmeProblem("malformed", "contact must be a list of URLs.")
        if doc.get("status") not in (None, "deactivated"):
            raise AcmeProblem("malformed", "only status deactivated may be asked for.")
        if contact is not None or doc.get("status") == "deactivated":
            account = core.update_account(self.s.store(), account, contact=contact,
                                          deactivate_it=doc.get("status") == "deactivated")
        return self.s.acme_response(request, self.s.account_json(account, request))

    def new_order(self, request: Request, body: bytes) -> Response:
        signed, account = self.s.authenticate(request, body)
        assert account is not None
        fields = new_order_fields(signed.payload_json())
        view = core.new_order(self.s.store(), account, fields.identifiers, replaces=fields.replaces,
                              profile=fields.profile)
        return self.s.acme_response(request, self.s.order_json(request, view), status=201,
                                    location=f"{self.s.base(request)}/acme/order/{view.order.id}")

    def order(self, request: Request, body: bytes) -> Response:
        _signed, account = self.s.authenticate(request, body)
        assert account is not None
        view = core.order_view(self.s.store(), account, request.path_params["id"])
        return self.s.acme_response(request, self.s.order_json(request, view))

    def finalize(self, request: Request, body: bytes) -> Response:
        signed, account = self.s.authenticate(request, body)
        assert account is not None
        csr_text = signed.payload_json().get("csr")
        try:
            csr_der = core.b64url_decode(csr_text) if isinstance(csr_text, str) else b""
        except ValueError:
            csr_der = b""
        if not csr_der:
            raise AcmeProblem("badCSR", "finalize needs the CSR, base64url DER.")
        if jose.csr_key_is_an_account_key(csr_der, self.s.store().acme.account_by_thumbprint):
            raise AcmeProblem("badCSR", "the CSR's key is an ACME account key (RFC 8555 §11.1).")
        view = core.finalize(self.s.store(), account, request.path_params["id"], csr_der,
                             passphrase=self.s.config.passphrase,
                             account_url=f"{self.s.base(request)}/acme/acct/{account.id}")
        return self.s.acme_response(request, self.s.order_json(request, view),
                                    location=f"{self.s.base(request)}/acme/order/{view.order.id}")

    def authz(self, request: Request, body: bytes) -> Response:
        signed, account = self.s.authenticate(request, body)
        assert account is not None
        store = self.s.store()
        authz, challenges = core.authorization(store, account, request.path_params["id"])
        if signed.payload_json().get("status") == "deactivated":
            with store.transaction():
                store.acme.set_authz(authz.id, "deactivated")
            authz, challenges = core.authorization(store, account, authz.id)
        return self.s.acme_response(request, self.s.authz_json(request, authz, challenges))

    def challenge(self, request: Request, body: bytes) -> Response:
        _signed, account = self.s.authenticate(request, body)
        assert account is not None
        authz, challenge = core.respond_challenge(self.s.store(), account, request.path_params["id"],
                                                  self.s.validator, later=self.s.validations.submit)
        response = self.s.acme_response(request, self.s.challenge_json(request, challenge))
        response.headers.append("Link", f'<{self.s.base(request)}/acme/authz/{authz.id}>;rel="up"')
        return response

    def certificate(self, request: Request, body: bytes) -> Response:
        _signed, account = self.s.authenticate(request, body)
        assert account is not None
        pem = core.certificate_chain_pem(self.s.store(), account, request.path_params["id"])
        return self.s.acme_response(request, pem, content_type="application/pem-certificate-chain")

    def revoke(self, request: Request, body: bytes) -> Response:
        signed, account = self.s.authenticate(request, body, allow_jwk=True)
        try:
            doc = signed.payload_json()
            doc.setdefault("reason", 0)
            revocation = messages.Revocation.from_json(doc)
        except Exception as exc:  # noqa: BLE001
            raise AcmeProblem("malformed", "the revokeCert payload is not a revocation.") from exc
        from cryptography.hazmat.primitives import serialization

        cert = revocation.certificate
        if account is None:  # signed with a jwk: it must be the certificate's own key
            cert_key = josepy.JWK.load(cert.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            if jose.thumbprint(cert_key) != jose.thumbprint(signed.jwk):
                raise AcmeProblem("unauthorized", "the jwk is not the certificate's key.", status=403)
        core.revoke(self.s.store(), cert.public_bytes(serialization.Encoding.DER),
                    revocation.reason if revocation.reason is not None else 0, account=account,
                    cert_key_signed=account is None, passphrase=self.s.config.passphrase)
        return self.s.acme_response(request, b"")

    def key_change(self, request: Request, body: bytes) -> Response:
        signed, account = self.s.authenticate(request, body)
        assert account is not None
        account_url = f"{self.s.base(request)}/acme/acct/{account.id}"
        try:
            inner = json.loads(signed.payload)
        except ValueError as exc:
            raise AcmeProblem("malformed", "the keyChange payload is not a JWS.") from exc
        new_key = jose.verify_key_change(inner, outer_url=signed.url, account_url=account_url,
                                         old_key=jose.load_jwk(account.jwk))
        account = core.change_key(self.s.store(), account, jwk_json=jose.jwk_json(new_key),
                                  thumbprint=jose.thumbprint(new_key))
        return self.s.acme_response(request, self.s.account_json(account, request), location=account_url)
