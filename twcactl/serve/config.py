"""The settings of one ``twcactl serve`` run, resolved by the CLI (the core reads no environment)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from twcactl.errors import UsageError

#: Largest request body accepted on the ACME paths (a CSR of an RSA 8192 key with 100 SANs fits), bytes.
MAX_ACME_BODY = 64 * 1024
#: Largest OCSP request accepted (RFC 5019 requests are about 100 bytes), bytes.
MAX_OCSP_BODY = 8 * 1024


def parse_hostport(text: str, *, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``.

    Raises:
        UsageError: not HOST:PORT with a port 0..65535 (exit 2).
    """
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{option} takes HOST:PORT, e.g. 127.0.0.1:8443, not {text!r}.")
    return host, int(port)


def parse_resolve(items: tuple[str, ...]) -> dict[str, str]:
    """``--acme-resolve NAME=ADDRESS`` values as a mapping (``*`` matches every name).

    Raises:
        UsageError: not NAME=ADDRESS with an IPv4 or IPv6 ADDRESS (exit 2).
    """
    import ipaddress

    out: dict[str, str] = {}
    for item in items:
        name, sep, address = item.partition("=")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            address = ""
        if not sep or not name or not address:
            raise UsageError(f"--acme-resolve takes NAME=ADDRESS (an IP address), not {item!r}.")
        out[name.lower().rstrip(".")] = address
    return out


@dataclass
class ServeConfig:
    """Everything ``twcactl serve`` was told.

    Attributes:
        home / lock_timeout: the CA home and how long to wait for it.
        listen: HTTPS address; http_listen: the plain HTTP address or None.
        tls_cert / tls_key: the server's certificate chain and key, or None to have the CA issue one.
        names: the DNS names (or addresses) of that certificate.
        workers: server processes sharing the sockets.
        operator: who started the server (a manager: the CRL and the TLS certificate are issued in its name).
        passphrase: the CA key passphrase provider (read once at start).
        acme_resolve / acme_http01_port / acme_dns_resolver: validation for tests and closed networks.
        acme_allow_private: validation may connect to non-public addresses (closed networks).
        acme_tls_alpn_port: the port tls-alpn-01 validation connects to (443, RFC 8737).
        acme_validation_timeout: seconds one whole validation may take.
        acme_validations_per_account / acme_validations_total: validations at once (K, M) per process.
        header_timeout: seconds a connection has to send a request's headers.
        keepalive_timeout: seconds an idle keep-alive connection stays open.
        max_connections_per_client / max_connections: open connections per client address / per listener.
        ocsp_signer: ``delegated`` (an OCSP signing certificate the server keeps fresh) or ``ca`` (the CA key).
        acme_eab: ``required`` (RFC 8555 §7.3.4 binding for every ACME account) or ``optional``: an account
            made without one acts for ``acme_default_account`` (closed networks; docs/serve.md).
    """

    home: Path
    operator: str
    passphrase: Callable[[], str | None]
    listen: tuple[str, int] = ("127.0.0.1", 8443)
    http_listen: tuple[str, int] | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    names: tuple[str, ...] = ()
    workers: int = 1
    lock_timeout: float = 30.0
    acme_resolve: dict[str, str] = field(default_factory=dict)
    acme_http01_port: int = 80
    acme_dns_resolver: tuple[str, int] | None = None
    acme_allow_private: bool = False
    acme_tls_alpn_port: int = 443
    acme_validation_timeout: float = 10.0
    acme_validations_per_account: int = 4
    acme_validations_total: int = 32
    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    max_connections_per_client: int = 64
    max_connections: int = 2048
    ocsp_signer: str = "delegated"
    quiet: bool = False
    acme_eab: str = "required"
    acme_default_account: str | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("give --tls-cert and --tls-key together (or neither, to have the CA issue one).")
        if self.workers < 1 or self.workers > 64:
            raise UsageError("--workers must be between 1 and 64.")
        if self.acme_eab not in ("required", "optional"):
            raise UsageError("--acme-eab takes required or optional.")
        if (self.acme_eab == "optional") != (self.acme_default_account is not None):
            raise UsageError("--acme-eab optional needs --acme-default-account ACCOUNT (and that option needs it).")
        if not self.names:
            self.names = tuple(dict.fromkeys(("localhost", self.listen[0])))
