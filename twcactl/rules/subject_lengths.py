"""The longest value each subject attribute may have (RFC 5280 Appendix A.1, the ``ub-*`` upper bounds).

A longer value cannot be encoded as the profile asks (cryptography refuses a CN over 64 characters with a
library message; other attributes it would encode, and a CA or a browser refuses the request later), so
``csr new`` and ``card enroll`` refuse it up front, naming the attribute and its limit (issue 28).
"""

from __future__ import annotations

__all__ = ["UPPER_BOUNDS", "length_problem"]

#: Short name -> (the most characters allowed, the ASN.1 name of the bound in RFC 5280 Appendix A.1).
UPPER_BOUNDS: dict[str, tuple[int, str]] = {
    "CN": (64, "ub-common-name"),
    "O": (64, "ub-organization-name"),
    "OU": (64, "ub-organizational-unit-name"),
    "L": (128, "ub-locality-name"),
    "ST": (128, "ub-state-name"),
    "serialNumber": (64, "ub-serial-number"),
    "emailAddress": (255, "ub-emailaddress-length"),
    "STREET": (128, "ub-street-address (X.520)"),
}


def length_problem(short: str, value: str) -> str | None:
    """Why ``value`` is too long for the attribute ``short``, or None (also for attributes without a bound).

    >>> length_problem("CN", "x" * 65)
    'is 65 characters; RFC 5280 allows at most 64 (ub-common-name)'
    """
    bound = UPPER_BOUNDS.get(short)
    if bound is None or len(value) <= bound[0]:
        return None
    return f"is {len(value)} characters; RFC 5280 allows at most {bound[0]} ({bound[1]})"
