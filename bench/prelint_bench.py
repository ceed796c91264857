"""The cost of pre-issuance linting (issue 26, BR 4.3.1.2): a ratio, not a timed test.

One figure, ``lint.pre_issuance``: the time to build a public-trust DV leaf with a throw-away key of the CA key's
type and lint it with pkilint's CA/B server-auth linter (what twcactl adds before the CA key signs), against
building and signing the same leaf with the CA key alone.  In process, RSA-2048 CA key, medians of N runs
(the first lint, which imports pkilint and makes the throw-away key, is reported apart).

Run from the repository root::

    .venv/bin/python bench/prelint_bench.py [--runs 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import Figure  # noqa: E402


def _setup() -> tuple[Any, Any, Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa

    from twcactl.issue import CaUrls, build_ca_certificate, ca_subject
    from twcactl.pkix.profiles import public_trust_profile

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = build_ca_certificate(subject=ca_subject("bench CA", "twcactl bench", "TW"), key=ca_key, issuer_cert=None,
                              issuer_key=ca_key, serial=x509.random_serial_number(), not_before=now,
                              not_after=now + dt.timedelta(days=3650), path_length=0, public_trust=True)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "www.twca.com.tw")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.twca.com.tw")]), critical=False)
           .sign(leaf_key, hashes.SHA256()))
    urls = CaUrls(crl_url="http://pki.example.tw/uca.crl", ocsp_url="http://ocsp.example.tw",
                  ca_issuers_url="http://pki.example.tw/uca.cer")
    return ca, ca_key, csr, (public_trust_profile("ssl", organisation=False), urls, now)


def measure(runs: int) -> dict[str, float]:
    """Median seconds of ``sign`` (build + CA signature) and ``lint`` (throw-away build + pkilint), and
    ``first_lint`` (the first call: pkilint's import and the throw-away key)."""
    from cryptography import x509

    from twcactl.issue import build_leaf, leaf_sans
    from twcactl.validation.lint import lint_before_signing

    ca, ca_key, csr, (profile, urls, now) = _setup()
    sans = leaf_sans(csr, profile, csr.subject)

    def leaf(key: Any) -> x509.Certificate:
        return build_leaf(csr, issuer_cert=ca, issuer_key=key, profile=profile, serial=x509.random_serial_number(),
                          not_before=now, not_after=now + dt.timedelta(days=90), urls=urls, sans=sans)

    started = time.perf_counter()
    lint_before_signing(leaf, ca, serverauth=True, name="bench")
    first = time.perf_counter() - started
    lint, sign = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        lint_before_signing(leaf, ca, serverauth=True, name="bench")
        t1 = time.perf_counter()
        leaf(ca_key)
        t2 = time.perf_counter()
        lint.append(t1 - t0)
        sign.append(t2 - t1)
    return {"lint": statistics.median(lint), "sign": statistics.median(sign), "first_lint": first, "runs": runs}


def figures(quick: bool, work: Path) -> tuple[list[Figure], dict[str, Any]]:
    """Issue 26's row, for information (no target): ``lint.pre_issuance``, seconds per certificate of the
    throw-away build and pkilint's CA/B server-auth lint, against building and signing the leaf alone.
    ``quick``: 5 runs (a few seconds); else 30."""
    result = measure(5 if quick else 30)
    row = Figure("lint.pre_issuance", "pre-issuance lint of one public-trust leaf (vs build and sign alone)", "s",
                 result["lint"], "build_leaf + CA signature", result["sign"],
                 note=f"median of {result['runs']}; first call {result['first_lint'] * 1000:.0f} ms "
                      "(imports pkilint, makes the throw-away key)")
    return [row], {"lint": result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    result = measure(args.runs)
    print(f"pre-issuance lint {result['lint'] * 1000:.1f} ms per certificate; build and sign "
          f"{result['sign'] * 1000:.1f} ms; first call {result['first_lint'] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
