"""Issue 29's per-process figure as users script it: a bash loop of 50 ``cert issue --json`` against
the same loop of easy-rsa ``sign-req``, with and without the resident process (``twcactl resident``).

Run by bench/run.py as an extra section; each loop runs on one CPU (the resident and its workers
included), and the loops are interleaved round by round so the machine's drift hits all alike.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

from harness import Figure, Target, median, run_timed
from workloads import (
    ACCOUNT,
    EASYRSA,
    clean_env,
    init_home,
    make_easyrsa,
    subscriber_keys,
    unique_name,
    write_csr_dir,
)


def _loop(argv: list[str], count: int) -> list[str]:
    """``bash -c 'for i in $(seq N); do ARGV >/dev/null; done'``."""
    command = " ".join(shlex.quote(a) for a in argv)
    return ["bash", "-c", f"for i in $(seq {count}); do {command} >/dev/null || exit 1; done"]


def figures(quick: bool, work: Path) -> tuple[list[Figure], dict[str, Any]]:
    """The loop figures: ``issue.loop.resident.vs_easyrsa`` (target <= 1.0x) and the cold loop for reference."""
    count, rounds = (5, 2) if quick else (50, 5)
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(cpus)})
    try:
        return _measure(work, count, rounds)
    finally:
        os.sched_setaffinity(0, cpus)


def _measure(work: Path, count: int, rounds: int) -> tuple[list[Figure], dict[str, Any]]:
    home = init_home(work / "home")
    env = clean_env()
    csr = write_csr_dir(work / "csrs", 1, subscriber_keys(1))[0]
    ersa = make_easyrsa(work / "easyrsa")
    issue = home.argv("cert", "issue", csr, "--account", ACCOUNT, "--json")
    cold_env = {**env, "TWCACTL_NO_RESIDENT": "1"}
    samples: dict[str, list[float]] = {"resident": [], "cold": [], "easyrsa": []}
    started = subprocess.run(home.argv("resident", "start", "--idle-timeout", "600"), env=env,
                             capture_output=True, text=True)
    if started.returncode != 0:
        raise RuntimeError(f"resident start: {started.stderr.strip()}")
    try:
        for _ in range(rounds):
            names = [unique_name("loop") for _ in range(count)]
            for name in names:  # untimed set-up: easy-rsa signs only imported requests
                ersa.import_req(csr, name)
            script = "; ".join(" ".join(shlex.quote(a) for a in ersa.sign_argv(n)) + " >/dev/null || exit 1"
                               for n in names)
            samples["easyrsa"].append(run_timed(["bash", "-c", script], env=ersa.env(), cwd=ersa.dir).seconds)
            samples["resident"].append(run_timed(_loop(issue, count), env=env).seconds)
            samples["cold"].append(run_timed(_loop(issue, count), env=cold_env).seconds)
    finally:
        subprocess.run(home.argv("resident", "stop"), env=env, capture_output=True)
    ms = {k: [1000 * s / count for s in v] for k, v in samples.items()}
    label = f"bash loop of {count} cert issue --json"
    rows = [
        Figure("issue.loop.resident.vs_easyrsa", f"{label}, resident running", "ms/cert", median(ms["resident"]),
               "easy-rsa sign-req, same loop", median(ms["easyrsa"]), Target("ratio_max", 1.0),
               samples=ms["resident"], peer_samples=ms["easyrsa"]),
        Figure("issue.loop.cold.vs_easyrsa", f"{label}, no resident", "ms/cert", median(ms["cold"]),
               "easy-rsa sign-req, same loop", median(ms["easyrsa"]), None,
               samples=ms["cold"], peer_samples=ms["easyrsa"], note="every call starts Python and imports twcactl"),
    ]
    return rows, {"count": count, "rounds": rounds, "ms_per_cert": ms, "easyrsa": str(EASYRSA)}
