"""Which addresses a challenge validation may connect to (issue 24).

A validation connects to whatever the identifier resolves to; pointed at the
CA's own network (a loopback service, a cloud metadata endpoint at
169.254.169.254, an intranet host) it would be a request forgery tool.  So a
target whose address is not public is refused unless the operator named it
(``--acme-resolve``) or allowed every private address (``--acme-allow-private``,
closed networks).  The classes follow the IANA special-purpose registries
(RFC 6890): IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:0:0/96``,
6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by that address.
"""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
_ULA = ipaddress.ip_network("fc00::/7")  # RFC 4193
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
_RFC1918 = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("172.16.0.0/12"),
            ipaddress.ip_network("192.168.0.0/16"))

#: Every class :func:`forbidden_class` names, in the order it checks them.
CLASSES = ("unspecified", "loopback", "link-local", "multicast", "rfc1918", "shared", "unique-local",
           "reserved")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_class(text: str | Address) -> str | None:
    """The class of a non-public address (one of :data:`CLASSES`), or None for a public one.

    Args:
        text: an IPv4 or IPv6 address (text or :mod:`ipaddress` object; an IPv6 zone is ignored).

    Raises:
        ValueError: not an IP address.
    """
    address = ipaddress.ip_address(text.split("%", 1)[0]) if isinstance(text, str) else text
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return forbidden_class(inner)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and any(address in net for net in _RFC1918):
        return "rfc1918"
    if address in _SHARED:
        return "shared"
    if isinstance(address, ipaddress.IPv6Address) and address in _ULA:
        return "unique-local"
    if not address.is_global:  # documentation, benchmarking, 240/4, ::/96 and the rest of RFC 6890
        return "reserved"
    return None
