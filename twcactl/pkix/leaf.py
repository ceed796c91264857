"""Which certificate of a bundle is the subscriber's: a fullchain PEM (leaf first), a ``cert.zip`` or a directory.

Users hold what the CA gave them (domain.md §6): ``server.cer`` alone, the
``cert.zip`` of the manuals (root.cer, uca.cer, server.cer), or the
``fullchain.pem`` web servers want (leaf first, then the intermediates).
``csr new --from-cert`` and ``pfx export --cert`` take any of them and
need the leaf; ``pfx export --chain`` needs the rest, each certificate once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from twcactl.errors import InputError
from twcactl.pkix.parse_errors import X509_EXTENSION_ERRORS

__all__ = ["is_ca", "read_bundle", "split_leaf", "unique_certificates"]


def is_ca(cert: x509.Certificate) -> bool:
    """True when ``cert`` says it is a CA (basicConstraints cA TRUE, RFC 5280 §4.2.1.9).

    A certificate whose extensions cannot be decoded counts as not a CA
    (the callers then treat it as a leaf candidate and later checks refuse it).
    """
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
    except X509_EXTENSION_ERRORS:
        return False


def unique_certificates(certs: Sequence[x509.Certificate],
                        exclude: Sequence[x509.Certificate] = ()) -> list[x509.Certificate]:
    """``certs`` in order with exact duplicates (same DER) and any of ``exclude`` left out."""
    from twcactl.pkix.chain import fingerprint

    seen = {fingerprint(c) for c in exclude}
    out: list[x509.Certificate] = []
    for cert in certs:
        fp = fingerprint(cert)
        if fp not in seen:
            seen.add(fp)
            out.append(cert)
    return out


def split_leaf(certs: Sequence[x509.Certificate], *, name: str) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The subscriber's certificate of a bundle and the other certificates (duplicates and the leaf removed).

    The leaf is the only certificate, else the first that is not a CA (a
    fullchain lists it first; a ``cert.zip`` lists root.cer, uca.cer, then
    server.cer), else the first one.

    Raises:
        InputError: ``certs`` is empty (exit 3).
    """
    if not certs:
        raise InputError(f"{name} holds no certificate.")
    if len(certs) == 1:
        return certs[0], []
    leaf = next((c for c in certs if not is_ca(c)), certs[0])
    return leaf, unique_certificates(certs, exclude=[leaf])


def read_bundle(paths: Sequence[Path]) -> list[x509.Certificate]:
    """Every certificate of files (PEM bundles or DER), directories and zip archives, in input order.

    Raises:
        InputError: a named file is missing, unreadable or holds no certificate; a zip is damaged (exit 3).
    """
    from twcactl.pkix.chain import gather_certificates

    return [cert for _source, cert in gather_certificates(paths).certificates]
