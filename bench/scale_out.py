"""Issue 14's figures for docs/scale-out.md: SQLite vs PostgreSQL, one node vs four.

Run as root (PostgreSQL is started as the ``postgres`` user, durable: fsync on):

    .venv/bin/python -m bench.scale_out [--single 20] [--batch 100] [--per-node 40]

Prints one JSON document:

* ``single``: seconds per ``cert issue`` of one CSR, one ``python -m twcactl`` process each (start-up
  included), on each engine, and the ratio PostgreSQL / SQLite;
* ``batch``: certificates per second of one ``cert issue`` of ``--batch`` CSRs, each engine, and the ratio;
* ``nodes``: certificates per second of one node issuing ``4 * per-node`` certificates one command at a
  time (in-process, like the reliability worker) vs four nodes (four processes, four homes, one
  database) issuing ``per-node`` each at the same time, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "70759028-01"


def _twcactl(*args: str, home: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TWCACTL_OPERATOR": "bench", "TWCACTL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "twcactl", *args], env=env, cwd=REPO, capture_output=True,
                          check=True)


def _home(path: Path, url: str | None) -> Path:
    store = ["--store", url] if url else []
    _twcactl("ca", "init", "--no-passphrase", "--root-key-type", "rsa2048", *store, home=path)
    _twcactl("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "1000000", home=path)
    return path


def _node(first: Path, url: str, path: Path) -> Path:
    (path / "ca" / "private").mkdir(parents=True, mode=0o700)
    os.chmod(path, 0o700)
    (path / "config.toml").write_text(f'store = "{url}"\n')
    for key in (first / "ca" / "private").glob("*.key"):
        shutil.copyfile(key, path / "ca" / "private" / key.name)
        os.chmod(path / "ca" / "private" / key.name, 0o600)
    return path


def _single(home: Path, csrs: list[Path]) -> float:
    started = time.perf_counter()
    for csr in csrs:
        _twcactl("cert", "issue", str(csr), "--account", ACCOUNT, home=home)
    return (time.perf_counter() - started) / len(csrs)


def _batch(home: Path, directory: Path, count: int) -> float:
    started = time.perf_counter()
    _twcactl("cert", "issue", str(directory), "--account", ACCOUNT, home=home)
    return count / (time.perf_counter() - started)


_ISSUER = """
import contextlib, io, sys
from pathlib import Path
from twcactl.cli import run
home, account, directory = sys.argv[1:4]
for csr in sorted(Path(directory).iterdir()):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            run(["--home", home, "--quiet", "cert", "issue", str(csr), "--account", account])
        except SystemExit as exc:
            if exc.code:
                raise
"""


def _nodes(homes: list[Path], directories: list[Path], count: int) -> tuple[float, float]:
    """Certificates per second, and the nodes' own CPU seconds per certificate (the server's not counted)."""
    env = {**os.environ, "TWCACTL_OPERATOR": "bench", "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", _ISSUER, str(h), ACCOUNT, str(d)], env=env, cwd=REPO)
             for h, d in zip(homes, directories, strict=True)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("an issuing node failed")
    rate = count / (time.perf_counter() - started)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rate, cpu / count


def main() -> None:
    """Measure and print the figures (see the module docstring)."""
    sys.path.insert(0, str(REPO))
    from tests import pg_support
    from tests.test_reliability import write_csrs

    parser = argparse.ArgumentParser()
    parser.add_argument("--single", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--per-node", type=int, default=40)
    opts = parser.parse_args()
    server = pg_support.PgServer.start(durable=os.environ.get("SCALE_DURABLE", "1") == "1")
    out: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="twcactl-scale-") as tmp_name:
            tmp = Path(tmp_name)
            single = write_csrs(tmp / "single", opts.single, "s")
            write_csrs(tmp / "batch", opts.batch, "b")
            per_engine: dict[str, dict[str, float]] = {}
            for engine in ("sqlite", "postgresql"):
                home = _home(tmp / f"{engine}-home", server.new_database() if engine == "postgresql" else None)
                per_engine[engine] = {"single_s": _single(home, single),
                                      "batch_per_s": _batch(home, tmp / "batch", opts.batch)}
            out["single"] = {**{e: round(v["single_s"], 3) for e, v in per_engine.items()},
                             "ratio_pg_over_sqlite": round(per_engine["postgresql"]["single_s"]
                                                           / per_engine["sqlite"]["single_s"], 2)}
            out["batch"] = {**{e: round(v["batch_per_s"], 1) for e, v in per_engine.items()},
                            "ratio_pg_over_sqlite": round(per_engine["postgresql"]["batch_per_s"]
                                                          / per_engine["sqlite"]["batch_per_s"], 2)}
            url = server.new_database()
            first = _home(tmp / "node0", url)
            homes = [first] + [_node(first, url, tmp / f"node{i}") for i in range(1, 4)]
            dirs = [tmp / f"n{i}" for i in range(4)]
            for i, d in enumerate(dirs):
                write_csrs(d, opts.per_node, f"n{i}h")
            one = tmp / "one"
            write_csrs(one, 4 * opts.per_node, "o")
            one_rate, one_cpu = _nodes([first], [one], 4 * opts.per_node)
            four_rate, _cpu = _nodes(homes, dirs, 4 * opts.per_node)
            out["nodes"] = {"one_node_per_s": round(one_rate, 1), "four_nodes_per_s": round(four_rate, 1),
                            "ratio": round(four_rate / one_rate, 2), "cpus": os.cpu_count(),
                            "node_cpu_ms_per_cert": round(one_cpu * 1000, 1), "load_average": os.getloadavg()[0]}
    finally:
        server.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
