"""The benchmark of issue 7 still works: ``bench/run.py --quick`` runs end to end and writes its figures.

No speed is asserted here (CI machines vary); the figures are checked for
being there, numeric and consistent, and the CRL it made for being valid.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXPECTED_KEYS = {
    "startup.version", "startup.help", "startup.import_floor",
    "issue.flat", "issue.vs_openssl_ca", "issue.vs_easyrsa", "issue.encrypted.vs_openssl_ca", "issue.import_floor",
    "batch.rate", "batch.vs_raw", "batch.vs_sign_only",
    "crl.revoke", "crl.full",
    "list.cn_prefix", "list.status_expiring", "list.expiring_within",
    # issue 18's rows for the other issues' engines, keys and server
    "pg.issue_one", "pg.issue_one.resident", "pg.batch", "pg.nodes4",
    "hsm.sign", "hsm.issue_one",
    "serve.ocsp_rate", "serve.acme_rate", "serve.finalize_ms",
    # issue 29: a bash loop of cert issue with and without the resident process, against easy-rsa's
    "issue.loop.resident.vs_easyrsa", "issue.loop.cold.vs_easyrsa",
    # issue 29: the OCSP-only listener over answers produced ahead
    "serve.ocsp_listen_rate", "serve.ocsp_listen_p99_ms",
    "lint.pre_issuance",  # issue 26
    # issue 29: a batch with --jobs 2 against two raw loops in parallel and against --jobs 1
    "batch.jobs2.vs_raw_parallel", "batch.jobs2.vs_jobs1",
    # issue 29: what the public-trust checks and operator signatures cost per certificate
    "checks.caa_ms", "checks.mpic_ms", "checks.operator_signature_ms", "checks.acme_finalize_public_trust_ms",
}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the benchmark's peers need openssl")
def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "bench/run.py", "--quick", "--json-out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "targets hold" in proc.stdout  # the table and its summary went to stdout

    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick"
    figures = {f["key"]: f for f in doc["figures"]}
    assert EXPECTED_KEYS <= figures.keys()
    for key, figure in figures.items():
        assert _number(figure["twcactl"]) and figure["twcactl"] > 0, key
        assert _number(figure["peer_value"]) and figure["peer_value"] > 0, key
        assert _number(figure["ratio"]), key
        assert figure["ratio"] == pytest.approx(figure["twcactl"] / figure["peer_value"]), key
        assert figure["holds"] in (True, False, None), key
        assert (figure["target"] is None) == (figure["holds"] is None), key

    checks = doc["checks"]
    assert checks["batch_all_recorded"], checks["batch_problems"]
    assert checks["crl"]["crl_entries_ok"] and checks["crl"]["crl_has_new_revocations"]
    assert checks["crl"]["openssl_crl_verify"]["ok"], checks["crl"]["openssl_crl_verify"]["output"]
