"""The members of a newOrder payload this server reads (RFC 8555 §7.4, RFC 9773 §5, draft-ietf-acme-profiles §4).

Only ``identifiers``, ``notBefore``, ``notAfter``, ``replaces`` and ``profile`` are read; every other
member is ignored, as RFC 8555 §7.4 defines no others for a new order and clients send more (Caddy 2.6.2
sends its whole order object, ``"status": ""`` included).  An empty string stands for an absent member
(Go clients serialise unset fields so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twcactl.authority.acme import AcmeProblem

#: What Go's zero ``time.Time`` serialises to: an unset notBefore/notAfter.
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class NewOrderFields:
    """What a newOrder asks for: ``(type, value)`` identifiers, the ARI ``replaces`` ID and the profile name."""

    identifiers: list[tuple[str, str]]
    replaces: str | None
    profile: str | None


def _optional_text(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise AcmeProblem("malformed", f"newOrder: {name} must be a string.")
    return value


def new_order_fields(doc: dict[str, Any]) -> NewOrderFields:
    """Read a newOrder payload (a JSON object).

    ``notBefore`` and ``notAfter`` may be absent, empty or Go's zero time; a real date is refused, since the
    profile decides the validity and RFC 8555 §7.4 wants an error rather than other contents.

    Raises:
        AcmeProblem: ``malformed`` (identifiers not a non-empty list of ``{"type", "value"}`` strings, a
            member of the wrong type, a notBefore/notAfter this CA cannot honour).
    """
    items = doc.get("identifiers")
    if not isinstance(items, list) or not items:
        raise AcmeProblem("malformed", "newOrder: identifiers must be a non-empty list.")
    identifiers: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or not isinstance(item.get("value"),
                                                                                               str):
            raise AcmeProblem("malformed", 'newOrder: each identifier is {"type": ..., "value": ...} (strings).')
        identifiers.append((item["type"], item["value"]))
    for name in ("notBefore", "notAfter"):
        value = _optional_text(doc, name)
        if value is not None and value != _GO_ZERO_TIME:
            raise AcmeProblem("malformed", f"newOrder: {name} is not supported; the profile sets the validity.")
    return NewOrderFields(identifiers=identifiers, replaces=_optional_text(doc, "replaces"),
                          profile=_optional_text(doc, "profile"))
