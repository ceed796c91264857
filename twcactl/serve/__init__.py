"""``twcactl serve``: the HTTP face of the CA beside the CLI (docs/serve.md).

One ASGI application (Starlette, under uvicorn) over the store: ACME (RFC 8555,
RFC 9773) on HTTPS, and OCSP (RFC 6960, RFC 5019), CRLs and CA certificates on
HTTPS and on plain HTTP.  The HTTP layer parses, verifies JOSE with ``josepy``
and calls one workflow of :mod:`twcactl.authority.acme` or
:mod:`twcactl.authority.responder` per request; state lives in the store.
"""
