"""The DNS resolver of one network perspective (dnspython; issue 26).

Each perspective (the primary and every remote one) asks its own resolver and shares no cache with another
(BR §3.2.2.9: "results ... MUST NOT be reused or cached" across perspectives), so a resolver is made fresh for
each check and none caches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twcactl.errors import UsageError

if TYPE_CHECKING:
    import dns.resolver

TIMEOUT = 5.0


@dataclass(frozen=True)
class DnsServer:
    """Where DNS questions go: an address and a port, or the system's resolver when ``address`` is empty."""

    address: str = ""
    port: int = 53

    @classmethod
    def parse(cls, text: str) -> DnsServer:
        """``ADDRESS:PORT``, ``[IPv6]:PORT``, ``ADDRESS`` (port 53) or ``""`` (the system's resolver).

        Raises:
            UsageError: a port that is not a number from 1 to 65535 (exit 2).
        """
        if not text:
            return cls()
        host, port = text, "53"
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif text.count(":") == 1:
            host, port = text.split(":")
        if not port.isdigit() or not 1 <= int(port) <= 65_535:
            raise UsageError(f"a DNS resolver is ADDRESS:PORT, not {text!r}.")
        return cls(host, int(port))

    def to_text(self) -> str:
        """The ``ADDRESS:PORT`` form (``""`` for the system's resolver)."""
        if not self.address:
            return ""
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    def resolver(self) -> dns.resolver.Resolver:
        """A fresh ``dns.resolver.Resolver`` without a cache, asking this server."""
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=not self.address)
        if self.address:
            resolver.nameservers = [self.address]
            resolver.port = self.port
        resolver.lifetime = TIMEOUT
        resolver.timeout = TIMEOUT
        resolver.cache = None
        return resolver
