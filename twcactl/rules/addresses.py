"""E-mail addresses of technical contacts and of the CA's sender, parsed by the standard library.

A contact given at issue (``ops@example.tw`` or ``Ops Team <ops@example.tw>``) ends up in a ``To:``
header and an SMTP ``RCPT TO``; the sender (``smtp_from``) in ``From:`` and ``MAIL FROM``.  Both are
parsed with :mod:`email.headerregistry` (RFC 5322 §3.4 address syntax) rather than split by hand, so a
value with two addresses, a CR/LF, a control character or a non-ASCII local part (which needs SMTPUTF8,
RFC 6531, that a relay may not offer) is refused instead of being mailed to whoever it names (issue 27).

Pure: the standard library only.
"""

from __future__ import annotations

from email.errors import HeaderParseError
from email.headerregistry import HeaderRegistry

_REGISTRY = HeaderRegistry()


def single_address(text: str | None) -> str | None:
    """The one e-mail address (``local@domain``) in ``text``, or None when ``text`` is not exactly one
    sound address.

    Args:
        text: an address, optionally with a display name (``Name <local@domain>``).

    Returns:
        The addr-spec (``local@domain``), ASCII, with a dotted domain; None for an empty value, a list,
        a group, any parse defect (RFC 5322 §3.4; :mod:`email.headerregistry`) or a control character.
    """
    if not text or any(ord(c) < 0x20 or c == "\x7f" for c in text):
        return None
    try:
        header = _REGISTRY("to", text)
    except (HeaderParseError, ValueError, IndexError):
        return None
    addresses = header.addresses  # type: ignore[attr-defined]
    if header.defects or len(addresses) != 1:
        return None
    address = addresses[0]
    domain = str(address.domain)
    spec = str(address.addr_spec)
    if not (address.username and "." in domain and not domain.startswith(".") and not domain.endswith(".")):
        return None
    if not spec.isascii() or spec.startswith('"'):
        return None
    return spec
