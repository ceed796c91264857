"""What issue 26's and 27's checks cost per certificate (issue 29): CAA, corroboration, operator signatures, and
a public-trust ACME finalize that runs them all.

Real components on loopback, as the tests start them (``tests/validation_support.py``): a dnsmasq for the CA,
five ``twcactl serve --perspective`` processes (each with its own dnsmasq), nginx for the http-01 files; a
SoftHSM2 token for the operator key.  Milliseconds per certificate, medians:

* ``checks.caa_ms``: one CAA lookup and its evaluation (``validation.caa.check_caa``, BR 3.2.2.8) against the
  local dnsmasq, a new name each time (nothing cached), against resolving the name's A record once.
* ``checks.mpic_ms``: one corroboration round trip (``validation.perspectives.ask_all``, BR 3.2.2.9): a CAA
  request to the 5 perspectives at once, each looking it up in its own dnsmasq; against the local CAA lookup.
* ``checks.operator_signature_ms``: an operator's signature over a log statement with an EC P-256 key on the
  SoftHSM2 token, and its verification against the operator's certificate (``authority.signed_actions``);
  against the same with an in-memory key.
* ``checks.acme_finalize_public_trust_ms``: ``authority.acme.finalize`` (the function ``twcactl serve`` runs for
  a finalize POST) on ready orders of a public-trust CA whose checks point at the world above: name rules, DCV
  reuse, a fresh CAA lookup with its 5-perspective corroboration, pre-issuance lint, signature, records and log;
  pinned to one CPU (the perspectives and dnsmasq run where the kernel puts them).  Target: median <= 50 ms.
  The peer is the same finalize in a private CA (no checks).

Each row's note gives the check's share of the public-trust finalize median.

Run from the repository root::

    .venv/bin/python bench/checks_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import Figure, Target, median  # noqa: E402

#: Issue 29's Done-when line: a public-trust ACME finalize with CAA, 5 perspectives and lint, one core.
FINALIZE_TARGET_MS = 50.0
ACCOUNT = "70759028-01"
DOMAIN = "twca.com.tw"
OPERATOR = "bench"
PIN = "12345678"
SOFTHSM_MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")


def _ms(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _twcactl(home: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWCACTL_")}
    env["TWCACTL_OPERATOR"] = OPERATOR
    proc = subprocess.run([sys.executable, "-m", "twcactl", "--home", str(home), *args], capture_output=True,
                          text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"twcactl {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")


def _home(path: Path, world: Any | None) -> Path:
    """A CA home (RSA-2048, no passphrase) with the account; public-trust and pointed at ``world`` when given."""
    from tests.validation_support import settings

    _twcactl(path, "ca", "init", "--org", "twcactl Bench", "--country", "TW", "--root-key-type", "rsa2048",
             "--no-passphrase", "--crl-url", "http://pki.example.tw/ca.crl", "--ocsp-url", "http://ocsp.example.tw",
             *(["--public-trust"] if world is not None else []))
    if world is not None:
        for key, value in settings(world):
            _twcactl(path, "ca", "config", key, value)
    _twcactl(path, "account", "add", ACCOUNT, "--org", "TWCA", "--domain", DOMAIN, "--quota", "100000")
    return path


# ---------------------------------------------------------------- CAA and corroboration, one at a time

def caa_and_mpic(world: Any, runs: int) -> dict[str, list[float]]:
    """Milliseconds of a local CAA check (a new name each time), of an A lookup, and of a CAA corroboration
    round trip at every perspective of ``world``."""
    import dns.resolver

    from tests.validation_support import CA_IDENTITY
    from twcactl.validation import caa, perspectives
    from twcactl.validation.resolver import DnsServer

    server = DnsServer.parse(world.primary.resolver)
    token = world.token_file.read_text().strip()
    urls = [p.url for p in world.perspectives]
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = ["127.0.0.1"], world.primary.port
    counter = iter(range(10**9))

    def request() -> caa.CaaRequest:
        return caa.CaaRequest(f"c{next(counter)}-{os.getpid()}.{DOMAIN}", (CA_IDENTITY,), None, None)

    def one_caa() -> None:
        if not caa.check_caa(request(), server).allowed:
            raise RuntimeError("the bench's CAA check refused")

    def one_mpic() -> None:
        answers = perspectives.ask_all(urls, token, perspectives.caa_request(request()))
        if not all(a.passed for a in answers):
            raise RuntimeError(f"a perspective did not corroborate: {answers}")

    one_caa(), one_mpic()  # warm: imports, connections
    return {"caa": _ms(one_caa, runs), "a": _ms(lambda: resolver.resolve(f"a{next(counter)}.{DOMAIN}", "A"), runs),
            "mpic": _ms(one_mpic, runs)}


# ---------------------------------------------------------------- operator signatures

@contextlib.contextmanager
def _softhsm(directory: Path) -> Iterator[str]:
    """A SoftHSM2 token ``operator`` in ``directory`` (SOFTHSM2_CONF set while inside); its module's path."""
    module = next((m for m in SOFTHSM_MODULES if os.path.isfile(m)), None)
    if shutil.which("softhsm2-util") is None or module is None:
        raise RuntimeError("the operator signature figure needs SoftHSM2 (apt-get install softhsm2)")
    (directory / "tokens").mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "operator", "--pin", PIN,
                        "--so-pin", "87654321"], check=True, capture_output=True)
        yield module
    finally:
        if before is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = before


def _certificate_for(public_key: Any) -> Any:
    """A throw-away certificate binding ``public_key`` (what ``operator add --cert`` records)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    issuer = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bench operator")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30)).sign(issuer, hashes.SHA256()))


def operator_signatures(work: Path, runs: int) -> dict[str, list[float]]:
    """Milliseconds of sign + verify of a 32-byte log statement, token key and in-memory key (EC P-256)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from twcactl.authority.signed_actions import sign_statement, signature_valid
    from twcactl.backends.p11 import Pkcs11Module

    statement = os.urandom(32)  # the log entry's hash the operator signs
    out: dict[str, list[float]] = {}
    with _softhsm(work / "softhsm") as module, \
            Pkcs11Module(module).open_token("operator").session(PIN, rw=True) as session:
        keys = {"token": session.generate_key_pair("ec-p256", label="user-sign"),
                "memory": ec.generate_private_key(ec.SECP256R1())}
        for where, key in keys.items():
            cert = _certificate_for(key.public_key())

            def once(key: Any = key, cert: Any = cert) -> None:
                if not signature_valid(cert, sign_statement(key, statement), statement):
                    raise RuntimeError("the operator signature did not verify")

            once()
            out[where] = _ms(once, runs)
    return out


# ---------------------------------------------------------------- ACME finalize, public trust and private

def finalize_times(home: Path, world: Any | None, runs: int) -> list[float]:
    """Milliseconds of ``authority.acme.finalize`` on ``runs`` ready orders of ``home`` (a new name each), pinned
    to one CPU; the http-01 validations (and their corroboration, in public trust) happen before, untimed."""
    import josepy
    from cryptography.hazmat.primitives.asymmetric import ec

    from bench.serve_bench import _acme_csr
    from twcactl.authority import acme as core
    from twcactl.store import Store

    store = Store.open(home)
    try:
        grant = core.create_eab(store, ACCOUNT, operator=OPERATOR)
        jwk = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        thumbprint = base64.urlsafe_b64encode(jwk.thumbprint()).rstrip(b"=").decode()
        account = core.new_account(store, jwk_json=jwk.json_dumps(), kid=grant.kid, contact=[], thumbprint=thumbprint)
        key = ec.generate_private_key(ec.SECP256R1())
        ready = []
        for i in range(runs + 2):
            name = f"f{i}-{os.getpid()}-{time.monotonic_ns() % 10**9}.{DOMAIN}"
            view = core.new_order(store, account, [("dns", name)])
            for authz in view.authzs:
                chall = next(c for c in store.acme.challenges_of(authz.id) if c.type == "http-01")
                if world is not None:  # the perspectives fetch the file from nginx
                    files = world.web.root / ".well-known" / "acme-challenge"
                    files.mkdir(parents=True, exist_ok=True)
                    (files / chall.token).write_text(core.key_authorization(chall.token, thumbprint))
                core.respond_challenge(store, account, chall.id, lambda *_a: None)
            ready.append((view.order.id, _acme_csr([name], key)))
        pinned = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        if pinned is not None:
            os.sched_setaffinity(0, {min(pinned)})
        times = []
        try:
            for i, (order_id, csr_der) in enumerate(ready):
                t0 = time.perf_counter()
                view = core.finalize(store, account, order_id, csr_der, passphrase=lambda: None)
                if i >= 2:  # the first ones import pkilint and warm the caches
                    times.append((time.perf_counter() - t0) * 1000)
                if view.order.status != "valid":
                    raise RuntimeError(f"finalize left the order {view.order.status}: {view.order.error}")
        finally:
            if pinned is not None:
                os.sched_setaffinity(0, pinned)
        return times
    finally:
        store.close()


def measure(quick: bool, work: Path) -> dict[str, Any]:
    """Every measurement (milliseconds per certificate); see the module docstring."""
    from tests.validation_support import start_world

    runs, finalize_runs = (5, 5) if quick else (50, 40)
    (work / "world").mkdir()
    world = start_world(work / "world")
    try:
        world.serve_all()
        checks = caa_and_mpic(world, runs)
        public = finalize_times(_home(work / "public", world), world, finalize_runs)
    finally:
        world.stop()
    private = finalize_times(_home(work / "private", None), None, finalize_runs)
    signatures = operator_signatures(work, runs * 4)
    return {**checks, **signatures, "finalize_public": public, "finalize_private": private}


def figures(quick: bool, work: Path) -> tuple[list[Figure], dict[str, Any]]:
    """Issue 29's rows for the public-trust checks: ``checks.caa_ms``, ``checks.mpic_ms``,
    ``checks.operator_signature_ms`` (information) and ``checks.acme_finalize_public_trust_ms`` (target:
    median <= 50 ms).  ``quick``: 5 runs each (about half a minute, most of it starting the processes)."""
    work.mkdir(parents=True, exist_ok=True)
    m = measure(quick, work)
    fin = median(m["finalize_public"])

    def share(ms: float) -> str:
        return f"{ms / fin * 100:.0f}% of a public-trust finalize ({fin:.1f} ms)"

    caa, mpic, token = median(m["caa"]), median(m["mpic"]), median(m["token"])
    rows = [
        Figure("checks.caa_ms", "CAA lookup + evaluation, local dnsmasq, uncached", "ms", caa,
               "one A lookup (dnspython)", median(m["a"]), samples=m["caa"],
               note=f"median of {len(m['caa'])}; walks the name up to the TLD; {share(caa)}"),
        Figure("checks.mpic_ms", "corroboration round trip, 5 local serve --perspective", "ms", mpic,
               "local CAA check", caa, samples=m["mpic"],
               note=f"median of {len(m['mpic'])}; CAA request, all 5 asked at once; {share(mpic)}"),
        Figure("checks.operator_signature_ms", "operator signature + verification, SoftHSM2 EC P-256", "ms", token,
               "in-memory EC P-256 key", median(m["memory"]), samples=m["token"],
               note=f"median of {len(m['token'])}; once per signed action; {share(token)}"),
        Figure("checks.acme_finalize_public_trust_ms",
               "public-trust ACME finalize (CAA, 5 perspectives, lint), one CPU", "ms", fin,
               "same finalize, private CA", median(m["finalize_private"]),
               target=Target("value_max", FINALIZE_TARGET_MS), samples=m["finalize_public"],
               peer_samples=m["finalize_private"],
               note=(f"median of {len(m['finalize_public'])}; authority.acme.finalize as serve runs it, a fresh "
                     f"name (no CAA reuse) each; the checks' share {(fin - median(m['finalize_private'])) / fin * 100:.0f}%")),
    ]
    return rows, {"checks_ms": {k: median(v) for k, v in m.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows, _ = figures(args.quick, Path(tmp))
    for row in rows:
        print(f"{row.key}: {row.value:.2f} {row.unit} (peer {row.peer_name} {row.peer_value:.2f}); {row.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
