"""Signing through SoftHSM2 vs a key file (issue 14): a ratio, not a timed test.

Two figures, each for the key types a CA home uses:

* raw signatures: N ``sign()`` calls on a 1 KiB message, a SoftHSM2 token key
  (twcactl's ``TokenRSAPrivateKey`` / ``TokenECPrivateKey``, one logged-in
  session) against the same kind of key held by cryptography in memory;
* whole commands: M ``twcactl cert issue`` runs (one process each) on a home
  whose CA keys are on the token against a home with encrypted key files.

Run from the repository root::

    .venv/bin/python bench/hsm_signing.py [--signatures 300] [--issues 8] [--json-out FILE]

Needs ``softhsm2-util`` and ``openssl``.  The token lives in a temporary
directory (its own ``SOFTHSM2_CONF``), removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import Figure  # noqa: E402

PIN = "24681357"
PASSPHRASE = "correct horse battery staple"
SUBJ = "/C=TW/ST=Taiwan/L=Taipei/O=TWCA/OU=SYSTEM/CN=www.twca.com.tw"
SOFTHSM_MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")


def _softhsm(directory: Path) -> str:
    (directory / "tokens").mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    for label in ("bench", "CA"):
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin",
                        "87654321"], check=True, capture_output=True)
    return next(m for m in SOFTHSM_MODULES if os.path.isfile(m))


def raw_signatures(module: str, count: int) -> dict[str, dict[str, float]]:
    """Seconds per signature, token vs in-memory key, for RSA-2048 (PKCS#1 v1.5) and EC P-256 (ECDSA), SHA-256."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    from twcactl.backends.p11 import Pkcs11Module

    message = os.urandom(1024)
    out: dict[str, dict[str, float]] = {}
    with Pkcs11Module(module).open_token("bench").session(PIN, rw=True) as session:
        pairs: dict[str, tuple[object, object]] = {
            "rsa2048": (session.generate_key_pair("rsa2048", label="bench rsa"),
                        rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "ec-p256": (session.generate_key_pair("ec-p256", label="bench ec"), ec.generate_private_key(ec.SECP256R1())),
        }
        for name, (token_key, file_key) in pairs.items():
            figures = {}
            for where, key in (("token", token_key), ("file", file_key)):
                start = time.perf_counter()
                for _ in range(count):
                    if isinstance(key, rsa.RSAPrivateKey):
                        key.sign(message, padding.PKCS1v15(), hashes.SHA256())
                    elif isinstance(key, ec.EllipticCurvePrivateKey):
                        key.sign(message, ec.ECDSA(hashes.SHA256()))
                figures[where] = (time.perf_counter() - start) / count
            figures["ratio"] = figures["token"] / figures["file"]
            out[name] = figures
    return out


def _twcactl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("twcactl", path=str(Path(sys.executable).parent)) or "twcactl"
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, check=False)


def whole_commands(module: str, work: Path, count: int) -> dict[str, float]:
    """Median seconds of one ``twcactl cert issue`` process: CA keys on the token vs encrypted key files,
    the two alternating (the order swapped every round) after one untimed run of each."""
    env = dict(os.environ, TWCACTL_OPERATOR="bench", BENCH_SECRET=PASSPHRASE,
               TWCACTL_CA_PASSPHRASE_SOURCE="env:BENCH_SECRET")
    homes = {"file": (work / "file-home", [], PASSPHRASE),
             "token": (work / "hsm-home", ["--key-uri", "pkcs11:token=CA", "--pkcs11-module", module], PIN)}
    for home, extra, secret in homes.values():
        run_env = dict(env, BENCH_SECRET=secret)
        proc = _twcactl("--home", str(home), "ca", "init", "--root-key-type", "rsa2048", *extra, env=run_env)
        assert proc.returncode == 0, proc.stderr
        proc = _twcactl("--home", str(home), "account", "add", "70759028-01", "--org", "TWCA", "--domain",
                        "twca.com.tw", "--quota", str(count + 2), env=run_env)
        assert proc.returncode == 0, proc.stderr
    times: dict[str, list[float]] = {"file": [], "token": []}
    for i in range(count + 1):
        for where in ("file", "token") if i % 2 else ("token", "file"):
            home, _extra, secret = homes[where]
            csr, key = work / f"{where}-{i}.csr", work / f"{where}-{i}.key"
            subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-subj", SUBJ, "-keyout", str(key), "-out", str(csr)], check=True,
                           capture_output=True)
            start = time.perf_counter()
            proc = _twcactl("--home", str(home), "cert", "issue", str(csr), "--account", "70759028-01",
                            env=dict(env, BENCH_SECRET=secret))
            elapsed = time.perf_counter() - start
            assert proc.returncode == 0, proc.stderr
            if i:  # the first round warms the page cache
                times[where].append(elapsed)
    out = {where: statistics.median(values) for where, values in times.items()}
    out["ratio"] = out["token"] / out["file"]
    return out


def figures(quick: bool, work: Path) -> tuple[list[Figure], dict[str, Any]]:
    """Issue 14's HSM rows, reported for information (no target): ``hsm.sign`` (one RSA-2048 signature on a
    SoftHSM2 token key vs the same kind of key in memory) and ``hsm.issue_one`` (one ``cert issue`` process
    whose CA keys are on the token vs encrypted key files).

    Makes its own SoftHSM2 token directory in ``work`` (its ``SOFTHSM2_CONF`` set while it runs, restored
    after).  ``quick``: 100 signatures and 3 commands each (about 15 s); else 500 and 9.

    Raises:
        RuntimeError: softhsm2-util or its module is not installed.
    """
    if shutil.which("softhsm2-util") is None or not any(os.path.isfile(m) for m in SOFTHSM_MODULES):
        raise RuntimeError("the HSM figures need SoftHSM2 (apt-get install softhsm2)")
    signatures, issues = (100, 3) if quick else (500, 9)
    before = os.environ.get("SOFTHSM2_CONF")
    work.mkdir(parents=True, exist_ok=True)
    try:
        module = _softhsm(work / "softhsm")
        raw = raw_signatures(module, signatures)
        commands = whole_commands(module, work, issues)
    finally:
        if before is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = before
    rsa_fig = raw["rsa2048"]
    rows = [
        Figure("hsm.sign", "one RSA-2048 signature on a SoftHSM2 token (vs a key in memory)", "s",
               rsa_fig["token"], "cryptography, key in memory", rsa_fig["file"],
               note=f"mean of {signatures}; EC P-256: token {raw['ec-p256']['token'] * 1000:.3f} ms, "
                    f"memory {raw['ec-p256']['file'] * 1000:.3f} ms"),
        Figure("hsm.issue_one", "one cert issue process, CA keys on SoftHSM2 (vs encrypted key files)", "s",
               commands["token"], "encrypted CA key files", commands["file"], note=f"medians of {issues}"),
    ]
    return rows, {"hsm_signatures": raw, "hsm_cert_issue": commands, "hsm_module": module,
                  "load_average": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signatures", type=int, default=300)
    parser.add_argument("--issues", type=int, default=8)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="twcactl-hsm-bench-") as tmp:
        module = _softhsm(Path(tmp) / "softhsm")
        doc = {"signatures": raw_signatures(module, args.signatures),
               "cert_issue": whole_commands(module, Path(tmp), args.issues),
               "n_signatures": args.signatures, "n_issues": args.issues}
    for name, f in doc["signatures"].items():  # type: ignore[union-attr]
        print(f"sign {name:8} token {f['token'] * 1000:7.3f} ms  file {f['file'] * 1000:7.3f} ms  "
              f"ratio {f['ratio']:5.2f}x")
    c = doc["cert_issue"]
    print(f"cert issue       token {c['token'] * 1000:7.1f} ms  file {c['file'] * 1000:7.1f} ms  "  # type: ignore[index]
          f"ratio {c['ratio']:5.2f}x")  # type: ignore[index]
    if args.json_out:
        args.json_out.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
