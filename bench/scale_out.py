"""Issue 14's figures for docs/scale-out.md: SQLite vs PostgreSQL, one node vs four.

Run as root (PostgreSQL is started as the ``postgres`` user, durable: fsync on)::

    .venv/bin/python -m bench.scale_out [--quick] [--json-out FILE]

or through :func:`figures` (``bench/run.py`` wires it in).  Three rows, each a ratio measured in one run:

* ``pg.issue_one``: seconds of one ``twcactl cert issue`` process (start-up included) on PostgreSQL over
  the same on SQLite, the two alternating round by round (medians); target at most 1.3x;
* ``pg.issue_one.resident``: the same with ``twcactl resident start`` running for each home (issue 29: the
  resident imports the PostgreSQL driver once, so a forwarded command pays only its connection and round
  trips); target at most 1.3x;
* ``pg.batch``: certificates per second of one ``cert issue DIR`` on PostgreSQL over SQLite; at least 0.5x;
* ``pg.nodes4``: certificates per second of four nodes (four processes, four homes, one database)
  issuing at once over one node alone; at least 2x.  Each node process imports everything and connects
  first, then waits for a start signal, so the figure is the issuing, not four interpreters starting
  on two cores; the rate is every certificate over the span from the first start to the last end.
  The run is not pinned to one CPU even when the caller is (``bench/run.py`` pins itself).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import Figure, Sample, Target, median, run_timed  # noqa: E402

ACCOUNT = "70759028-01"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWCACTL_")}
    env.update({"TWCACTL_OPERATOR": "bench", "PYTHONPATH": str(REPO)}, **extra)
    return env


def _argv(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "twcactl", "--home", str(home), *args]


def _home(path: Path, url: str | None) -> Path:
    """A CA home without a passphrase (RSA-2048 root, the default issuing CA) with a large account."""
    store = ["--store", url] if url else []
    run_timed(_argv(path, "ca", "init", "--no-passphrase", "--root-key-type", "rsa2048", *store), env=_env(),
              cwd=REPO)
    run_timed(_argv(path, "account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota",
                    "1000000"), env=_env(), cwd=REPO)
    return path


def _node(url: str, path: Path) -> Path:
    """Another node of the CA at ``url``: a home holding only config.toml (docs/scale-out.md, "Adding a
    node"); :func:`_copy_keys` adds copies of the first node's (unencrypted, here) CA key files."""
    path.mkdir(mode=0o700)
    (path / "config.toml").write_text(f'store = "{url}"\n')
    return path


def _copy_keys(first: Path, node: Path) -> None:
    (node / "ca" / "private").mkdir(parents=True, mode=0o700, exist_ok=True)
    for key in (first / "ca" / "private").glob("*.key"):
        target = node / "ca" / "private" / key.name
        target.write_bytes(key.read_bytes())
        os.chmod(target, 0o600)


def _csrs(directory: Path, count: int, prefix: str) -> list[Path]:
    from tests.test_reliability import write_csrs

    return write_csrs(directory, count, prefix)


def _paired(mine: Sequence[float], theirs: Sequence[float]) -> float:
    return median([a / b for a, b in zip(mine, theirs, strict=True) if b])


def issue_one(homes: dict[str, Path], csrs: Sequence[Path], rounds: int) -> Figure:
    """``pg.issue_one``: one ``cert issue`` process per CSR, PostgreSQL and SQLite alternating (the order
    swapped every round), after one untimed run of each (page cache)."""
    samples: dict[str, list[Sample]] = {"sqlite": [], "postgresql": []}
    order = ["sqlite", "postgresql"]
    for i in range(rounds + 1):
        for engine in order if i % 2 else order[::-1]:
            sample = run_timed(_argv(homes[engine], "--json", "cert", "issue", str(csrs[i % len(csrs)]),
                                     "--account", ACCOUNT), env=_env(), cwd=REPO)
            if i:
                samples[engine].append(sample)
    pg, lite = ([s.seconds for s in samples[e]] for e in ("postgresql", "sqlite"))
    return Figure("pg.issue_one", "one cert issue per process on PostgreSQL (vs SQLite)", "s", median(pg),
                  "the same on SQLite", median(lite), Target("ratio_max", 1.3), samples=pg, peer_samples=lite,
                  cpu=median([s.cpu_seconds for s in samples["postgresql"]]),
                  peer_cpu=median([s.cpu_seconds for s in samples["sqlite"]]),
                  note="start-up included; PostgreSQL over a Unix socket, fsync on")


def issue_one_resident(homes: dict[str, Path], csrs: Sequence[Path], rounds: int) -> Figure:
    """``pg.issue_one.resident``: :func:`issue_one` with a resident process running for each home (stopped
    at the end, also when a command fails)."""
    started: list[Path] = []
    try:
        for home in homes.values():
            run_timed(_argv(home, "resident", "start", "--idle-timeout", "600"), env=_env(), cwd=REPO)
            started.append(home)
        figure = issue_one(homes, csrs, rounds)
    finally:
        for home in started:
            subprocess.run(_argv(home, "resident", "stop"), env=_env(), cwd=REPO, capture_output=True, check=False)
    return Figure("pg.issue_one.resident", "one cert issue per process on PostgreSQL, resident running (vs SQLite)",
                  "s", figure.value, "the same on SQLite, resident running", figure.peer_value, Target("ratio_max", 1.3),
                  samples=figure.samples, peer_samples=figure.peer_samples, cpu=figure.cpu, peer_cpu=figure.peer_cpu,
                  note="twcactl resident start for each home; the thin client's start-up included")


def batch(homes: dict[str, Path], work: Path, size: int, rounds: int) -> Figure:
    """``pg.batch``: certificates per second of one ``cert issue DIR`` of ``size`` CSRs per engine."""
    rates: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    for i in range(rounds):
        directory = _csrs(work / f"batch{i}", size, f"b{i}x")[0].parent
        for engine in ("sqlite", "postgresql") if i % 2 == 0 else ("postgresql", "sqlite"):
            sample = run_timed(_argv(homes[engine], "--quiet", "cert", "issue", str(directory), "--account", ACCOUNT),
                               env=_env(), cwd=REPO)
            rates[engine].append(size / sample.seconds)
    return Figure("pg.batch", f"a batch of {size} CSRs in one cert issue on PostgreSQL (vs SQLite)", "certs/s",
                  median(rates["postgresql"]), "the same on SQLite", median(rates["sqlite"]), Target("ratio_min", 0.5),
                  samples=rates["postgresql"], peer_samples=rates["sqlite"])


#: One node: imports and connects, says "ready", waits for a line on stdin, then issues each CSR of its
#: directory with one in-process command (as the reliability worker does) and prints its span as JSON.
_ISSUER = """
import contextlib, io, json, sys, time
from pathlib import Path
from twcactl.cli import run
home, account, directory = sys.argv[1:4]
csrs = sorted(Path(directory).iterdir())
def issue(csr):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            run(["--home", home, "--quiet", "cert", "issue", str(csr), "--account", account])
        except SystemExit as exc:
            if exc.code:
                raise
issue(csrs[0])  # warm: every import done, the first connection made
print("ready", flush=True)
sys.stdin.readline()
start, cpu = time.monotonic(), time.process_time()
for csr in csrs[1:]:
    issue(csr)
print(json.dumps({"start": start, "end": time.monotonic(), "cpu": time.process_time() - cpu,
                  "count": len(csrs) - 1}), flush=True)
"""


@contextmanager
def _all_cpus() -> Iterator[None]:
    """Let this process's children use every CPU while the block runs (``bench/run.py`` pins itself to one)."""
    getter, setter = getattr(os, "sched_getaffinity", None), getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        yield
        return
    before = getter(0)
    setter(0, range(os.cpu_count() or 1))
    try:
        yield
    finally:
        setter(0, before)


def _server_cpu(data_dir: Path) -> float:
    """CPU seconds (user + system) of the PostgreSQL server so far: the postmaster, its live children and the
    children it has reaped (``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
        elif ppid == postmaster:
            total += sum(int(x) for x in fields[11:13]) / tick
    return total


class _LockSampler(threading.Thread):
    """Counts, every 20 ms, the transactions waiting for the write lock (``pg_locks``, advisory, not granted)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.stop = url, [], threading.Event()

    samples: list[int]

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.wait(0.02):
                row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                   ).fetchone()
                self.samples.append(int(row[0]) if row else 0)


def nodes_rate(homes: Sequence[Path], directories: Sequence[Path]) -> tuple[float, float]:
    """Certificates per second of ``homes`` issuing at once (each its directory), and the nodes' own CPU
    seconds per certificate (the server's not counted)."""
    procs = [subprocess.Popen([sys.executable, "-c", _ISSUER, str(h), ACCOUNT, str(d)], env=_env(), cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for h, d in zip(homes, directories, strict=True)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", "a node failed to start"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        spans = [json.loads(p.communicate(timeout=900)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        raise RuntimeError("an issuing node failed")
    count = sum(s["count"] for s in spans)
    return count / (max(s["end"] for s in spans) - min(s["start"] for s in spans)), sum(s["cpu"] for s in spans) / count


def nodes4(url: str, first: Path, work: Path, per_node: int, rounds: int, data_dir: Path
           ) -> tuple[Figure, dict[str, Any]]:
    """``pg.nodes4``: four nodes at once vs one node alone, ``rounds`` times alternating (medians), with the
    server's CPU per certificate and how many nodes waited for the write lock on average (what limits it)."""
    homes = [first]
    for i in range(1, 4):
        homes.append(_node(url, work / f"node{i}"))
        _copy_keys(first, homes[-1])
    one_rates, four_rates, cpus, server, waiting = [], [], [], [], []
    with _all_cpus():
        for r in range(rounds):
            dirs = [_csrs(work / f"r{r}n{i}", per_node + 1, f"r{r}n{i}h")[0].parent for i in range(4)]
            solo = _csrs(work / f"r{r}solo", 4 * per_node + 1, f"r{r}s")[0].parent
            before = _server_cpu(data_dir)
            one, one_cpu = nodes_rate([first], [solo])
            middle = _server_cpu(data_dir)
            sampler = _LockSampler(url)
            sampler.start()
            four, four_cpu = nodes_rate(homes, dirs)
            sampler.stop.set()
            sampler.join()
            after = _server_cpu(data_dir)
            one_rates.append(one)
            four_rates.append(four)
            cpus.append((one_cpu, four_cpu))
            # the server's CPU per certificate (start-up of the node processes' connections included)
            server.append(((middle - before) / (4 * per_node + 1), (after - middle) / (4 * (per_node + 1))))
            waiting.append(sum(sampler.samples) / max(1, len(sampler.samples)))
    figure = Figure("pg.nodes4", "4 nodes issuing at once on one PostgreSQL (vs 1 node)", "certs/s",
                    median(four_rates), "one node alone", median(one_rates), Target("ratio_min", 2.0),
                    samples=four_rates, peer_samples=one_rates,
                    note=f"{os.cpu_count()} CPUs; node CPU ms/cert one {median([c[0] for c in cpus]) * 1000:.1f}, "
                         f"four {median([c[1] for c in cpus]) * 1000:.1f}")
    return figure, {"nodes_node_cpu_ms_per_cert": [[round(a * 1000, 2), round(b * 1000, 2)] for a, b in cpus],
                    "nodes_server_cpu_ms_per_cert": [[round(a * 1000, 2), round(b * 1000, 2)] for a, b in server],
                    "nodes4_mean_waiting_for_the_write_lock": [round(w, 2) for w in waiting],
                    "nodes_paired_ratio": _paired(four_rates, one_rates)}


def figures(quick: bool, work: Path) -> tuple[list[Figure], dict[str, Any]]:
    """Issue 14's PostgreSQL rows: ``pg.issue_one``, ``pg.issue_one.resident`` (issue 29), ``pg.batch`` and
    ``pg.nodes4``, with their context.

    Starts its own durable PostgreSQL 15 (fsync on) as the ``postgres`` user, in ``work`` when that user
    can reach it (else in /tmp), and stops it at the end.  ``quick``: few rounds, small batches (about
    a minute on 2 cores; proves the benchmark works, not the targets).

    Raises:
        RuntimeError: PostgreSQL cannot be started here (not root, not installed) or a node failed.
    """
    from tests import pg_support

    why = pg_support.available()
    if why is not None:
        raise RuntimeError(f"the PostgreSQL figures need a server: {why}")
    work.mkdir(parents=True, exist_ok=True)
    single_rounds, batch_size, batch_rounds, per_node, node_rounds = (
        (4, 30, 1, 10, 1) if quick else (15, 100, 3, 40, 3))
    server = pg_support.PgServer.start(durable=True, base=work)
    try:
        homes = {"sqlite": _home(work / "sqlite-home", None),
                 "postgresql": _home(work / "pg-home", server.new_database())}
        singles = _csrs(work / "single", single_rounds + 1, "s")
        resident_singles = _csrs(work / "single-resident", single_rounds + 1, "r")
        rows = [issue_one(homes, singles, single_rounds), issue_one_resident(homes, resident_singles, single_rounds),
                batch(homes, work, batch_size, batch_rounds)]
        url = server.new_database()
        node_figure, context = nodes4(url, _home(work / "node0", url), work, per_node, node_rounds,
                                      server.directory / "data")
        rows.append(node_figure)
        context.update({"pg_server_dir": str(server.directory), "pg_durable": server.durable,
                        "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
                        "pg_issue_one_paired_ratio": rows[0].paired_ratio,
                        "pg_issue_one_resident_paired_ratio": rows[1].paired_ratio})
    finally:
        server.stop()
    return rows, context


def main() -> None:
    """Measure and print the figures as JSON (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json-out", type=Path)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="twcactl-scale-") as tmp:
        rows, context = figures(opts.quick, Path(tmp))
    doc = {"figures": [f.to_json() for f in rows], "context": context}
    for f in rows:
        print(f"{f.key:14} {f.value:10.4g} {f.unit:8} vs {f.peer_value:10.4g}  ratio {f.ratio:5.2f}x  "
              f"target {f.target.text(f.unit) if f.target else '-':8} {'met' if f.holds else 'NOT MET'}")
    if opts.json_out:
        opts.json_out.write_text(json.dumps(doc, indent=2))
    else:
        print(json.dumps(context, indent=2))


if __name__ == "__main__":
    main()
