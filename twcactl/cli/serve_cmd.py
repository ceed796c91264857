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
@click.option("--acme-dns-resolver", metavar="ADDRESS:PORT", help="The DNS server dns-01 validation asks.")
@click.option("--ocsp-signer", type=click.Choice(["delegated", "ca"]), default="delegated", show_default=True,
              help="Sign OCSP responses with a delegated OCSP signing certificate kept fresh, or the CA key.")
@click.option("--perspective", is_flag=True,
              help="Run a remote network perspective instead (BR 3.2.2.9; plain HTTP on --listen, no CA home).")
@click.option("--perspective-token", metavar="SOURCE", help="The perspective's bearer token: env:, file: or fd:.")
@click.option("--perspective-dns", metavar="ADDRESS:PORT", help="The perspective's own DNS resolver.")
@click.option("--perspective-http-port", type=click.IntRange(1, 65535), default=80, show_default=True,
              help="The port the perspective's http-file checks connect to.")
@ca_passphrase_option
def serve(listen: str, http_listen: str | None, tls_cert: Path | None, tls_key: Path | None, names: tuple[str, ...],
          workers: int, resolve: tuple[str, ...], acme_http01_port: int, acme_dns_resolver: str | None,
          ocsp_signer: str, perspective: bool, perspective_token: str | None, perspective_dns: str | None,
          perspective_http_port: int, ca_passphrase: str | None) -> None:
    """Serve ACME (RFC 8555, EAB required), OCSP and CRLs until SIGTERM.

    With --perspective: a remote network perspective answering one DCV or CAA check per request
    (twcactl serve --perspective --listen 127.0.0.1:9001 --perspective-token file:token
    --perspective-dns 127.0.0.1:5301).
    """
    if perspective:
        _perspective(listen, perspective_token, perspective_dns, perspective_http_port)
        return
    from twcactl.serve.config import ServeConfig, parse_hostport, parse_resolve

    provider = ca_passphrase_provider(ca_passphrase)
    ctx = app()
    config = ServeConfig(
        home=ctx.resolved_home(), operator=current_operator(), passphrase=provider,
        listen=parse_hostport(listen, option="--listen"),
        http_listen=parse_hostport(http_listen, option="--http-listen") if http_listen else None,
        tls_cert=tls_cert, tls_key=tls_key, names=names, workers=workers, lock_timeout=ctx.lock_timeout,
        acme_resolve=parse_resolve(resolve), acme_http01_port=acme_http01_port,
        acme_dns_resolver=parse_hostport(acme_dns_resolver, option="--acme-dns-resolver") if acme_dns_resolver
        else None, ocsp_signer=ocsp_signer, quiet=ctx.quiet)
    from twcactl.serve.runner import run

    run(config)


def _perspective(listen: str, token: str | None, dns: str | None, http_port: int) -> None:
    from twcactl.cli.secrets import read_source
    from twcactl.errors import UsageError
    from twcactl.serve.config import parse_hostport
    from twcactl.serve.perspective import PerspectiveConfig, run_perspective
    from twcactl.validation.resolver import DnsServer

    if not token:
        raise UsageError("--perspective needs --perspective-token SOURCE.")
    run_perspective(PerspectiveConfig(listen=parse_hostport(listen, option="--listen"),
                                      token=read_source(token, option="--perspective-token"),
                                      resolver=DnsServer.parse(dns or ""), http_port=http_port,
                                      name=listen))
