"""Issue 29's batch figures: ``cert issue DIR --jobs 2`` on every CPU, against two raw loops running in
parallel (one per CPU) and against the same batch with ``--jobs 1``.

Run by bench/run.py as an extra section, unpinned (the point is to use both CPUs).  Each round runs the
three commands one after the other, the order rotating by one each round; every twcactl batch must report
and record all its certificates.  The raw loops (:func:`rawloop.raw_batch_rate`: parse, verify, build and
sign each CSR, nothing else) run as two processes started together, each pinned to its own CPU, each
reading the CSRs and loading the CA key before its clock starts; their rates add up.  twcactl's rate is
the batch size over the command's wall time, process start included, as the ``batch.rate`` row measures.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import BenchError, Figure, Target, median, run_timed
from workloads import ACCOUNT, Home, clean_env, init_home, subscriber_keys, write_csr_dir

_RAW = """
import os, sys
sys.path.insert(0, {bench!r})
os.sched_setaffinity(0, {{int(sys.argv[1])}})
from pathlib import Path
from rawloop import raw_batch_rate
pems = [p.read_bytes() for p in sorted(Path({csrs!r}).iterdir())]
raw_batch_rate(Path({cert!r}), Path({key!r}), pems[:20])
print(raw_batch_rate(Path({cert!r}), Path({key!r}), pems)[0])
"""


def _raw_parallel(home: Home, csr_dir: Path, cpus: list[int]) -> float:
    """Two raw loops started together, one per CPU: the sum of their rates (certificates per second)."""
    code = _RAW.format(bench=str(Path(__file__).resolve().parent), csrs=str(csr_dir), cert=str(home.uca_cert),
                       key=str(home.uca_key))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(cpus[i % len(cpus)])], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    total = 0.0
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise BenchError(f"raw loop failed: {err.strip()[-300:]}")
        total += float(out.strip())
    return total


def _batch(home: Home, csr_dir: Path, jobs: int, count: int, problems: list[str]) -> tuple[float, float]:
    """One ``cert issue DIR --jobs N --json``: (wall seconds, CPU seconds); checks every certificate was
    reported and recorded."""
    db = home.path / "twcactl.db"

    def recorded() -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM certificates").fetchone()[0])

    before = recorded()
    sample = run_timed(home.argv("cert", "issue", csr_dir, "--account", ACCOUNT, "--jobs", str(jobs), "--json"),
                       env=clean_env())
    doc = json.loads(sample.stdout)
    if len(doc["certificates"]) != count or recorded() - before != count or doc["failed"]:
        problems.append(f"--jobs {jobs}: reported {len(doc['certificates'])}, recorded {recorded() - before}")
    return sample.seconds, sample.cpu_seconds


def figures(quick: bool, work: Path) -> tuple[list[Figure], dict[str, Any]]:
    """``batch.jobs2.vs_raw_parallel`` (target >= 0.8x) and ``batch.jobs2.vs_jobs1`` (target >= 1.6x)."""
    count, rounds = (64, 1) if quick else (2000, 3)
    cpus = sorted(os.sched_getaffinity(0))
    home = init_home(work / "home")
    csr_dir = work / "csrs"
    write_csr_dir(csr_dir, count, subscriber_keys(4 if quick else 20))
    problems: list[str] = []
    # untimed first round of each: page cache, first-call costs
    _batch(home, csr_dir, 2, count, problems)
    _batch(home, csr_dir, 1, count, problems)
    runs: dict[str, list[float]] = {"jobs2": [], "jobs1": [], "raw2": []}
    cpu: dict[str, list[float]] = {"jobs2": [], "jobs1": []}
    order = ["jobs2", "jobs1", "raw2"]
    for i in range(rounds):
        for name in order[i % 3:] + order[:i % 3]:
            if name == "raw2":
                runs[name].append(_raw_parallel(home, csr_dir, cpus))
                continue
            wall, cpu_s = _batch(home, csr_dir, 2 if name == "jobs2" else 1, count, problems)
            runs[name].append(count / wall)
            cpu[name].append(cpu_s)
    if problems:
        raise BenchError("batch --jobs: " + "; ".join(problems))
    label = f"cert issue DIR --jobs 2 ({count:,} CSRs)"
    rate2, rate1, raw2 = median(runs["jobs2"]), median(runs["jobs1"]), median(runs["raw2"])
    rows = [
        Figure("batch.jobs2.vs_raw_parallel", label, "certs/s", rate2,
               "two raw parse-verify-build-sign loops in parallel, one per CPU", raw2, Target("ratio_min", 0.8),
               runs["jobs2"], runs["raw2"], note="the raw loops: no policy, records, log or files, no process start"),
        Figure("batch.jobs2.vs_jobs1", label, "certs/s", rate2, "the same batch with --jobs 1", rate1,
               Target("ratio_min", 1.6), runs["jobs2"], runs["jobs1"]),
    ]
    return rows, {"cpus": len(cpus), "batch": count, "rates": runs, "cpu_s": cpu}
