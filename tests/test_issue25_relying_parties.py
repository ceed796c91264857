"""Issue 25: real relying parties check a twcactl hierarchy served by ``twcactl serve`` on loopback.

For a default-mode CA and a public-trust CA, each made with ``--base-url`` of the server: OpenSSL
(``verify -crl_check_all -crl_download``) and a Java program compiled here (CertPathBuilder following AIA
caIssuers from the leaf alone, CertPathValidator with OCSP and CRL distribution points on) accept a good leaf
and reject a revoked leaf (at the leaf) and a good leaf under a revoked issuing CA (at the issuing CA, from the
root's CRL); every URL in every certificate and CRL the home holds answers 200 with the right content type."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from tests.conftest import ACCOUNT, CaHome, make_ca, sh
from tests.hierarchy_support import (
    PUBLIC_HOST,
    check_every_url,
    compile_java,
    fetch,
    java_outcomes,
    openssl_outcome,
    urls_of,
)
from tests.serve_support import free_port, start_server
from tests.validation_support import World, configure, validate_http, world_fixture

SUBJECT = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/CN={cn}.twca.com.tw"


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_java(tmp_path_factory.mktemp("java"))


def csr(directory: Path, name: str) -> Path:
    """A fresh RSA-2048 CSR for ``name``.twca.com.tw made by the real ``openssl req``."""
    out = directory / f"{name}.csr"
    proc = sh("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", SUBJECT.format(cn=name),
              "-addext", f"subjectAltName=DNS:{name}.twca.com.tw", "-keyout", directory / f"{name}.key", "-out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def issue(home: CaHome, directory: Path, name: str) -> dict[str, str]:
    """Issue a 90-day certificate for ``name``; its record as ``--json`` shows it (``path``, ``serial``...)."""
    result = home.run("--json", "cert", "issue", csr(directory, name), "--account", ACCOUNT, "--days", "90")
    assert result.code == 0, result.stderr
    return result.json()["certificates"][0]  # type: ignore[no-any-return]


def ok(home: CaHome, *args: str | os.PathLike[str]) -> dict[str, Any]:
    result = home.run("--json", *args)
    assert result.code == 0, result.stderr
    return result.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """dnsmasq, nginx and five remote perspectives: a public-trust issuance validates its domain, checks CAA
    and has the perspectives corroborate (issue 26)."""
    world = world_fixture(tmp_path_factory.mktemp("world"))
    started = next(world)
    started.serve_all()
    yield started
    next(world, None)


@pytest.fixture(params=[False, True], ids=["default", "public-trust"])
def hierarchy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CaHome, str, dict[str, Path]]]:
    """A CA published by its own ``serve``: a good and a revoked leaf of ``uca``, and a good leaf of issuing CA
    ``doomed``, revoked afterwards (it issued while active; ``uca`` was active again when it was revoked)."""
    port = free_port()
    # a public-trust CA's URLs name a public host (the BR linter refuses an IP address), resolved to loopback
    base = f"http://{PUBLIC_HOST if request.param else '127.0.0.1'}:{port}"
    home = make_ca(tmp_path / "ca", "--base-url", base, *(["--public-trust"] if request.param else []))
    ok(home, "account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "20")
    if request.param:  # public trust: the domain validated, CAA and the perspectives in place (issue 26)
        world: World = request.getfixturevalue("world")
        configure(home, world)
        validate_http(home, world, "twca.com.tw")
    good, revoked = issue(home, tmp_path, "good"), issue(home, tmp_path, "revoked")
    ok(home, "cert", "revoke", revoked["serial"], "--reason", "keyCompromise")
    ok(home, "ca", "issuer", "add", "doomed")
    ok(home, "ca", "issuer", "activate", "doomed")
    under = issue(home, tmp_path, "under")
    ok(home, "ca", "issuer", "activate", "uca")
    doc = ok(home, "ca", "issuer", "revoke", "doomed", "--reason", "keyCompromise")
    assert doc["issuer"]["state"] == "revoked"
    proc, _tls, _http, _h01 = start_server(home, tmp_path / "serve.log", http_port=port)
    try:
        yield home, base, {name: Path(rec["path"]) for name, rec in
                           (("good", good), ("revoked", revoked), ("under", under))}
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()[-2000:]


def test_openssl_and_java_check_revocation_through_the_served_urls(
        hierarchy: tuple[CaHome, str, dict[str, Path]], java_classes: Path, tmp_path: Path) -> None:
    home, base, leaves = hierarchy
    root = home.path / "ca" / "root.cer"

    # every certificate names its own issuer's URLs, in the layout serve answers
    for name, issuer in (("good", "uca"), ("under", "doomed")):
        cert = x509.load_pem_x509_certificate(leaves[name].read_bytes())
        assert sorted(urls_of(cert)) == sorted([("crl", f"{base}/crl/{issuer}.crl"), ("ocsp", f"{base}/ocsp"),
                                                ("ca", f"{base}/ca/{issuer}.cer")])
    for ca in ("uca", "doomed"):
        cert = x509.load_pem_x509_certificate((home.path / "ca" / f"{ca}.cer").read_bytes())
        assert sorted(urls_of(cert)) == [("ca", f"{base}/ca/root.cer"), ("crl", f"{base}/crl/root.crl")]

    work = tmp_path / "openssl"
    work.mkdir()
    seen = {name: openssl_outcome(root, path, work) for name, path in leaves.items()}
    assert (seen["good"].verdict, seen["good"].where) == ("VALID", 0)
    assert (seen["revoked"].verdict, seen["revoked"].where) == ("23", 0), seen["revoked"].text  # X509_V_ERR_CERT_REVOKED
    assert (seen["under"].verdict, seen["under"].where) == ("23", 1), seen["under"].text

    java = dict(zip(leaves, java_outcomes(java_classes, root, list(leaves.values()))))
    assert (java["good"].verdict, java["good"].where) == ("VALID", 2), java["good"]  # the issuer came via caIssuers
    assert (java["revoked"].verdict, java["revoked"].where) == ("REVOKED", 0), java["revoked"]
    assert (java["under"].verdict, java["under"].where) == ("REVOKED", 1), java["under"]
    # the leaves' own OCSP answers, with no fallback to CRLs: the responder answers for each issuing CA
    assert {name: o.ocsp for name, o in java.items()} == {"good": "VALID", "revoked": "REVOKED", "under": "VALID"}


def test_every_url_in_every_certificate_and_crl_answers(hierarchy: tuple[CaHome, str, dict[str, Path]]) -> None:
    home, base, _leaves = hierarchy
    cas = [x509.load_pem_x509_certificate(p.read_bytes()) for p in sorted((home.path / "ca").glob("*.cer"))]
    leaves = [x509.load_pem_x509_certificates(p.read_bytes())[0] for p in sorted((home.path / "certs").glob("*.pem"))]
    issuers = {c.subject: c for c in cas}
    checked = check_every_url(cas + leaves, issuers)
    names = {p.stem for p in (home.path / "ca").glob("*.cer")}
    assert names == {"root", "uca", "doomed"}
    # every URL the home could name: each CA's CRL and certificate, and the responder
    assert {f"{base}/crl/{n}.crl" for n in names} - {f"{base}/crl/root.crl"} <= checked
    assert {f"{base}/ca/{n}.cer" for n in names} <= checked and f"{base}/ocsp" in checked
    for crl_file in (home.path / "crl").glob("*.crl"):
        status, ctype, body = fetch(f"{base}/crl/{crl_file.name}")
        assert (status, ctype) == (200, "application/pkix-crl")
        assert x509.load_der_x509_crl(body).issuer == issuers[x509.load_der_x509_crl(crl_file.read_bytes()).issuer].subject
    assert fetch(f"{base}/crl/root.crl")[0] == 200
    # the leaves the server made for itself (TLS, OCSP signing) name no URL a relying party could not follow
    assert all(url.startswith(base) for cert in leaves for _kind, url in urls_of(cert))
    assert any(a.access_method == AuthorityInformationAccessOID.OCSP for cert in leaves if urls_of(cert)
               for a in cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value)
