"""Issue 29, batches on every core: ``cert issue DIR --jobs N`` checks and signs in worker processes and
records in this one, with the outcome of ``--jobs 1``; a token-held CA key signs in one process; a crash
mid-batch leaves nothing half-done; ``--jobs`` below 1 is a usage error.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ACCOUNT, CaHome, db_rows, make_ca, require
from twcactl.authority import lifecycle, parallel

REPO = Path(__file__).resolve().parent.parent
GOOD = 40  # enough for a pool of two (parallel.MIN_PER_WORKER per worker) with chunks to share


def _name(cn: str, org: str = "TWCA") -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "TW"),
                      x509.NameAttribute(x509.NameOID.STATE_OR_PROVINCE_NAME, "Taiwan"),
                      x509.NameAttribute(x509.NameOID.LOCALITY_NAME, "Taipei"),
                      x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])


def _csr(key: ec.EllipticCurvePrivateKey, cn: str) -> bytes:
    csr = (x509.CertificateSigningRequestBuilder().subject_name(_name(cn))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def _bad_signature(pem: bytes) -> bytes:
    """The same CSR with one bit of its signature flipped: it parses, but its self-signature fails."""
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01
    return bytes(der)


def good_csrs(directory: Path, count: int, prefix: str = "h") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    paths = []
    for i in range(count):
        path = directory / f"{i:03d}-good.csr"
        path.write_bytes(_csr(key, f"{prefix}{i}.twca.com.tw"))
        paths.append(path)
    return paths


def mixed_batch(directory: Path, blocked_key: ec.EllipticCurvePrivateKey) -> None:
    """GOOD good requests with three refused ones among them (another domain, a key the home blocked, a
    broken self-signature) and a stray file that is not a CSR."""
    good_csrs(directory, GOOD)
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / "005-domain.csr").write_bytes(_csr(key, "www.example.org"))
    (directory / "011-blocked.csr").write_bytes(_csr(blocked_key, "blocked.twca.com.tw"))
    (directory / "017-signature.csr").write_bytes(_bad_signature(_csr(key, "sig.twca.com.tw")))
    (directory / "033-notes.txt").write_text("not a request\n")


@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], dict[str, list[int]]]:
    """Record the process that checks each request and signs each certificate (workers inherit the wrappers)."""
    trace = tmp_path / "trace"
    check, build = lifecycle.check_csr, lifecycle._build

    def mark(stage: str) -> None:
        with open(trace, "a") as fh:
            fh.write(f"{stage} {os.getpid()}\n")

    def traced_check(*args: Any, **kwargs: Any) -> Any:
        mark("check")
        return check(*args, **kwargs)

    def traced_build(*args: Any, **kwargs: Any) -> Any:
        mark("build")
        return build(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "check_csr", traced_check)
    monkeypatch.setattr(lifecycle, "_build", traced_build)

    def read() -> dict[str, list[int]]:
        stages: dict[str, list[int]] = {"check": [], "build": []}
        if trace.exists():
            for line in trace.read_text().splitlines():
                stage, pid = line.split()
                stages[stage].append(int(pid))
        trace.unlink(missing_ok=True)
        return stages
    return read


def _home(tmp_path: Path, quota: int = 1000) -> CaHome:
    home = make_ca(tmp_path / "ca", passphrase=None)
    result = home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", str(quota))
    assert result.code == 0, result.stderr
    return home


def _block(home: CaHome, tmp_path: Path) -> ec.EllipticCurvePrivateKey:
    """Issue a certificate and revoke it for keyCompromise: its key is blocked (BR §6.1.1.3)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = tmp_path / "compromised.csr"
    csr.write_bytes(_csr(key, "lost.twca.com.tw"))
    issued = home.run("--json", "cert", "issue", csr, "--account", ACCOUNT)
    assert issued.code == 0, issued.stderr
    serial = issued.json()["certificates"][0]["serial"]
    assert home.run("cert", "revoke", serial, "--reason", "keyCompromise").code == 0
    return key


def _log_entries(home: CaHome, serials: list[str]) -> list[dict[str, Any]]:
    """The batch's log entries in order, without what differs from one certificate to the next by chance
    (serial, times, DER hash, balance running down from another start)."""
    by_serial = {s: (a, json.loads(d)) for s, a, d in db_rows(home.path, "SELECT serial, action, details FROM"
                                                                         " activity_log WHERE serial IS NOT NULL")}
    out = []
    for serial in serials:
        action, details = by_serial[serial]
        record = {k: v for k, v in details.pop("record").items() if k not in ("sha256", "not_after")}
        details.pop("not_after")
        details.pop("balance")
        out.append({"action": action, **details, "record": record})
    return out


def _issue(home: CaHome, directory: Path, jobs: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = home.run("--json", "cert", "issue", directory, "--account", ACCOUNT, "--days", "90", "--keep-going",
                      "--jobs", jobs, *extra)
    return result.code, result.json()


def _uca(home: CaHome) -> x509.Certificate:
    return x509.load_pem_x509_certificate((home.path / "ca" / "uca.cer").read_bytes())


@pytest.mark.usefixtures("store_engine")
def test_jobs_2_gives_the_outcome_of_jobs_1(tmp_path: Path, traced: Callable[[], dict[str, list[int]]]) -> None:
    home = _home(tmp_path)
    blocked = _block(home, tmp_path)
    batch = tmp_path / "batch"
    mixed_batch(batch, blocked)
    traced()

    runs = {}
    for jobs in ("1", "2"):
        code, doc = _issue(home, batch, jobs)
        runs[jobs] = (code, doc, traced())
    (code1, one, pids1), (code2, two, pids2) = runs["1"], runs["2"]

    # who did the work: all here with --jobs 1; all in worker processes with --jobs 2
    me = os.getpid()
    assert len(pids1["check"]) == GOOD + 3 and set(pids1["check"]) == {me}
    assert len(pids1["build"]) == GOOD and set(pids1["build"]) == {me}
    assert len(pids2["check"]) == GOOD + 3 and me not in pids2["check"]
    assert len(pids2["build"]) == GOOD and me not in pids2["build"]

    # the same result document, but for the serials and times
    assert code1 == code2 == 1  # --keep-going with refusals: the first refusal's exit code (a policy one)
    assert one["failed"] == two["failed"]
    assert [f["file"].rsplit("/", 1)[-1] for f in two["failed"]] == ["005-domain.csr", "011-blocked.csr",
                                                                     "017-signature.csr"]
    assert one["skipped"] == two["skipped"] and len(two["skipped"]) == 1

    def shape(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(c["cn"], c["subject"], c["profile"], c["account"], c["sans"], c["status"], c["issuer"],
                 c["paid_until"]) for c in doc["certificates"]]

    assert shape(one) == shape(two) and len(two["certificates"]) == GOOD
    assert [c["cn"] for c in two["certificates"]] == [f"h{i}.twca.com.tw" for i in range(GOOD)]
    assert one["account"]["was"] - one["account"]["balance"] == two["account"]["was"] - two["account"]["balance"]
    assert one["account"]["balance"] == two["account"]["was"]

    uca = _uca(home)
    for doc in (one, two):
        serials = [c["serial"] for c in doc["certificates"]]
        assert len(set(serials)) == GOOD
        ders = {s: der for s, der in db_rows(home.path, "SELECT serial, der FROM certificates") if s in serials}
        for cert in doc["certificates"]:
            parsed = x509.load_der_x509_certificate(bytes(ders[cert["serial"]]))
            parsed.verify_directly_issued_by(uca)
            assert parsed.not_valid_after_utc - parsed.not_valid_before_utc == dt.timedelta(days=90)
            pem = (home.path / "certs" / f"{cert['serial']}.pem").read_bytes()
            assert x509.load_pem_x509_certificate(pem) == parsed
        assert doc["files"]["pending"] == [] and len(doc["files"]["written"]) == GOOD

    # the books: one ledger row per certificate, same amounts and actions, in request order
    def ledger(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
        serials = [c["serial"] for c in doc["certificates"]]
        rows = {r[0]: r[1:] for r in db_rows(home.path, "SELECT serial, delta, action, operator, note FROM ledger"
                                                        " WHERE serial IS NOT NULL")}
        return [rows[s] for s in serials]

    assert ledger(one) == ledger(two)
    balances = [b for (b,) in db_rows(home.path, "SELECT balance FROM ledger ORDER BY id")]
    assert balances[-1] == two["account"]["balance"]
    assert _log_entries(home, [c["serial"] for c in one["certificates"]]) == \
        _log_entries(home, [c["serial"] for c in two["certificates"]])
    verified = home.run("--json", "log", "verify")
    assert verified.code == 0 and verified.json()["ok"], verified.stdout
    check = home.run("--json", "ca", "check", "--no-repair")
    assert check.code == 0 and check.json()["ok"], check.stdout


def test_all_or_nothing_without_keep_going_under_jobs(tmp_path: Path, traced: Callable[[], dict[str, list[int]]]
                                                      ) -> None:
    """Without --keep-going the first refusal (in request order) is the error, as with --jobs 1, and nothing
    is issued or charged."""
    home = _home(tmp_path)
    batch = tmp_path / "batch"
    good_csrs(batch, GOOD)
    (batch / "013-domain.csr").write_bytes(_csr(ec.generate_private_key(ec.SECP256R1()), "www.example.org"))
    docs = []
    for jobs in ("1", "2"):
        result = home.run("--json", "cert", "issue", batch, "--account", ACCOUNT, "--jobs", jobs)
        assert result.code == 1, result.stdout
        docs.append(result.json())
    assert docs[0] == docs[1] and "013-domain.csr" in docs[1]["error"]["message"]
    assert db_rows(home.path, "SELECT COUNT(*) FROM certificates") == [(0,)]
    assert db_rows(home.path, "SELECT balance FROM accounts WHERE id = ?", ACCOUNT) == [(1000,)]
    assert set(traced()["check"]) - {os.getpid()}, "the second run's checks ran in workers"


@pytest.mark.parametrize("jobs", ["0", "-1", "-8"])
def test_jobs_below_one_is_a_usage_error(tmp_path: Path, jobs: str) -> None:
    home = _home(tmp_path)
    batch = tmp_path / "batch"
    good_csrs(batch, 3)
    result = home.run("--json", "cert", "issue", batch, "--account", ACCOUNT, "--jobs", jobs)
    assert result.code == 2, (result.stdout, result.stderr)
    assert json.loads(result.stdout or result.stderr)["error"]["kind"] == "usage"
    assert db_rows(home.path, "SELECT COUNT(*) FROM certificates") == [(0,)]


def test_an_error_that_does_not_pickle_travels_back_with_its_code_and_message() -> None:
    from twcactl.errors import PinError, PolicyError
    from twcactl.rules.pin import PinState

    policy = PolicyError("refused", hint="fix it", details={"profile": "ssl"})
    assert parallel._portable(policy) is policy
    pin = PinError("wrong PIN", failure="incorrect", pin_state=PinState())
    plain = parallel._portable(pin)
    assert (plain.message, plain.exit_code, plain.kind) == ("wrong PIN", 4, "auth")
    assert pickle.loads(pickle.dumps(plain)).exit_code == 4


class _FakeCa:
    def __init__(self, key_uri: str | None) -> None:
        self.key_uri = key_uri


def test_the_pool_sizes() -> None:
    """A small batch stays in this process; a pool never has more workers than requests allow."""
    assert parallel._workers(2, 2 * parallel.MIN_PER_WORKER - 1) < 2
    assert parallel._workers(2, 2 * parallel.MIN_PER_WORKER) == 2
    assert parallel._workers(8, 3 * parallel.MIN_PER_WORKER) == 3
    assert parallel._workers(1, 1000) == 1
    assert parallel.default_jobs() == len(os.sched_getaffinity(0))
    soft = lifecycle._Signer(ca=_FakeCa(None), cert=None, key=ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]
    token = lifecycle._Signer(ca=_FakeCa("pkcs11:token=CA"), cert=None, key=soft.key)  # type: ignore[arg-type]
    assert not parallel.in_one_process(soft) and parallel.in_one_process(token)
    assert parallel.in_one_process(lifecycle._Signer(ca=_FakeCa(None), cert=None, key=object()))  # type: ignore[arg-type]
    assert list(parallel.ordered(lambda ctx, i: ctx * i, 3, 40, jobs=2)) == [3 * i for i in range(40)]


def test_a_token_key_signs_in_one_process(tmp_path: Path, traced: Callable[[], dict[str, list[int]]]) -> None:
    """A CA key on a PKCS#11 token (SoftHSM2): the token session never crosses a fork, so --jobs 2 signs
    every certificate here; the requests are still checked in workers (before the token is opened)."""
    from tests.card_support import PIN, softhsm_directory

    require("softhsm2-util")
    with softhsm_directory(tmp_path / "softhsm") as hsm:
        home = make_ca(tmp_path / "ca", "--key-uri", f"pkcs11:token={hsm.new_token(prefix='CA')}",
                       "--pkcs11-module", hsm.module, "--key-type", "ec-p256", passphrase=PIN)
        assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw",
                        "--quota", "100").code == 0
        batch = tmp_path / "batch"
        good_csrs(batch, 2 * parallel.MIN_PER_WORKER)
        traced()
        result = home.run("--json", "cert", "issue", batch, "--account", ACCOUNT, "--jobs", "2")
        assert result.code == 0, result.stderr
        pids = traced()
    assert len(pids["build"]) == 2 * parallel.MIN_PER_WORKER and set(pids["build"]) == {os.getpid()}
    assert len(pids["check"]) == 2 * parallel.MIN_PER_WORKER and os.getpid() not in pids["check"]
    uca = _uca(home)
    for cert in result.json()["certificates"]:
        pem = (home.path / "certs" / f"{cert['serial']}.pem").read_bytes()
        x509.load_pem_x509_certificate(pem).verify_directly_issued_by(uca)


# ----------------------------------------------------------------- crashes


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _books_consistent(home: CaHome, issued_before: int, batch: int) -> int:
    """All or nothing: the batch is wholly recorded (records, ledger, log, files after ca check) or not at
    all; the balance is the quota less every charge; the log verifies.  Returns the certificates now."""
    (count,), = db_rows(home.path, "SELECT COUNT(*) FROM certificates")
    assert count in (issued_before, issued_before + batch), (issued_before, count)
    (ledger_sum,), = db_rows(home.path, "SELECT COALESCE(SUM(delta), 0) FROM ledger WHERE action = 'issue'")
    assert -ledger_sum == count
    (balance,), = db_rows(home.path, "SELECT balance FROM accounts WHERE id = ?", ACCOUNT)
    assert balance == 100000 - count
    (logged,), = db_rows(home.path, "SELECT COUNT(*) FROM activity_log WHERE action = 'cert.issue'")
    assert logged == count
    check = home.run("--json", "ca", "check")
    assert check.code == 0 and check.json()["ok"], check.stdout
    verified = home.run("--json", "log", "verify")
    assert verified.code == 0 and verified.json()["ok"], verified.stdout
    return count


def _start(home: CaHome, batch: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TWCACTL_OPERATOR": "alice", "TWCACTL_HOME": str(home.path), "TWCACTL_NO_RESIDENT": "1"}
    env.pop("TWCACTL_CA_PASSPHRASE_SOURCE", None)
    return subprocess.Popen([sys.executable, "-m", "twcactl", "--json", "cert", "issue", str(batch), "--account",
                             ACCOUNT, "--jobs", "2"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


@pytest.fixture
def crash_home(tmp_path: Path) -> Iterator[tuple[CaHome, Path]]:
    home = _home(tmp_path, quota=100000)
    batch = tmp_path / "batch"
    good_csrs(batch, 120)
    yield home, batch


def test_sigkill_of_the_batch_at_random_instants_leaves_all_or_nothing(crash_home: tuple[CaHome, Path]) -> None:
    """The parent killed at instants spread over a batch's run (checks, signing in the pool, commit, files):
    each time the batch is wholly recorded or not at all, and no worker outlives it (they hold the
    parent's stdout: reading it to the end proves every one exited)."""
    home, batch = crash_home
    rng = random.Random(29)
    started = time.monotonic()
    proc = _start(home, batch)
    out, err = proc.communicate(timeout=300)
    typical = time.monotonic() - started
    assert proc.returncode == 0, err.decode()
    count = _books_consistent(home, 0, 120)
    outcomes = Counter[str]()
    for _ in range(6):
        proc = _start(home, batch)
        time.sleep(rng.uniform(0.15, 1.0) * typical)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)  # every worker gone too: they hold the pipe
        outcomes["killed" if proc.returncode == -signal.SIGKILL else str(proc.returncode)] += 1
        assert proc.returncode in (0, -signal.SIGKILL), err.decode()
        count = _books_consistent(home, count, 120)
    print(f"batch SIGKILL outcomes: {dict(outcomes)}")
    assert outcomes["killed"] >= 2, outcomes


def test_a_worker_killed_mid_batch_fails_the_batch_and_records_nothing(crash_home: tuple[CaHome, Path]) -> None:
    """A worker that dies (the OOM killer, a signal) is exit 70 and nothing recorded, never a hang."""
    home, batch = crash_home
    count = 0
    for _attempt in range(5):  # bounded: on a loaded machine the workers may come and go between two looks
        proc = _start(home, batch)
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while proc.poll() is None and time.monotonic() < deadline and len(workers) < 2:
            workers = _children(proc.pid)
            time.sleep(0.005)
        if len(workers) >= 2:
            os.kill(workers[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:  # no pool seen, or it had finished its work before the kill landed
            count = _books_consistent(home, count, 120)
            continue
        assert proc.returncode == 70, err.decode()
        error = json.loads(out or err)["error"]
        assert error["kind"] == "internal" and "worker process" in error["message"], error
        assert _books_consistent(home, count, 120) == count
        break
    else:
        pytest.skip("the batch always finished before a worker could be killed")


# ----------------------------------------------------------------- cert renew-due --new-key


def _due_home(tmp_path: Path, name: str, count: int) -> CaHome:
    """A home with ``count`` certificates ending in 10 days (EC P-256 keys: quick to make again)."""
    home = make_ca(tmp_path / name, passphrase=None)
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "100").code == 0
    batch = tmp_path / f"{name}-csrs"
    batch.mkdir()
    for i in range(count):  # a key each: renew-due certifies a new key like each old one
        (batch / f"{i:03d}.csr").write_bytes(_csr(ec.generate_private_key(ec.SECP256R1()), f"d{i}.twca.com.tw"))
    issued = home.run("--json", "cert", "issue", batch, "--account", ACCOUNT, "--days", "10", "--jobs", "1")
    assert issued.code == 0, issued.stderr
    return home


def test_renew_due_makes_its_new_keys_in_workers_with_the_outcome_of_jobs_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from twcactl import pfx

    trace = tmp_path / "keys"
    made = pfx.new_key_like

    def traced(public_key: Any) -> Any:
        with open(trace, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return made(public_key)

    monkeypatch.setattr(pfx, "new_key_like", traced)
    docs = {}
    for jobs in ("1", "2"):
        home = _due_home(tmp_path, f"ca{jobs}", 6)
        result = home.run("--json", "cert", "renew-due", "--within", "30", "--new-key", "--out-dir",
                          tmp_path / f"live{jobs}", "--jobs", jobs)
        assert result.code == 0, result.stderr
        docs[jobs] = result.json()
        pids = [int(p) for p in trace.read_text().split()]
        trace.unlink()
        assert len(pids) == 6
        assert (set(pids) == {os.getpid()}) if jobs == "1" else (os.getpid() not in pids), (jobs, pids)
        verified = home.run("--json", "log", "verify")
        assert verified.code == 0 and verified.json()["ok"]
        for r in docs[jobs]["results"]:
            directory = Path(r["directory"])
            key = serialization.load_pem_private_key((directory / "key.pem").read_bytes(), None)
            cert = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
            assert cert.public_key() == key.public_key()
            assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
            cert.verify_directly_issued_by(_uca(home))

    def shape(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
        # in notAfter order, then by serial: random, so the two homes are compared by CN
        return sorted((r["cn"], r["outcome"], r["new_key"], r["profile"],
                       sorted(Path(f).name for f in r["files"]["written"])) for r in doc["results"])

    assert shape(docs["1"]) == shape(docs["2"]) and docs["2"]["renewed"] == 6
    assert [r["balance"] for r in docs["1"]["results"]] == [r["balance"] for r in docs["2"]["results"]]


# ----- one pass: checked and signed by the same task, recorded while the workers go on -----

def _inputs(directory: Path) -> list[lifecycle.CsrInput]:
    return [lifecycle.CsrInput(name=p.name, data=p.read_bytes()) for p in sorted(directory.glob("*.csr"))]


def _issue_here(home: CaHome, directory: Path, jobs: int, passphrase: Callable[[], str | None], *,
                keep_going: bool = False, progress: Any = None) -> lifecycle.IssueOutcome:
    from twcactl.rules.validity import Validity
    from twcactl.store import Store

    store = Store.open(home.path)
    try:
        return lifecycle.issue_certificates(store, _inputs(directory), account_id=ACCOUNT, profile="ssl",
                                            validity=Validity(days=90), operator="alice", passphrase=passphrase,
                                            keep_going=keep_going, progress=progress, jobs=jobs)
    finally:
        store.close()


def _asking(answer: str) -> tuple[Callable[[], str], list[int]]:
    asked: list[int] = []

    def provider() -> str:
        asked.append(1)
        return answer
    return provider, asked


def test_one_pass_checks_signs_and_records_while_the_workers_go_on(tmp_path: Path) -> None:
    """A batch that can be signed once checked takes one pool: every task checks and signs, and this process
    reports one "issuing" stage as the results come back, ending at the batch's size."""
    from tests.conftest import CA_PASSPHRASE

    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "1000").code == 0
    batch = tmp_path / "batch"
    good_csrs(batch, GOOD)
    stages: list[tuple[str, int, int]] = []
    provider, asked = _asking(CA_PASSPHRASE)
    outcome = _issue_here(home, batch, 2, provider, progress=lambda *a: stages.append(a))
    assert len(outcome.issued) == GOOD and outcome.failed == [] and asked == [1]
    assert {s for s, _d, _t in stages} == {"issuing"} and stages[-1] == ("issuing", GOOD, GOOD)
    assert [r.cn for r in outcome.issued] == [f"h{i}.twca.com.tw" for i in range(GOOD)]
    assert len(outcome.files.written) == GOOD and outcome.balance_before - outcome.balance_after == GOOD
    keys = dict(db_rows(home.path, "SELECT serial, spki_sha256 FROM certificates"))
    for record in outcome.issued:  # the key fingerprint the worker computed is the record's
        cert = x509.load_pem_x509_certificate(Path(record.path).read_bytes())
        assert keys[record.serial] == lifecycle.spki_sha256(cert.public_key())


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_wrong_passphrase_is_reported_where_jobs_1_reports_it_and_asked_once(tmp_path: Path,
                                                                                keep_going: bool) -> None:
    """The one pass unlocks the CA key before the checks; a wrong passphrase must still lose to a refused
    request (without --keep-going) as with --jobs 1, and the passphrase is never asked twice."""
    from twcactl.errors import AuthError, PolicyError

    home = make_ca(tmp_path / "ca")
    assert home.run("account", "add", ACCOUNT, "--org", "TWCA", "--domain", "twca.com.tw", "--quota", "1000").code == 0
    batch = tmp_path / "batch"
    good_csrs(batch, GOOD)
    (batch / "021-domain.csr").write_bytes(_csr(ec.generate_private_key(ec.SECP256R1()), "www.example.org"))
    outcomes: dict[int, tuple[type[BaseException], str]] = {}
    for jobs in (1, 2):
        provider, asked = _asking("not the passphrase")
        with pytest.raises((AuthError, PolicyError)) as raised:
            _issue_here(home, batch, jobs, provider, keep_going=keep_going)
        assert len(asked) <= 1, (jobs, asked)
        outcomes[jobs] = (type(raised.value), raised.value.message)
    assert outcomes[1] == outcomes[2]
    assert outcomes[2][0] is (AuthError if keep_going else PolicyError)
    assert db_rows(home.path, "SELECT COUNT(*) FROM certificates") == [(0,)]


def test_a_build_failure_loses_to_a_later_refusal_as_with_jobs_1(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With --jobs 1 every request is checked before any is signed: a certificate that fails to build (a
    pre-issuance lint, say) is raised only when no request was refused.  The one pass keeps that order."""
    from twcactl.errors import PolicyError

    build = lifecycle._build

    def failing(signer: Any, csr: x509.CertificateSigningRequest, **kwargs: Any) -> Any:
        if "h3." in csr.subject.rfc4514_string():
            raise PolicyError("lint: h3 does not lint")
        return build(signer, csr, **kwargs)

    monkeypatch.setattr(lifecycle, "_build", failing)
    home = _home(tmp_path)
    batch = tmp_path / "batch"
    good_csrs(batch, GOOD)
    seen: dict[tuple[int, bool], str] = {}
    for keep_going in (False, True):
        for jobs in (1, 2):
            with pytest.raises(PolicyError) as raised:
                _issue_here(home, batch, jobs, lambda: None, keep_going=keep_going)
            seen[jobs, keep_going] = raised.value.message
    assert seen[1, False] == seen[2, False] == seen[1, True] == seen[2, True] == "lint: h3 does not lint"
    (batch / "031-domain.csr").write_bytes(_csr(ec.generate_private_key(ec.SECP256R1()), "www.example.org"))
    for jobs in (1, 2):
        with pytest.raises(PolicyError) as raised:
            _issue_here(home, batch, jobs, lambda: None)
        assert "031-domain.csr" in raised.value.message, jobs
    assert db_rows(home.path, "SELECT COUNT(*) FROM certificates") == [(0,)]


def test_a_balance_short_of_the_whole_batch_takes_the_two_step_path(tmp_path: Path,
                                                                     traced: Callable[[], dict[str, list[int]]]
                                                                     ) -> None:
    """One pass only when the balance pays for every request: with less, refused requests may still leave
    enough, so the batch is checked first (in workers), charged, then signed, as with --jobs 1."""
    home = _home(tmp_path, quota=GOOD)
    batch = tmp_path / "batch"
    good_csrs(batch, GOOD)
    (batch / "007-domain.csr").write_bytes(_csr(ec.generate_private_key(ec.SECP256R1()), "www.example.org"))
    traced()
    stages: list[str] = []
    outcome = _issue_here(home, batch, 2, lambda: None, keep_going=True, progress=lambda s, _d, _t: stages.append(s))
    assert len(outcome.issued) == GOOD and [name for name, _e in outcome.failed] == ["007-domain.csr"]
    assert outcome.balance_after == 0 and set(stages) == {"checking", "signing"}
    pids = traced()
    assert len(pids["check"]) == GOOD + 1 and os.getpid() not in pids["check"]
