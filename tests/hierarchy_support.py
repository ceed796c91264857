"""Relying parties for issue 25: OpenSSL's ``verify -crl_check_all -crl_download`` and a Java program
(CertPathBuilder following AIA caIssuers, CertPathValidator with OCSP and CRL distribution points on), both
fetching everything from the URLs in the certificates, served by ``twcactl serve`` on loopback."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from tests.conftest import require

JAVA_SOURCE = r"""
import java.io.FileInputStream;
import java.security.Security;
import java.security.cert.*;
import java.util.*;

public class PathCheck {
    public static void main(String[] args) throws Exception {
        Security.setProperty("ocsp.enable", "true");
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        X509Certificate root = (X509Certificate) cf.generateCertificate(new FileInputStream(args[0]));
        Set<TrustAnchor> anchors = Collections.singleton(new TrustAnchor(root, null));
        for (int i = 1; i < args.length; i++) {
            X509Certificate leaf = (X509Certificate) cf.generateCertificate(new FileInputStream(args[i]));
            X509CertSelector target = new X509CertSelector();
            target.setCertificate(leaf);
            PKIXBuilderParameters build = new PKIXBuilderParameters(anchors, target);
            build.addCertStore(CertStore.getInstance("Collection", new CollectionCertStoreParameters(List.of(leaf))));
            build.setRevocationEnabled(false);  // the path from the leaf alone: its issuer comes from caIssuers
            CertPath path;
            try {
                path = ((PKIXCertPathBuilderResult) CertPathBuilder.getInstance("PKIX").build(build)).getCertPath();
            } catch (CertPathBuilderException e) {
                System.out.println("NOPATH -1 NOPATH -1");
                continue;
            }
            // the leaf by OCSP alone (no fallback to CRLs): the responder at the leaf's AIA URL must answer
            CertPathValidator validator = CertPathValidator.getInstance("PKIX");
            PKIXRevocationChecker ocspOnly = (PKIXRevocationChecker) validator.getRevocationChecker();
            ocspOnly.setOptions(EnumSet.of(PKIXRevocationChecker.Option.ONLY_END_ENTITY,
                                           PKIXRevocationChecker.Option.NO_FALLBACK));
            PKIXParameters byOcsp = new PKIXParameters(anchors);
            byOcsp.addCertPathChecker(ocspOnly);
            String ocsp = verdict(validator, path, byOcsp);
            // the whole chain, as a default PKIX client checks it: OCSP where a certificate names a responder,
            // else the CRL at its distribution point
            PKIXParameters check = new PKIXParameters(anchors);
            check.setRevocationEnabled(true);
            System.out.println(verdict(CertPathValidator.getInstance("PKIX"), path, check) + " " + ocsp);
        }
    }

    static String verdict(CertPathValidator validator, CertPath path, PKIXParameters params) {
        try {
            validator.validate(path, params);
            return "VALID " + path.getCertificates().size();
        } catch (CertPathValidatorException e) {
            return e.getReason() + " " + e.getIndex();
        } catch (Exception e) {
            return "ERROR -1";
        }
    }
}
"""

_JAVA_LINE = re.compile(r"^(\w+) (-?\d+) (\w+) (-?\d+)$")
_OPENSSL_ERROR = re.compile(r"error (\d+) at (\d+) depth lookup")


@dataclass(frozen=True)
class Outcome:
    """One relying party's verdict on a leaf: ``VALID`` or the failure's reason (Java's
    ``BasicReason`` name, OpenSSL's X509_V_ERR number) and the depth (OpenSSL) or path index (Java) it is at;
    for Java ``ocsp`` is the verdict on the leaf by OCSP alone (``ONLY_END_ENTITY``, ``NO_FALLBACK``)."""

    verdict: str
    where: int
    text: str = ""
    ocsp: str = ""


def compile_java(directory: Path) -> Path:
    """Compile :data:`JAVA_SOURCE` with the real ``javac``; returns the class directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "PathCheck.java").write_text(JAVA_SOURCE)
    out = subprocess.run([require("javac"), "-d", str(directory), str(directory / "PathCheck.java")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return directory


#: The public name a public-trust CA publishes under in these tests: the BR linter refuses an IP address in a
#: certificate's URLs, so its URLs name this host, which the relying parties resolve to loopback (Java through
#: ``jdk.net.hosts.file``, which then resolves nothing else; this module's fetches by rewriting the URL).
PUBLIC_HOST = "pki.twca.com.tw"


def loopback(url: str) -> str:
    """``url`` with :data:`PUBLIC_HOST` replaced by 127.0.0.1 (nothing here ever leaves the machine)."""
    return url.replace(f"http://{PUBLIC_HOST}:", "http://127.0.0.1:", 1)


def java_outcomes(classes: Path, root: Path, leaves: list[Path]) -> list[Outcome]:
    """Run the Java program on ``leaves`` (one JVM) with CRL distribution points and AIA caIssuers enabled
    (``com.sun.security.enableCRLDP``, ``com.sun.security.enableAIAcaIssuers``) and OCSP on; names resolve
    from a hosts file only (:data:`PUBLIC_HOST` and localhost on loopback)."""
    hosts = classes / "hosts"
    hosts.write_text(f"127.0.0.1 {PUBLIC_HOST}\n127.0.0.1 localhost\n")
    out = subprocess.run([require("java"), f"-Djdk.net.hosts.file={hosts}", "-Dcom.sun.security.enableCRLDP=true",
                          "-Dcom.sun.security.enableAIAcaIssuers=true", "-cp", str(classes), "PathCheck", str(root),
                          *map(str, leaves)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [m for line in out.stdout.splitlines() if (m := _JAVA_LINE.match(line))]
    assert len(lines) == len(leaves), out.stdout + out.stderr
    return [Outcome(m.group(1), int(m.group(2)), out.stdout, m.group(3)) for m in lines]


def openssl_outcome(root: Path, leaf: Path, workdir: Path) -> Outcome:
    """``openssl verify -crl_check_all`` of ``leaf``: its issuing CA fetched from the leaf's caIssuers URL, the
    CRLs from the CRL distribution points of the leaf and of its issuing CA (OpenSSL also checks the root
    itself against the root's CRL, which a root certificate names nowhere: BR §7.1.2.1 forbids a CRL
    distribution point in it); ``-crl_download`` on too.  ``VALID`` or the X509_V_ERR number and depth."""
    cert = x509.load_pem_x509_certificate(leaf.read_bytes())
    issuer = x509.load_der_x509_certificate(fetch(aia(cert, AuthorityInformationAccessOID.CA_ISSUERS))[2])
    untrusted = workdir / f"{leaf.stem}.issuer.pem"
    untrusted.write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    crls = workdir / f"{leaf.stem}.crls.pem"
    crls.write_bytes(b"".join(x509.load_der_x509_crl(fetch(url)[2]).public_bytes(serialization.Encoding.PEM)
                              for c in (cert, issuer) for kind, url in urls_of(c) if kind == "crl"))
    # -crl_download only where OpenSSL would fetch from loopback (a PUBLIC_HOST URL would ask the machine's DNS);
    # the CRLs of every URL in the certificates are given to it in -CRLfile either way
    download = ["-crl_download"] if all(loopback(url) == url for c in (cert, issuer) for _k, url in urls_of(c)) else []
    out = subprocess.run([require("openssl"), "verify", "-crl_check_all", *download, "-CRLfile", str(crls),
                          "-CAfile", str(root), "-untrusted", str(untrusted), str(leaf)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode == 0:
        return Outcome("VALID", 0)
    found = _OPENSSL_ERROR.search(out.stdout + out.stderr)
    assert found is not None, out.stdout + out.stderr
    return Outcome(found.group(1), int(found.group(2)), out.stdout + out.stderr)


def fetch(url: str, data: bytes | None = None, content_type: str | None = None) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of a GET (or a POST of ``data``) to ``url`` (loopback only)."""
    url = loopback(url)
    assert url.startswith("http://127.0.0.1:"), url
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def aia(cert: x509.Certificate, method: x509.ObjectIdentifier) -> str:
    """The first AIA URL of ``method`` in ``cert``."""
    access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return next(str(a.access_location.value) for a in access if a.access_method == method)


def urls_of(cert: x509.Certificate) -> list[tuple[str, str]]:
    """Every URL ``cert`` names: ``("crl" | "ocsp" | "ca", URL)``."""
    out: list[tuple[str, str]] = []
    try:
        for point in cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value:
            out += [("crl", str(n.value)) for n in point.full_name or []]
    except x509.ExtensionNotFound:
        pass
    try:
        for a in cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value:
            kind = "ocsp" if a.access_method == AuthorityInformationAccessOID.OCSP else "ca"
            out.append((kind, str(a.access_location.value)))
    except x509.ExtensionNotFound:
        pass
    return out


def crl_urls(crl: x509.CertificateRevocationList) -> list[str]:
    """Every URL a CRL names (AIA, issuing distribution point, freshest CRL); twcactl's name none so far."""
    out: list[str] = []
    for ext in crl.extensions:
        value = ext.value
        if isinstance(value, x509.AuthorityInformationAccess):
            out += [str(a.access_location.value) for a in value]
        elif isinstance(value, x509.IssuingDistributionPoint):
            out += [str(n.value) for n in value.full_name or []]
        elif isinstance(value, x509.FreshestCRL):
            out += [str(n.value) for p in value for n in p.full_name or []]
    return out


CONTENT_TYPES = {"crl": "application/pkix-crl", "ca": "application/pkix-cert", "ocsp": "application/ocsp-response"}


def check_every_url(certs: list[x509.Certificate], issuers: dict[x509.Name, x509.Certificate]) -> set[str]:
    """GET every CRL and caIssuers URL and POST an OCSP request to every OCSP URL of ``certs``: each answers 200
    with the right content type; a CRL is signed by the certificate's issuer, a caIssuers URL serves the issuer,
    an OCSP answer is successful.  Returns the URLs checked (and every URL the fetched CRLs name, checked too)."""
    seen: set[str] = set()
    for cert in certs:
        issuer = issuers[cert.issuer]
        for kind, url in urls_of(cert):
            if kind == "ocsp":
                request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
                status, ctype, body = fetch(url, request.public_bytes(serialization.Encoding.DER),
                                            "application/ocsp-request")
                assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
            else:
                status, ctype, body = fetch(url)
                if kind == "crl":
                    crl = x509.load_der_x509_crl(body)
                    assert crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
                    for inner in crl_urls(crl):
                        inner_status, _t, _b = fetch(inner)
                        assert inner_status == 200, inner
                        seen.add(inner)
                else:
                    assert x509.load_der_x509_certificate(body) == issuer, url
            assert (status, ctype.split(";")[0]) == (200, CONTENT_TYPES[kind]), (url, status, ctype)
            seen.add(url)
    return seen
