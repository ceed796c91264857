"""Where a CA publishes, and so which URLs go into the certificates it signs (issue 25; docs/hierarchy.md).

Every certificate names its *own issuer's* CRL and certificate (RFC 5280 §4.2.1.13: the CRL at a
distribution point is signed by the certificate's issuer; §4.2.2.1: caIssuers names the issuer's
certificate): a leaf its issuing CA's, an issuing CA the root's.  ``twcactl serve`` answers
``/crl/NAME.crl``, ``/ca/NAME.cer`` and ``/ocsp`` (:data:`SERVE_LAYOUT`); one ``base_url`` derives them
all.  The separate ``crl_url`` / ``ocsp_url`` / ``ca_issuers_url`` settings stay for a CA that publishes
elsewhere; a file name among them that names one of the home's CAs is replaced by the issuer's own, so a
leaf of a second issuing CA never points at the first one's CRL.

Pure: no cryptography, no store.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

#: How long a CRL over CA certificates (the root's) stays current, in days: BR §4.9.7 asks for a new one at
#: least every 12 months, its nextUpdate at most 12 months after its thisUpdate (365 days is within that).
CA_CRL_DAYS = 365
#: ``ca check`` warns when a CA's CRL over CA certificates has fewer days than this left (its ceremony is due).
CA_CRL_WARN_DAYS = 30

#: The paths ``twcactl serve`` answers (serve/app.py): a CA's CRL, its certificate, the OCSP responder.
SERVE_LAYOUT = {"crl": "/crl/{name}.crl", "ca": "/ca/{name}.cer", "ocsp": "/ocsp"}


@dataclass(frozen=True)
class Published:
    """The URLs one certificate carries: CRL distribution point, OCSP responder, AIA caIssuers (None: left out)."""

    crl_url: str | None = None
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def serve_urls(base_url: str, issuer: str, *, ocsp: bool) -> Published:
    """The URLs of CA ``issuer`` in the layout ``serve`` answers under ``base_url`` (``http://HOST:PORT``)."""
    base = _base(base_url)
    return Published(crl_url=base + SERVE_LAYOUT["crl"].format(name=issuer),
                     ocsp_url=base + SERVE_LAYOUT["ocsp"] if ocsp else None,
                     ca_issuers_url=base + SERVE_LAYOUT["ca"].format(name=issuer))


def beside(crl_url: str, issuer: str) -> Published:
    """The CRL and certificate of CA ``issuer`` published where ``crl_url`` is: in the ``serve`` layout when
    ``crl_url`` is one of its CRL URLs (``.../crl/NAME.crl`` -> ``.../crl/ISSUER.crl`` and
    ``.../ca/ISSUER.cer``), else ``ISSUER.crl`` and ``ISSUER.cer`` in the same directory."""
    head, _, _file = crl_url.rpartition("/")
    if head.endswith("/crl"):
        return serve_urls(head[: -len("/crl")], issuer, ocsp=False)
    return Published(crl_url=f"{head}/{issuer}.crl", ca_issuers_url=f"{head}/{issuer}.cer")


def _for_issuer(url: str, issuer: str, ca_names: frozenset[str], suffix: str) -> str:
    """``url`` with a last path segment ``NAME<suffix>`` naming one of ``ca_names`` replaced by ``issuer``'s."""
    head, _, last = url.rpartition("/")
    if last.endswith(suffix) and last[: -len(suffix)] in ca_names and urlsplit(url).path.endswith(last):
        return f"{head}/{issuer}{suffix}"
    return url


def leaf_urls(*, base_url: str, crl_url: str, ocsp_url: str, ca_issuers_url: str, issuer: str,
              ca_names: frozenset[str]) -> Published:
    """The URLs of a certificate issuing CA ``issuer`` signs: an explicit setting wins (adjusted to the issuer
    by :func:`_for_issuer`), else the one ``base_url`` derives, else none (``""`` settings are unset)."""
    derived = serve_urls(base_url, issuer, ocsp=True) if base_url else Published()
    return Published(
        crl_url=_for_issuer(crl_url, issuer, ca_names, ".crl") if crl_url else derived.crl_url,
        ocsp_url=ocsp_url or derived.ocsp_url,
        ca_issuers_url=(_for_issuer(ca_issuers_url, issuer, ca_names, ".cer") if ca_issuers_url
                        else derived.ca_issuers_url))


def ca_certificate_urls(*, base_url: str, crl_url: str, issuer: str) -> Published:
    """The URLs of a CA certificate ``issuer`` signs: the issuer's CRL and certificate, and no OCSP URL (no
    responder here answers for CA certificates; relying parties check them against the issuer's CRL).

    From ``base_url`` when set, else beside ``crl_url`` (:func:`beside`), else none."""
    if base_url:
        return serve_urls(base_url, issuer, ocsp=False)
    if crl_url:
        return beside(crl_url, issuer)
    return Published()
