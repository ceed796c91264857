#!/usr/bin/env python3
"""The twcactl benchmark of issue 7: twcactl against openssl ca, openssl x509 -req, easy-rsa and cryptography.

Run from the repository root::

    .venv/bin/python bench/run.py                 # full run: 200,000-record stores (a few minutes)
    .venv/bin/python bench/run.py --quick         # small stores, proves the harness works (~1 minute)
    .venv/bin/python bench/run.py --json-out results.json --profile-dir profiles/

It builds every store it needs under a temporary directory, times each
command as a separate process (medians, twcactl and its peer interleaved
run by run), prints a table of medians, ratios and the issue's targets, and
writes the same figures as JSON.  See bench/README.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Run as a script (python bench/run.py): the helper modules sit next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    BenchError,
    Figure,
    Sample,
    Target,
    median,
    render_markdown,
    render_table,
    run_timed,
)
from workloads import (  # noqa: E402
    ACCOUNT,
    PASS_VAR,
    BulkRow,
    Home,
    any_issued_der,
    bulk_rows,
    clean_env,
    init_home,
    load_bulk,
    make_csr,
    make_easyrsa,
    make_openssl_ca,
    subscriber_keys,
    twcactl_argv,
    unique_name,
    valid_serials,
    write_csr_dir,
    write_extfile,
    x509_req_argv,
)


@dataclass(frozen=True)
class Sizes:
    """How big the stores are and how often each command is run."""

    records: int          # certificate records in the "big" stores
    revoked: int          # revoked records in the CRL store
    batch: int            # CSRs per batch issue
    startup_runs: int
    issue_runs: int
    batch_runs: int
    crl_runs: int
    list_runs: int


FULL = Sizes(records=200_000, revoked=100_000, batch=2_000, startup_runs=21, issue_runs=9, batch_runs=3,
             crl_runs=5, list_runs=7)
QUICK = Sizes(records=5_000, revoked=5_000, batch=200, startup_runs=5, issue_runs=3, batch_runs=1,
              crl_runs=2, list_runs=3)

LIST_BUDGET_S = 0.3
CRL_RSS_BUDGET_MB = 300.0
BATCH_RATE_TARGET = 1000.0


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def interleaved(commands: dict[str, Callable[[int], Sample]], runs: int, *, warmup: bool = True) -> dict[str, list[Sample]]:
    """Run every command once per round, ``runs`` rounds, so drift hits all of them alike.

    Each value is called with the round number (so a command can take a fresh
    input each round); a first untimed round warms the page cache.  The order
    rotates by one each round, so no command always runs first (or always
    right after the same neighbour).
    """
    if warmup:
        for fn in commands.values():
            fn(-1)
    names = list(commands)
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for i in range(runs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(commands[name](i))
    return samples


def seconds(samples: Sequence[Sample]) -> list[float]:
    """The wall times of ``samples``."""
    return [s.seconds for s in samples]


def time_figure(key: str, label: str, mine: Sequence[Sample], peer_name: str, theirs: Sequence[Sample],
                target: Target | None, note: str = "") -> Figure:
    """A figure from two lists of timed runs (medians of wall time)."""
    return Figure(key=key, label=label, unit="s", value=median(seconds(mine)), peer_name=peer_name,
                  peer_value=median(seconds(theirs)), target=target, samples=seconds(mine),
                  peer_samples=seconds(theirs), note=note, cpu=median([x.cpu_seconds for x in mine]),
                  peer_cpu=median([x.cpu_seconds for x in theirs]))


# ----- sections -----
#: What any CPython process that parses a CSR and signs with cryptography behind a click CLI and an SQLite
#: index imports before doing anything (issue 18's "import floor").
IMPORT_FLOOR = "import cryptography.x509, click, sqlite3"


def bench_startup(sizes: Sizes) -> list[Figure]:
    """``twcactl --version`` and ``--help`` against ``python -c pass`` (the same interpreter), and the import
    floor (``python -c "import cryptography.x509, click, sqlite3"``) against the same, for context."""
    log("start-up: python -c pass, twcactl --version, twcactl --help, the import floor")
    env = clean_env()
    s = interleaved({
        "python": lambda _i: run_timed([sys.executable, "-c", "pass"], env=env),
        "version": lambda _i: run_timed([*twcactl_argv(), "--version"], env=env),
        "help": lambda _i: run_timed([*twcactl_argv(), "--help"], env=env),
        "floor": lambda _i: run_timed([sys.executable, "-c", IMPORT_FLOOR], env=env),
    }, sizes.startup_runs)
    return [
        time_figure("startup.version", "twcactl --version", s["version"], "python -c pass", s["python"],
                    Target("ratio_max", 2.0)),
        time_figure("startup.help", "twcactl --help", s["help"], "python -c pass", s["python"],
                    Target("ratio_max", 5.0)),
        time_figure("startup.import_floor", "import floor (cryptography.x509, click, sqlite3)", s["floor"],
                    "python -c pass", s["python"], None,
                    note="what a process that signs with cryptography behind click and SQLite imports, doing nothing"),
    ]


@dataclass
class Stores:
    """Everything built before the timed sections."""

    work: Path
    empty: Home
    big: Home
    big_enc: Home
    crl: Home
    one_csr: Path
    csr_dir: Path
    revoked_rows: list[BulkRow]
    big_rows: list[BulkRow]
    build_seconds: dict[str, float]


def build_stores(work: Path, sizes: Sizes, rng: random.Random) -> Stores:
    """CA homes (one empty, two with ``records`` certificates, one with ``revoked`` revocations) and CSRs."""
    build: dict[str, float] = {}
    t0 = time.perf_counter()
    keys = subscriber_keys(4)
    one_csr = work / "one.csr"
    one_csr.write_bytes(make_csr(keys[0], "www.twca.com.tw"))
    csr_dir = work / "batch-csrs"
    write_csr_dir(csr_dir, sizes.batch, keys)
    build["csrs"] = time.perf_counter() - t0
    log(f"made {sizes.batch + 1} CSRs in {build['csrs']:.1f} s")

    homes = {}
    for name, encrypted in (("empty", False), ("big", False), ("big_enc", True), ("crl", False)):
        t0 = time.perf_counter()
        home = init_home(work / f"home-{name}", encrypted=encrypted)
        # one real issue per home: the DER every bulk row reuses, and a warm first run
        run_timed(home.argv("cert", "issue", one_csr, "--account", ACCOUNT), env=clean_env())
        homes[name] = home
        build[f"init.{name}"] = time.perf_counter() - t0
    log("CA homes initialised (ca init, account add, one cert issue each)")

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # Both big homes get the same rows (separate databases, separate CAs), and the openssl index mirrors them.
    big_rows = bulk_rows(sizes.records, rng=rng, revoked=False, now=now)
    for name in ("big", "big_enc"):
        t0 = time.perf_counter()
        n = load_bulk(homes[name], big_rows, any_issued_der(homes[name]), now=now)
        build[f"bulk.{name}"] = time.perf_counter() - t0
        log(f"bulk-loaded {n:,} records into home-{name} in {build[f'bulk.{name}']:.1f} s")

    t0 = time.perf_counter()
    revoked_rows = bulk_rows(sizes.revoked, rng=rng, revoked=True, now=now)
    spare = bulk_rows(sizes.crl_runs + 4, rng=rng, revoked=False, now=now)  # valid ones for `cert revoke`
    load_bulk(homes["crl"], revoked_rows + spare, any_issued_der(homes["crl"]), now=now)
    build["bulk.crl"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_timed(homes["crl"].argv("crl"), env=clean_env())  # the previous CRL an incremental update builds on
    build["crl.first"] = time.perf_counter() - t0
    log(f"bulk-loaded {sizes.revoked:,} revoked records into home-crl and made its first CRL "
        f"({build['bulk.crl']:.1f} s + {build['crl.first']:.1f} s)")
    return Stores(work, homes["empty"], homes["big"], homes["big_enc"], homes["crl"], one_csr, csr_dir,
                  revoked_rows, big_rows, build)


def bench_issue_one(st: Stores, sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    """One certificate per process: twcactl on an empty and a big store, openssl ca, x509 -req, easy-rsa."""
    log(f"one certificate per process, {sizes.issue_runs} rounds")
    now = dt.datetime.now(dt.UTC)
    ossl_big = make_openssl_ca(st.work / "openssl-big", st.big, st.big_rows, now=now)
    ossl_empty = make_openssl_ca(st.work / "openssl-empty", st.big, [], now=now)
    ossl_enc = make_openssl_ca(st.work / "openssl-big-enc", st.big_enc, st.big_rows, now=now,
                               passin=f"env:{PASS_VAR}")
    extfile = write_extfile(st.work / "leaf.ext")
    ersa = make_easyrsa(st.work / "easyrsa")
    out = st.work / "out"
    out.mkdir()
    env = clean_env()

    def tw(home: Home, *extra: str) -> Callable[[int], Sample]:
        return lambda _i: run_timed(home.argv("cert", "issue", st.one_csr, "--account", ACCOUNT, *extra), env=env)

    def ossl(ca: Any, tag: str) -> Callable[[int], Sample]:
        return lambda i: run_timed(ca.issue_argv(st.one_csr, out / f"{tag}-{i}.pem"), env=env)

    def easyrsa(_i: int) -> Sample:
        name = unique_name("bench")
        ersa.import_req(st.one_csr, name)  # untimed set-up
        return run_timed(ersa.sign_argv(name), env=ersa.env(), cwd=ersa.dir)

    s = interleaved({
        "tw_empty": tw(st.empty),
        "tw_big": tw(st.big),
        "ossl_big": ossl(ossl_big, "big"),
        "ossl_empty": ossl(ossl_empty, "empty"),
        "x509_req": lambda i: run_timed(x509_req_argv(st.big, st.one_csr, out / f"x509-{i}.pem", extfile), env=env),
        "easyrsa": easyrsa,
        "tw_big_json": tw(st.big, "--json"),
        "tw_enc": tw(st.big_enc),
        "ossl_enc": ossl(ossl_enc, "enc"),
        "floor": lambda _i: run_timed([sys.executable, "-c", IMPORT_FLOOR], env=env),
    }, sizes.issue_runs)
    n = f"{sizes.records // 1000}k"
    figures = [
        time_figure("issue.flat", f"cert issue, {n} store vs empty store", s["tw_big"],
                    "twcactl, empty store", s["tw_empty"], Target("ratio_max", 1.15)),
        time_figure("issue.vs_openssl_ca", f"cert issue, {n} store", s["tw_big"],
                    f"openssl ca -batch, {n} index", s["ossl_big"], Target("ratio_max", 1.0)),
        time_figure("issue.vs_easyrsa", f"cert issue --json, {n} store", s["tw_big_json"],
                    "easy-rsa sign-req", s["easyrsa"], Target("ratio_max", 1.0)),
        time_figure("issue.import_floor", "import floor (cryptography.x509, click, sqlite3)", s["floor"],
                    "easy-rsa sign-req", s["easyrsa"], None,
                    note="python -c 'import cryptography.x509, click, sqlite3': no CPython signer can start faster"),
        time_figure("issue.vs_x509_req", f"cert issue, {n} store", s["tw_big"],
                    "openssl x509 -req", s["x509_req"], None,
                    note="x509 -req keeps no index or records: the floor of one process signing one certificate"),
        time_figure("issue.encrypted.vs_openssl_ca", f"cert issue, {n} store, encrypted CA key", s["tw_enc"],
                    f"openssl ca -batch -passin, {n} index", s["ossl_enc"], Target("ratio_max", 1.0)),
        time_figure("issue.encrypted.cost", f"cert issue, {n} store, encrypted CA key", s["tw_enc"],
                    "twcactl, same store size, plain key", s["tw_big"], None,
                    note="what decrypting the CA key adds"),
    ]
    context = {
        "openssl_ca_empty_index_s": median(seconds(s["ossl_empty"])),
        "openssl_ca_big_index_s": median(seconds(s["ossl_big"])),
        "twcactl_issue_json_big_s": median(seconds(s["tw_big_json"])),
        "import_floor_s": median(seconds(s["floor"])),
        "samples": {k: seconds(v) for k, v in s.items()},
    }
    return figures, context


def bench_batch(st: Stores, sizes: Sizes, x509_req_s: float) -> tuple[list[Figure], dict[str, Any]]:
    """``cert issue DIR`` with ``batch`` CSRs on the big store, against the raw cryptography loop.

    The peer (issue 18) parses, verifies, builds and signs one leaf per CSR of the same directory with the
    same CA key (:func:`rawloop.raw_batch_rate`); the build-and-sign-only loop of issue 7 is kept as context.
    """
    from rawloop import raw_batch_rate, raw_issue_rate

    log(f"batch: cert issue DIR with {sizes.batch:,} CSRs, {sizes.batch_runs} rounds, and the raw loop")
    env = clean_env()
    csr_pems = [p.read_bytes() for p in sorted(st.csr_dir.iterdir())]
    first_csr = csr_pems[0]
    db = st.big.path / "twcactl.db"

    def count_records() -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM certificates").fetchone()[0])

    walls: list[float] = []
    cpus: list[float] = []
    raw_rates: list[float] = []
    sign_only_rates: list[float] = []
    problems: list[str] = []
    # warm the raw loop (first-call costs of cryptography) before timing it, and give twcactl the same
    # untimed first round as every other figure: right after the bulk load its first batch runs up to
    # 1.8x slower than the next ones (page cache and fresh B-tree pages), which is the loader's cost
    raw_batch_rate(st.big.uca_cert, st.big.uca_key, csr_pems[:50])
    run_timed(st.big.argv("cert", "issue", st.csr_dir, "--account", ACCOUNT, "--json"), env=env)
    for _ in range(sizes.batch_runs):
        before = count_records()
        sample = run_timed(st.big.argv("cert", "issue", st.csr_dir, "--account", ACCOUNT, "--json"), env=env)
        doc = json.loads(sample.stdout)
        issued, after = len(doc["certificates"]), count_records()
        # all durable when it reports success: every reported certificate is in the committed database
        if issued != sizes.batch or after - before != sizes.batch or doc["failed"]:
            problems.append(f"reported {issued}, recorded {after - before}, failed {len(doc['failed'])}")
        walls.append(sample.seconds)
        cpus.append(sample.cpu_seconds)
        raw_rates.append(raw_batch_rate(st.big.uca_cert, st.big.uca_key, csr_pems)[0])
        sign_only_rates.append(raw_issue_rate(st.big.uca_cert, st.big.uca_key, first_csr, sizes.batch)[0])
    rates = [sizes.batch / w for w in walls]
    rate, raw = median(rates), median(raw_rates)
    label = f"cert issue DIR ({sizes.batch:,} CSRs)"
    figures = [
        Figure("batch.rate", label, "certs/s", rate, "raw parse-verify-build-sign loop", raw,
               Target("value_min", BATCH_RATE_TARGET), rates, raw_rates,
               note="certificates per second of wall time, process start included"),
        Figure("batch.vs_raw", label, "certs/s", rate, "raw parse-verify-build-sign loop", raw,
               Target("ratio_min", 0.8), rates, raw_rates,
               note="the same CSRs and CA key, in this process: no policy, records, log or files"),
        Figure("batch.vs_sign_only", label, "certs/s", rate, "raw build-and-sign loop, one parsed CSR",
               median(sign_only_rates), None, rates, sign_only_rates,
               note="issue 7's peer: the signing floor alone"),
        Figure("batch.vs_openssl_per_process", label, "certs/s", rate, "openssl x509 -req, one per process",
               1.0 / x509_req_s, None, rates, [1.0 / x509_req_s]),
    ]
    return figures, {"batch_walls_s": walls, "batch_cpu_s": cpus, "raw_parse_verify_rates": raw_rates,
                     "raw_sign_only_rates": sign_only_rates,
                     "batch_rate_by_cpu_time": sizes.batch / median(cpus), "batch_all_recorded": not problems, "batch_problems": problems}


def _crl_has_full(home: Home) -> bool:
    """Whether this twcactl has ``crl --full`` (the rebuild from records)."""
    sample = run_timed(home.argv("crl", "--help"), env=clean_env())
    return b"--full" in sample.stdout


def bench_crl(st: Stores, sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    """One more revocation and CRL regeneration over ``revoked`` entries, against ``openssl ca -gencrl``."""
    from cryptography import x509

    log(f"CRL: {sizes.revoked:,} revoked, {sizes.crl_runs} rounds of cert revoke / crl / crl --full / gencrl")
    now = dt.datetime.now(dt.UTC)
    ossl = make_openssl_ca(st.work / "openssl-crl", st.crl, st.revoked_rows, now=now)
    has_full = _crl_has_full(st.crl)
    to_revoke = valid_serials(st.crl, sizes.crl_runs + 2)
    env = clean_env()
    out = st.work / "out-crl"
    out.mkdir()
    revoked_now: list[str] = []

    def revoke(i: int) -> Sample:
        serial = to_revoke[i + 1]  # round -1 (warm-up) takes the first
        sample = run_timed(st.crl.argv("cert", "revoke", serial, "--reason", "keyCompromise"), env=env, rss=True)
        revoked_now.append(serial)
        # the same entry for openssl, so both lists hold the same serials
        t = dt.datetime.now(dt.UTC).strftime("%y%m%d%H%M%SZ")
        padded = serial.upper() if len(serial) % 2 == 0 else "0" + serial.upper()
        with open(ossl.dir / "index.txt", "a", encoding="ascii") as index:
            index.write(f"R\t{(now + dt.timedelta(days=365)).strftime('%y%m%d%H%M%SZ')}\t{t},keyCompromise\t"
                        f"{padded}\tunknown\t/CN=revoked.twca.com.tw\n")
        return sample

    commands: dict[str, Callable[[int], Sample]] = {
        "revoke": revoke,
        "gencrl": lambda i: run_timed(ossl.gencrl_argv(out / f"gencrl-{i}.pem"), env=env, rss=True),
        "crl": lambda _i: run_timed(st.crl.argv("crl"), env=env, rss=True),
    }
    if has_full:
        commands["crl_full"] = lambda _i: run_timed(st.crl.argv("crl", "--full"), env=env, rss=True)
    s = interleaved(commands, sizes.crl_runs)
    full_key = "crl_full" if has_full else "crl"
    n = f"{sizes.revoked // 1000}k"
    gencrl = f"openssl ca -gencrl, {n} entries"
    figures = [
        time_figure("crl.revoke", f"cert revoke + new CRL, {n} revoked", s["revoke"], gencrl, s["gencrl"],
                    Target("ratio_max", 1.0)),
    ]
    if has_full:
        figures.append(time_figure("crl.incremental", f"twcactl crl (reuses previous), {n} revoked", s["crl"],
                                   gencrl, s["gencrl"], Target("ratio_max", 1.0)))
    figures.append(time_figure(
        "crl.full", f"twcactl crl {'--full' if has_full else '(full rebuild)'}, {n} revoked", s[full_key],
        gencrl, s["gencrl"], Target("ratio_max", 1.5),
        note="" if has_full else "this twcactl has no crl --full: plain crl rebuilds from the records"))
    for key, label in (("revoke", "cert revoke"), (full_key, "twcactl crl" + (" --full" if has_full else ""))):
        mine = [x.max_rss_kb / 1024 for x in s[key]]
        theirs = [x.max_rss_kb / 1024 for x in s["gencrl"]]
        figures.append(Figure(f"crl.peak_rss.{key}", f"peak memory, {label}, {n} revoked", "MB", max(mine),
                              "openssl ca -gencrl", max(theirs), Target("value_max", CRL_RSS_BUDGET_MB), mine, theirs,
                              note="maximum resident set size (os.wait4), worst of the rounds"))
    checks = check_crl(st.crl, revoked_now, sizes.revoked, x509)
    return figures, checks


def check_crl(home: Home, revoked_now: Sequence[str], revoked: int, x509: Any) -> dict[str, Any]:
    """The CRL twcactl wrote last: openssl crl -verify, pkilint, and every revocation on it."""
    der = home.crl_file.read_bytes()
    crl = x509.load_der_x509_crl(der)
    missing = [s for s in revoked_now if crl.get_revoked_certificate_by_serial_number(int(s, 16)) is None]
    cafile = home.crl_file.parent / "bench-cafile.pem"
    cafile.write_bytes(home.root_cert.read_bytes() + home.uca_cert.read_bytes())
    verify = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(home.crl_file), "-CAfile", str(cafile),
                             "-noout", "-verify"], capture_output=True, text=True)
    lint_path = shutil.which("lint_crl") or shutil.which("lint_crl", path=str(Path(sys.executable).parent))
    lint: dict[str, Any] = {"ran": False}
    if lint_path:
        proc = subprocess.run([lint_path, "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING", str(home.crl_file)],
                              capture_output=True, text=True)
        findings = [line for line in proc.stdout.splitlines() if line.strip()]
        lint = {"ran": True, "exit": proc.returncode, "findings": findings, "ok": proc.returncode == 0 and not findings}
    expected = revoked + len(revoked_now)
    return {
        "crl_entries": len(crl),
        "crl_entries_expected": expected,
        "crl_entries_ok": len(crl) == expected,
        "crl_has_new_revocations": not missing,
        "openssl_crl_verify": {"ok": verify.returncode == 0 and "verify OK" in verify.stderr + verify.stdout,
                               "output": (verify.stderr + verify.stdout).strip()},
        "pkilint": lint,
    }


LIST_QUERIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cn_prefix", ("--cn", "host12*")),
    ("cn_suffix", ("--cn", "*99.twca.com.tw")),
    ("status_expiring", ("--status", "expiring")),
    ("status_valid", ("--status", "valid")),
    ("expiring_within", ("--expiring-within", "90")),
)


def bench_list(st: Stores, sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    """``cert list --json --limit 100`` with filters over the big store, against the same on the empty store."""
    log(f"records: cert list --json --limit 100, {len(LIST_QUERIES)} filters, {sizes.list_runs} rounds")
    env = clean_env()
    figures, counts = [], {}
    n = f"{sizes.records // 1000}k"
    for key, filt in LIST_QUERIES:
        def q(home: Home, _filt: tuple[str, ...] = filt) -> Callable[[int], Sample]:
            return lambda _i: run_timed(home.argv("cert", "list", *_filt, "--limit", "100", "--json"), env=env)

        s = interleaved({"big": q(st.big), "empty": q(st.empty)}, sizes.list_runs)
        counts[key] = json.loads(s["big"][-1].stdout)["count"]
        figures.append(time_figure(f"list.{key}", f"cert list {' '.join(filt)}, {n} records", s["big"],
                                   "twcactl, empty store", s["empty"], Target("value_max", LIST_BUDGET_S)))
    return figures, {"list_rows_returned": counts}


# ----- profiles -----
def take_profiles(st: Stores, directory: Path) -> dict[str, str]:
    """pyinstrument profiles of the four measured twcactl paths, and -X importtime of start-up and of one
    ``cert issue --json`` (issue 18)."""
    directory.mkdir(parents=True, exist_ok=True)
    env = clean_env()
    made: dict[str, str] = {}
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        log("pyinstrument is not installed: no profiles (pip install pyinstrument into this venv)")
        return made
    serial = valid_serials(st.crl, 1)
    jobs = {
        "issue-one-big": st.big.argv("cert", "issue", st.one_csr, "--account", ACCOUNT)[1:],
        "issue-batch": st.big.argv("cert", "issue", st.csr_dir, "--account", ACCOUNT, "--json")[1:],
        "revoke-crl": st.crl.argv("cert", "revoke", serial[0], "--reason", "keyCompromise")[1:] if serial else None,
        "crl-full": st.crl.argv("crl", "--full")[1:] if _crl_has_full(st.crl) else st.crl.argv("crl")[1:],
        "list-cn-prefix": st.big.argv("cert", "list", "--cn", "host12*", "--limit", "100", "--json")[1:],
    }
    for name, args in jobs.items():
        if args is None:
            continue
        # args start at "--home": run the package's __main__ under the profiler, sampling every 0.5 ms
        session = directory / f"{name}.pyisession"
        subprocess.run([sys.executable, "-m", "pyinstrument", "-i", "0.0005", "-r", "session", "-o", str(session),
                        "-m", "twcactl", *args], env=env, capture_output=True, check=True)
        # a call tree (library internals folded) and a flat list of self time
        for view, options in (("tree", ["-p", "processor_options.filter_threshold=0.01"]), ("flat", ["-p", "flat=true"])):
            target = directory / f"{name}.{view}.txt"
            subprocess.run([sys.executable, "-m", "pyinstrument", f"--load={session}", "-r", "text", "--no-color",
                            *options, "-o", str(target)], env=env, capture_output=True, check=True)
            made[f"{name}.{view}"] = str(target)
        log(f"profile {name}: {directory / name}.{{tree,flat}}.txt")
    issue_json = [*st.big.argv("cert", "issue", st.one_csr, "--account", ACCOUNT, "--json")[1:]]
    for name, args in (("importtime-help", ["--help"]), ("importtime-version", ["--version"]),
                       ("importtime-issue-json", issue_json)):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "twcactl", *args], env=env,
                              capture_output=True, text=True)
        rows = []
        for line in proc.stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[1].isdigit():
                rows.append((int(parts[1]), int(parts[0]), parts[2]))
        rows.sort(reverse=True)
        target = directory / f"{name}.txt"
        target.write_text("cumulative_us  self_us  module\n" +
                          "\n".join(f"{c:>13}  {s:>7}  {m}" for c, s, m in rows[:40]) + "\n")
        made[name] = str(target)
    return made


# ----- machine -----
def machine_info(work: Path) -> dict[str, Any]:
    """What the figures were measured on (docs/performance.md lists it)."""
    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    fs = subprocess.run(["df", "-T", str(work)], capture_output=True, text=True).stdout.splitlines()
    easyrsa = subprocess.run(["/usr/share/easy-rsa/easyrsa", "--version"], capture_output=True, text=True).stdout
    return {
        "nproc": os.cpu_count(),
        "pinned_cpus": sorted(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "openssl": subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip(),
        "cryptography": cryptography.__version__,
        "cryptography_openssl": backend.openssl_version_text(),
        "sqlite": sqlite3.sqlite_version,
        "easyrsa": next((line.split(":", 1)[1].strip() for line in easyrsa.splitlines()
                        if "Version" in line and ":" in line), ""),
        "work_filesystem": fs[-1].split()[1] if len(fs) > 1 else "unknown",
        "kernel": platform.release(),
        # other work on the machine shows up as noise in the figures; the load says how much there was
        "loadavg_at_end": os.getloadavg(),
    }


#: Sections of other issues, each a module next to this file with ``figures(quick, work)`` returning
#: ``(list[Figure], dict)``: PostgreSQL (issue 14), the HSM-held CA key (issue 14), the server (issue 15).
EXTRA_SECTIONS: tuple[tuple[str, str], ...] = (
    ("postgresql", "scale_out"),
    ("hsm", "hsm_signing"),
    ("serve", "serve_bench"),
    ("issue-loop", "issue_loop"),
    ("lint", "prelint_bench"),  # issue 26: pre-issuance linting per certificate
    ("batch-jobs", "batch_jobs"),
    ("checks", "checks_bench"),  # issue 29: CAA, corroboration, operator signatures, public-trust finalize
)


def bench_extra_sections(quick: bool, work: Path, cpus: set[int] | None) -> tuple[list[Figure], dict[str, Any]]:
    """Run every section of :data:`EXTRA_SECTIONS` in its own work directory, on every CPU.

    These sections measure concurrency (4 nodes, 8 ACME clients), so the one-CPU pin of the rest of
    the run is lifted while they run (``cpus``: the affinity to restore, None where not pinned).
    A section that fails raises BenchError naming it.
    """
    import importlib

    figures: list[Figure] = []
    context: dict[str, Any] = {}
    pinned = os.sched_getaffinity(0) if cpus is not None else None
    try:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        for name, module_name in EXTRA_SECTIONS:
            log(f"section {name} ({module_name}.py)")
            module = importlib.import_module(module_name)
            directory = work / f"section-{name}"
            directory.mkdir()
            try:
                rows, extra = module.figures(quick, directory)
            except BenchError:
                raise
            except Exception as exc:  # noqa: BLE001 - a section's failure names the section
                raise BenchError(f"section {name}: {type(exc).__name__}: {exc}") from exc
            figures += rows
            context[name] = extra
    finally:
        if pinned is not None:
            os.sched_setaffinity(0, pinned)
    return figures, context


def main(argv: Sequence[str] | None = None) -> int:
    """Build the stores, run every section, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small stores and few runs: proves the benchmark works (CI); figures are not the targets'")
    parser.add_argument("--json-out", type=Path, default=Path("bench/results/last-run.json"),
                        help="where to write the figures as JSON (default: bench/results/last-run.json, git-ignored)")
    parser.add_argument("--markdown-out", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--work-dir", type=Path, help="build the stores here and keep them (default: a temporary "
                        "directory, removed at the end)")
    parser.add_argument("--profile-dir", type=Path,
                        help="also take pyinstrument profiles and -X importtime lists and write them here")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the benchmark to one CPU")
    parser.add_argument("--seed", type=int, default=7, help="random seed for serials, CNs and dates")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    every_cpu: set[int] | None = None
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        # One core for twcactl and every peer alike (children inherit it); the run is serial anyway.
        every_cpu = set(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {max(every_cpu)})
    for tool in ("openssl",):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed", file=sys.stderr)
            return 3

    started = time.perf_counter()
    load_at_start = os.getloadavg()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="twcactl-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        print(f"error: {work} is not empty", file=sys.stderr)
        return 2
    # An installed twcactl runs from bytecode compiled at install time.  A shell with
    # PYTHONDONTWRITEBYTECODE=1 would make every child compile twcactl from source (~30 ms a
    # process), so the children write and reuse bytecode in a cache under the work directory
    # instead (nothing is written into the source tree).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    try:
        log(f"{'quick' if args.quick else 'full'} run in {work}; sizes {asdict(sizes)}")
        figures = bench_startup(sizes)
        stores = build_stores(work, sizes, random.Random(args.seed))
        issue_figures, issue_context = bench_issue_one(stores, sizes)
        figures += issue_figures
        x509_req_s = next(f.peer_value for f in issue_figures if f.key == "issue.vs_x509_req")
        batch_figures, batch_context = bench_batch(stores, sizes, x509_req_s)
        figures += batch_figures
        crl_figures, crl_checks = bench_crl(stores, sizes)
        figures += crl_figures
        list_figures, list_context = bench_list(stores, sizes)
        figures += list_figures
        extra_figures, extra_context = bench_extra_sections(args.quick, work, every_cpu)
        figures += extra_figures
        profiles = take_profiles(stores, args.profile_dir) if args.profile_dir else {}
        result = {
            "benchmark": "twcactl issue 7",
            "mode": "quick" if args.quick else "full",
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration_s": round(time.perf_counter() - started, 1),
            "machine": {**machine_info(work), "loadavg_at_start": load_at_start},
            "sizes": asdict(sizes),
            "build_s": stores.build_seconds,
            "figures": [f.to_json() for f in figures],
            "checks": {"crl": crl_checks, "batch_all_recorded": batch_context["batch_all_recorded"],
                       "batch_problems": batch_context["batch_problems"]},
            "context": {"issue": issue_context, "batch": batch_context, "list": list_context, **extra_context},
            "profiles": profiles,
        }
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown_out:
        args.markdown_out.write_text(render_markdown(figures) + "\n")
    print(render_table(figures))
    checks = result["checks"]
    crl = checks["crl"]
    print()
    print(f"checks: CRL entries {crl['crl_entries']:,} (expected {crl['crl_entries_expected']:,}) "
          f"{'ok' if crl['crl_entries_ok'] and crl['crl_has_new_revocations'] else 'WRONG'}; "
          f"openssl crl -verify {'ok' if crl['openssl_crl_verify']['ok'] else 'FAILED'}; "
          f"pkilint {'ok' if crl['pkilint'].get('ok') else ('not installed' if not crl['pkilint']['ran'] else 'FINDINGS')}; "
          f"batch all recorded {'ok' if checks['batch_all_recorded'] else 'WRONG'}")
    held = [f for f in figures if f.holds is not None]
    caveat = " (quick mode: small stores, so not the sizes the targets are about)" if args.quick else ""
    print(f"{sum(1 for f in held if f.holds)}/{len(held)} targets hold{caveat}; "
          f"{result['duration_s']:.0f} s; JSON: {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
