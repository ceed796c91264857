"""``twcactl serve``: ACME, OCSP, CRLs and CA certificates over HTTP (docs/serve.md).

The server's libraries (starlette, uvicorn, acme, josepy, dnspython) load
inside the command, so ``twcactl --help`` and ``--version`` never import them.
"""

from __future__ import annotations

from pathlib import Path

import click

from twcactl.cli.context import app, ca_passphrase_option, ca_passphrase_provider, current_operator


@click.command("serve", epilog="""\b
Example:
  twcactl acme eab 70759028-01 --json        # hand the kid and hmac to the client
  twcactl serve --listen 0.0.0.0:8443 --http-listen 0.0.0.0:8080 --name ca.example.com.tw
  certbot register --server https://ca.example.com.tw:8443/acme/directory --eab-kid KID --eab-hmac-key HMAC
""")
@click.option("--listen", default="127.0.0.1:8443", show_default=True, metavar="HOST:PORT",
              help="HTTPS address: ACME, OCSP, CRLs, CA certificates.")
@click.option("--http-listen", metavar="HOST:PORT", help="Plain HTTP address for OCSP, CRLs and CA certificates.")
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The server's certificate chain (PEM); default: one the CA issues for the --name values.")
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The key of --tls-cert (PEM, unencrypted).")
@click.option("--name", "names", multiple=True, metavar="DNS",
              help="A name of the server's own certificate (repeatable; default localhost and the --listen host).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes sharing the sockets.")
@click.option("--acme-resolve", "resolve", multiple=True, metavar="NAME=ADDRESS",
              help="Validate NAME at ADDRESS instead of its DNS address ('*' for every name; tests, closed networks).")
@click.option("--acme-http01-port", type=click.IntRange(1, 65535), default=80, show_default=True,
              help="The port http-01 validation connects to.")
@click.option("--acme-tls-alpn-port", type=click.IntRange(1, 65535), default=443, show_default=True,
              help="The port tls-alpn-01 validation connects to.")
@click.option("--acme-dns-resolver", metavar="ADDRESS:PORT",
              help="The DNS server validation asks (dns-01 TXT records, the addresses of http-01/tls-alpn-01).")
@click.option("--acme-allow-private", is_flag=True,
              help="Let validation connect to non-public addresses (loopback, RFC 1918...): closed networks only.")
@click.option("--acme-validation-timeout", type=click.FloatRange(0.5, 120), default=10.0, show_default=True,
              metavar="SECONDS", help="Time one whole validation may take (lookup, connect, TLS, answer).")
@click.option("--acme-validations", type=(click.IntRange(1, 256), click.IntRange(1, 1024)), default=(4, 32),
              show_default=True, metavar="K M", help="Validations at once per ACME account (K) and in all (M).")
@click.option("--header-timeout", type=click.FloatRange(0.5, 300), default=10.0, show_default=True,
              metavar="SECONDS", help="Time a connection has for the TLS handshake and each request's headers.")
@click.option("--max-connections-per-client", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="Open connections per client address (per listener and process).")
@click.option("--max-connections", type=click.IntRange(16, 1_000_000), default=2048, show_default=True,
              help="Open connections per listener and process (bounded by the open-files limit).")
@click.option("--ocsp-signer", type=click.Choice(["delegated", "ca"]), default="delegated", show_default=True,
              help="Sign OCSP responses with a delegated OCSP signing certificate kept fresh, or the CA key.")
@click.option("--acme-eab", type=click.Choice(["required", "optional"]), default="required", show_default=True,
              help="optional: ACME accounts made without EAB act for --acme-default-account (closed networks only).")
@click.option("--acme-default-account", metavar="ACCOUNT", help="The account of ACME accounts made without EAB.")
@ca_passphrase_option
def serve(listen: str, http_listen: str | None, tls_cert: Path | None, tls_key: Path | None, names: tuple[str, ...],
          workers: int, resolve: tuple[str, ...], acme_http01_port: int, acme_tls_alpn_port: int,
          acme_dns_resolver: str | None, acme_allow_private: bool, acme_validation_timeout: float,
          acme_validations: tuple[int, int], header_timeout: float, max_connections_per_client: int,
          max_connections: int, ocsp_signer: str, acme_eab: str, acme_default_account: str | None,
          ca_passphrase: str | None) -> None:
    """Serve ACME (RFC 8555; EAB required unless --acme-eab optional), OCSP and CRLs until SIGTERM.

    Needs the serve extra: pip install -e '.[serve]' from a checkout, pip install 'twcactl[serve]' from an index.
    """
    import os

    require_serve_extra()

    from twcactl.serve.config import ServeConfig, parse_hostport, parse_resolve
    from twcactl.serve.startup import refuse_inline_secret

    refuse_inline_secret(ca_passphrase or os.environ.get("TWCACTL_CA_PASSPHRASE_SOURCE"), option="--ca-passphrase")
    provider = ca_passphrase_provider(ca_passphrase)
    ctx = app()
    config = ServeConfig(
        home=ctx.resolved_home(), operator=current_operator(), passphrase=provider,
        listen=parse_hostport(listen, option="--listen"),
        http_listen=parse_hostport(http_listen, option="--http-listen") if http_listen else None,
        tls_cert=tls_cert, tls_key=tls_key, names=names, workers=workers, lock_timeout=ctx.lock_timeout,
        acme_resolve=parse_resolve(resolve), acme_http01_port=acme_http01_port,
        acme_dns_resolver=parse_hostport(acme_dns_resolver, option="--acme-dns-resolver") if acme_dns_resolver
        else None, ocsp_signer=ocsp_signer, quiet=ctx.quiet, acme_tls_alpn_port=acme_tls_alpn_port,
        acme_allow_private=acme_allow_private, acme_validation_timeout=acme_validation_timeout,
        acme_validations_per_account=acme_validations[0], acme_validations_total=acme_validations[1],
        header_timeout=header_timeout, max_connections_per_client=max_connections_per_client,
        max_connections=max_connections, acme_eab=acme_eab, acme_default_account=acme_default_account)
    from twcactl.serve.runner import run

    run(config)


#: The modules of the ``serve`` extra (pyproject.toml) and the distribution each comes from.
SERVE_MODULES = {"starlette": "starlette", "uvicorn": "uvicorn", "acme": "acme", "josepy": "josepy",
                 "dns": "dnspython"}


def require_serve_extra() -> None:
    """Refuse ``serve`` without its extra installed, naming it (exit 2, issue 28; not an internal error).

    Raises:
        UsageError: a module of the ``serve`` extra cannot be found.
    """
    import importlib.util

    from twcactl.errors import UsageError

    missing = [dist for module, dist in SERVE_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise UsageError(f"twcactl serve needs the 'serve' extra (missing: {', '.join(missing)}).",
                         hint="from a checkout: .venv/bin/pip install -e '.[serve]'; "
                              "from an index: pip install 'twcactl[serve]'")
