#!/usr/bin/env python3
"""``twcactl serve`` measured (issues 15 and 18): OCSP against ``openssl ocsp -port``, ACME end to end, finalize.

Run from the repository root::

    .venv/bin/python bench/serve_bench.py            # 100,000 revoked entries, 64 ACME certificates
    .venv/bin/python bench/serve_bench.py --quick    # 1,000 revoked entries, 8 certificates (< 90 s; CI)

The full run takes about 4 minutes on 2 cores (1.5 of them minting the 110,000 certificates) and about
700 MB of disk in its work directory (a temporary one, removed at the end, unless ``--work DIR``).

Five figures (``figures()`` returns them for bench/run.py; ``main()`` prints them as JSON):

* ``serve.ocsp_rate``: OCSP responses per second from ``twcactl serve`` (plain HTTP, ``--workers 1``) against
  OpenSSL's own responder (``openssl ocsp -index index.txt -port P``, one process) over the same revoked set:
  real certificates the home's issuing CA signed, recorded and logged as issued then revoked (so ``ca check``
  accepts the home), the same entries in ``index.txt``, both responders signing with the same delegated OCSP
  signing certificate and key (the one ``serve`` keeps in ``HOME/serve/``).  One load generator drives both:
  a fixed pool of keep-alive connections (``concurrency`` of them, each a thread sending the next request as
  soon as the last answer is in), POST and GET alternating, serials drawn uniformly from the revoked and the
  good ones plus a few unknown; a sample of answers is checked with ``cryptography.x509.ocsp`` (serial, status,
  reason, the signature by the delegated signer).  ``openssl ocsp -port`` answers one request at a time (one
  process, one thread; ``-multi N`` forks N of them): the extra ``workers2`` figure in the context puts
  ``serve --workers 2`` beside ``openssl ocsp -multi 2``.
* ``serve.ocsp_listen_rate`` and ``serve.ocsp_listen_p99_ms`` (issue 29): the same rounds against the same
  server's OCSP-only listener (``--ocsp-listen``), driven in turn with the other two (target >= 1.0x
  ``openssl ocsp -port``; p99 over every counted request <= 2 ms, the load generator's clock).  Both twcactl
  paths answer from the answers produced ahead (``authority/ocsp_answers.py``), signed for every live
  certificate before ``serve`` listens: ``context.ocsp.serve_start_s`` is that start-up.
* ``serve.acme_rate``: certificates per second through ACME (newOrder, http-01, finalize, download) with 8
  concurrent clients (the ``acme`` package's ``ClientV2``, one process each, each with its own EAB-bound
  account; the http-01 answers from a responder on loopback, ``--acme-resolve *=127.0.0.1``).  The peer is the
  CLI issuing the same number of certificates with the same concurrency, one ``twcactl cert issue`` process
  each: what a pipeline does without the server.  The context holds the p50 / p99 per certificate and the
  server's share of the time (the sum of the ``Server-Timing`` the server reports per request over the sum of
  the clients' request times).
* ``serve.finalize_ms``: the server's finalize path in-process (``authority.acme.finalize`` on a ready order:
  policy, books, signing, log), pinned to one CPU, median in ms; the peer is one raw signature of the same
  kind of certificate with the same CA key (``cryptography``'s ``CertificateBuilder.sign``); target <= 10 ms.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _p in (str(BENCH), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from harness import BenchError, Figure, Target, median  # noqa: E402

from tests.serve_support import TokenServer, free_port  # noqa: E402 - the tests' port rule (below the ephemeral range)

ACCOUNT = "70759028-01"
DOMAIN = "twca.com.tw"
OPERATOR = "bench"
PASS_VAR = "TWCACTL_BENCH_CA_PASS"
CA_PASSPHRASE = "bench passphrase, not a secret"
#: Reasons the revoked entries carry (in turn); both responders must answer each one back.
REASONS = ("superseded", "cessationOfOperation", "affiliationChanged")
#: The issue's target for the finalize path on one core, ms.
FINALIZE_TARGET_MS = 10.0


@dataclass(frozen=True)
class Sizes:
    """How much each part does: revoked / good records, OCSP requests per round, ACME certificates, finalizes."""

    revoked: int
    good: int
    requests: int
    rounds: int
    concurrency: int
    acme_clients: int
    acme_per_client: int
    finalize_runs: int


FULL = Sizes(revoked=100_000, good=10_000, requests=10_000, rounds=3, concurrency=8, acme_clients=8,
             acme_per_client=8, finalize_runs=200)
QUICK = Sizes(revoked=1_000, good=200, requests=1_000, rounds=1, concurrency=8, acme_clients=8,
              acme_per_client=1, finalize_runs=20)


def log(message: str) -> None:
    """Progress on stderr (stdout carries the JSON)."""
    sys.stderr.write(f"[serve_bench] {message}\n")
    sys.stderr.flush()


def twcactl_argv() -> list[str]:
    """The console script next to this interpreter, as users start it."""
    script = Path(sys.executable).parent / "twcactl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "twcactl"]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment minus TWCACTL_* settings, plus the bench operator and passphrase."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWCACTL_")}
    env.update({"TWCACTL_OPERATOR": OPERATOR, PASS_VAR: CA_PASSPHRASE}, **extra)
    return env


def tw(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``twcactl --home HOME ARGS`` (the passphrase SOURCE in the environment)."""
    proc = subprocess.run([*twcactl_argv(), "--home", str(home), *args], capture_output=True, text=True,
                          env=clean_env(TWCACTL_CA_PASSPHRASE_SOURCE=f"env:{PASS_VAR}"), check=False)
    if check and proc.returncode != 0:
        raise BenchError(f"twcactl {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- the home and its revoked set

def init_home(path: Path, quota: int) -> Path:
    """``ca init`` (RSA-2048 root and issuing CA, encrypted keys) and the account (``twca.com.tw``)."""
    subprocess.run([*twcactl_argv(), "--home", str(path), "ca", "init", "--org", "twcactl Bench", "--country", "TW",
                    "--root-key-type", "rsa2048", "--ca-passphrase", f"env:{PASS_VAR}"], env=clean_env(),
                   capture_output=True, check=True)
    tw(path, "account", "add", ACCOUNT, "--org", "TWCA", "--domain", DOMAIN, "--quota", str(quota))
    return path


@dataclass(frozen=True)
class Entry:
    """One minted record: its serial, notAfter and, when revoked, when and why."""

    serial: int
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: str | None = None


def _mint_chunk(args: tuple[str, int, int, int]) -> list[tuple[int, bytes, int]]:
    """Sign ``count`` leaf certificates with the home's issuing CA key (a pool worker): ``(serial, DER, days)``."""
    home, start, count, seed = args
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from twcactl.authority.home import load_ca_key
    from twcactl.store import Store

    store = Store.open(Path(home))
    try:
        ca = store.cas.issuing()
        ca_cert, ca_key = ca.certificate(), load_ca_key(ca, CA_PASSPHRASE)
    finally:
        store.close()
    rng = random.Random(seed)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    out = []
    for i in range(start, start + count):
        cn = f"host{i:06d}.{DOMAIN}"
        days = rng.randrange(30, 700)
        serial = rng.getrandbits(159) | (1 << 158)
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]))
                .issuer_name(ca_cert.subject).public_key(keys[i % len(keys)].public_key()).serial_number(serial)
                .not_valid_before(now - dt.timedelta(days=30)).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
                .add_extension(aki, critical=False)
                .sign(ca_key, hashes.SHA256()))
        out.append((serial, cert.public_bytes(serialization.Encoding.DER), days))
    return out


def mint_records(home: Path, revoked: int, good: int, *, seed: int = 15) -> tuple[list[Entry], list[Entry]]:
    """``revoked + good`` real certificates of the issuing CA, recorded and logged as issued (and revoked).

    The certificates are signed by the CA key in a process pool (setup, not measured), loaded with the store's
    bulk path, and each gets the ``cert.issue`` (and ``cert.revoke``) log entry with its ``record`` (issue 13),
    so ``ca check`` replays them; the PEM files are written as issuing does.  They carry no account and cost
    nothing (like the server's own certificates), so no balance moves.
    """
    from twcactl.authority.audit import certificate_state
    from twcactl.rules.serials import format_serial
    from twcactl.rules.times import rfc3339
    from twcactl.store import Store

    total = revoked + good
    workers = max(1, min(os.cpu_count() or 1, 4))
    step = max(1, -(-total // (workers * 4)))
    jobs = [(str(home), s, min(step, total - s), seed + s) for s in range(0, total, step)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        minted = [row for chunk in pool.map(_mint_chunk, jobs) for row in chunk]
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows: list[dict[str, Any]] = []
    logs: list[tuple[str, str, str | None, str, dict[str, Any]]] = []
    bad, fine = [], []
    for i, (serial_int, der, days) in enumerate(minted):
        serial = format_serial(serial_int)
        not_after = now + dt.timedelta(days=days)
        cn = f"host{i:06d}.{DOMAIN}"
        row: dict[str, Any] = {"serial": serial, "ca_name": "uca", "account_id": None, "profile": "ssl", "cn": cn,
                               "subject": f"CN={cn}", "sans": [cn], "not_before": rfc3339(now - dt.timedelta(days=30)),
                               "not_after": rfc3339(not_after), "der": der, "cost": 0, "validity": "",
                               "operator": OPERATOR}
        logs.append((OPERATOR, "cert.issue", None, serial, {
            "internal": "bench", "cn": cn, "cost": 0, "not_after": rfc3339(not_after),
            "record": certificate_state(state="valid", reason=None, revoked_at=None, not_after=not_after,
                                        account=None, der=der)}))
        if i < revoked:
            when = now - dt.timedelta(seconds=rng.randrange(60, 90 * 86400))
            reason = REASONS[i % len(REASONS)]
            row.update(state="revoked", revoked_at=rfc3339(when), reason=reason)
            logs.append((OPERATOR, "cert.revoke", None, serial, {
                "reason": reason, "record": certificate_state(state="revoked", reason=reason, revoked_at=when,
                                                              not_after=not_after, account=None)}))
            bad.append(Entry(serial_int, not_after, when, reason))
        else:
            fine.append(Entry(serial_int, not_after))
        rows.append(row)
    store = Store.open(home)
    try:
        store.certificates.bulk_add(rows)
        for start in range(0, len(logs), 20_000):
            with store.transaction():
                store.log.append_many(logs[start:start + 20_000])
        store.certs_dir.mkdir(exist_ok=True)
        for row in rows:
            path = store.cert_path(row["serial"])
            path.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + _pem_body(row["der"]) + b"-----END CERTIFICATE-----\n")
    finally:
        store.close()
    return bad, fine


def _pem_body(der: bytes) -> bytes:
    text = base64.b64encode(der)
    return b"".join(text[i:i + 64] + b"\n" for i in range(0, len(text), 64))


def write_index(path: Path, revoked: Sequence[Entry], good: Sequence[Entry]) -> Path:
    """OpenSSL's ``index.txt`` of the same records (``R`` lines with time and reason, ``V`` lines)."""
    def t(when: dt.datetime) -> str:
        return when.strftime("%y%m%d%H%M%SZ")

    with open(path, "w", encoding="ascii") as index:
        for e in [*revoked, *good]:
            serial = format(e.serial, "X")
            serial = "0" + serial if len(serial) % 2 else serial
            rev = f"{t(e.revoked_at)},{e.reason}" if e.revoked_at else ""
            index.write(f"{'R' if e.revoked_at else 'V'}\t{t(e.not_after)}\t{rev}\t{serial}\tunknown\t/CN=bench\n")
    (path.parent / (path.name + ".attr")).write_text("unique_subject = no\n")
    return path


# ---------------------------------------------------------------- OCSP: one load generator, two responders

@dataclass
class OcspTarget:
    """A responder to drive: where POST goes and the prefix a GET puts before the base64 request."""

    name: str
    port: int
    post_path: str
    get_prefix: str


@dataclass
class LoadResult:
    """One round against one responder."""

    rate: float
    seconds: float
    latencies: list[float]
    errors: int
    reconnects: int
    samples: list[tuple[int, bytes]] = field(default_factory=list)


def ocsp_requests(issuer_der: bytes, serials: Sequence[int]) -> list[bytes]:
    """DER OCSP requests (SHA-1 CertIDs, no nonce: the RFC 5019 profile clients use at scale)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    issuer = x509.load_der_x509_certificate(issuer_der)
    name_hash = hashes.Hash(hashes.SHA1())
    name_hash.update(issuer.subject.public_bytes())
    spki = issuer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    from asn1crypto import keys as asn1_keys

    key_hash = hashes.Hash(hashes.SHA1())
    key_hash.update(asn1_keys.PublicKeyInfo.load(spki)["public_key"].contents[1:])
    nh, kh = name_hash.finalize(), key_hash.finalize()
    return [ocsp.OCSPRequestBuilder().add_certificate_by_hash(nh, kh, s, hashes.SHA1()).build()
            .public_bytes(serialization.Encoding.DER) for s in serials]


def _http_request(target: OcspTarget, der: bytes, get: bool) -> bytes:
    host = f"Host: 127.0.0.1:{target.port}\r\n"
    if get:
        text = base64.b64encode(der).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        return f"GET {target.get_prefix}{text} HTTP/1.1\r\n{host}\r\n".encode()
    return (f"POST {target.post_path} HTTP/1.1\r\n{host}Content-Type: application/ocsp-request\r\n"
            f"Content-Length: {len(der)}\r\n\r\n").encode() + der


class _Conn:
    """One keep-alive HTTP/1.1 connection that reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = b""
        self.reconnects = -1

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        self.reconnects += 1
        return sock

    def exchange(self, data: bytes) -> tuple[int, bytes]:
        """Send one request, read one response: (status, body)."""
        sock = self.sock or self._connect()
        try:
            sock.sendall(data)
            return self._read(sock)
        except (ConnectionError, BenchError):
            self.close()
            sock = self._connect()
            sock.sendall(data)
            return self._read(sock)

    def _read(self, sock: socket.socket) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError("closed before the headers")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        length = int(headers.get(b"content-length", b"-1"))
        close = headers.get(b"connection", b"").lower() == b"close" or lines[0].startswith(b"HTTP/1.0")
        if length < 0:  # no length: the body runs to the end of the connection
            while chunk := sock.recv(65536):
                rest += chunk
            body, self.buf, close = rest, b"", True
        else:
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise BenchError("closed inside the body")
                rest += chunk
            body, self.buf = rest[:length], rest[length:]
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def drive(target: OcspTarget, requests: Sequence[bytes], *, concurrency: int, sample_every: int = 50) -> LoadResult:
    """Send every request once over ``concurrency`` keep-alive connections, POST and GET alternating.

    Each connection is a thread that sends its next request as soon as the last answer is in; the rate is
    the number of answers over the wall time from the common start to the last answer.
    """
    wire = [_http_request(target, der, get=i % 2 == 1) for i, der in enumerate(requests)]
    shares = [list(range(k, len(wire), concurrency)) for k in range(concurrency)]
    latencies: list[list[float]] = [[] for _ in shares]
    samples: list[tuple[int, bytes]] = []
    errors = [0]
    conns = [_Conn(target.port) for _ in shares]
    start_gate = threading.Barrier(concurrency + 1)

    def worker(k: int) -> None:
        conn, mine, lat = conns[k], shares[k], latencies[k]
        start_gate.wait()
        for i in mine:
            t0 = time.perf_counter()
            try:
                status, body = conn.exchange(wire[i])
            except (OSError, BenchError):
                errors[0] += 1
                conn.close()
                continue
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors[0] += 1
            elif i % sample_every == 0:
                samples.append((i, body))
        conn.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    flat = [x for lat in latencies for x in lat]
    return LoadResult(rate=len(flat) / seconds, seconds=seconds, latencies=flat, errors=errors[0],
                      reconnects=sum(max(0, c.reconnects) for c in conns), samples=samples)


def check_samples(samples: Sequence[tuple[int, bytes]], expected: Sequence[Entry | int],
                  signer_der: bytes) -> dict[str, Any]:
    """Parse each sampled answer with ``cryptography.x509.ocsp``: serial, status, reason, revocation time, the
    signature by the delegated signer.  Returns counts and the first few problems."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import ocsp

    signer = x509.load_der_x509_certificate(signer_der).public_key()
    problems: list[str] = []
    for i, body in samples:
        want = expected[i]
        try:
            resp = ocsp.load_der_ocsp_response(body)
            if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
                raise ValueError(f"status {resp.response_status}")
            assert isinstance(signer, ec.EllipticCurvePublicKey) and resp.signature_hash_algorithm is not None
            signer.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))
            serial = want if isinstance(want, int) else want.serial
            if resp.serial_number != serial:
                raise ValueError("another serial")
            if isinstance(want, int):
                ok = resp.certificate_status == ocsp.OCSPCertStatus.UNKNOWN
            elif want.revoked_at is None:
                ok = resp.certificate_status == ocsp.OCSPCertStatus.GOOD
            else:
                ok = (resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
                      and resp.revocation_reason == x509.ReasonFlags(want.reason)
                      and resp.revocation_time_utc == want.revoked_at)
            if not ok:
                raise ValueError(f"{resp.certificate_status} {resp.revocation_reason} {resp.revocation_time_utc}")
        except Exception as exc:  # noqa: BLE001 - every failure is one problem line
            problems.append(f"request {i}: {type(exc).__name__}: {exc}")
    return {"checked": len(samples), "ok": len(samples) - len(problems), "problems": problems[:5]}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (Linux ``/proc``; 0.0 where there is none): the
    server's own cost per answer, which the other work on a loaded machine does not inflate as it does rates."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ---------------------------------------------------------------- the servers

@dataclass
class Serve:
    """A running ``twcactl serve``."""

    proc: subprocess.Popen[bytes]
    port: int
    http_port: int
    http01_port: int
    log: Path
    ocsp_port: int = 0

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/acme/directory"


def start_serve(home: Path, work: Path, *, workers: int = 1, http01_port: int | None = None) -> Serve:
    """``twcactl serve`` on free loopback ports (access log and errors to a file), ready when /health answers."""
    port, http_port, http01, ocsp_port = free_port(), free_port(), http01_port or free_port(), free_port()
    log_path = work / f"serve-{port}.log"
    args = [*twcactl_argv(), "--home", str(home), "serve", "--listen", f"127.0.0.1:{port}", "--http-listen",
            f"127.0.0.1:{http_port}", "--workers", str(workers), "--acme-resolve", "*=127.0.0.1",
            "--acme-http01-port", str(http01), "--ca-passphrase", f"env:{PASS_VAR}",
            "--ocsp-listen", f"127.0.0.1:{ocsp_port}"]
    started = time.monotonic()
    with open(log_path, "ab") as err:
        proc = subprocess.Popen(args, env=clean_env(), stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 300  # the answers of every live certificate are signed before it listens
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"twcactl serve exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            conn = _Conn(http_port)
            status, _ = conn.exchange(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\n\r\n".encode())
            conn.close()
            if status == 200:
                log(f"serve --workers {workers} ready in {time.monotonic() - started:.1f} s")
                return Serve(proc, port, http_port, http01, log_path, ocsp_port)
        except (OSError, BenchError):
            pass
        time.sleep(0.2)
    stop(proc)
    raise BenchError("twcactl serve did not start within 300 s")


def start_openssl_ocsp(home: Path, index: Path, *, multi: int = 1) -> tuple[subprocess.Popen[bytes], int]:
    """``openssl ocsp -port`` over ``index`` signing with the server's delegated OCSP certificate and key (it
    listens on every address of the machine: it takes no host; the load generator connects over loopback)."""
    port = free_port()
    serve_dir = home / "serve"
    args = ["openssl", "ocsp", "-index", str(index), "-port", str(port), "-CA", str(home / "ca" / "uca.cer"),
            "-rsigner", str(serve_dir / "ocsp-uca.cer"), "-rkey", str(serve_dir / "ocsp-uca.key"), "-ndays", "7",
            "-resp_key_id", "-ignore_err"]
    if multi > 1:
        args += ["-multi", str(multi)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # probe with a whole request: openssl ocsp (3.0) spins on a connection closed before it sent one
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    issuer = x509.load_pem_x509_certificate((home / "ca" / "uca.cer").read_bytes())
    probe = _http_request(OcspTarget("probe", port, "/", "/"),
                          ocsp_requests(issuer.public_bytes(serialization.Encoding.DER), [1])[0], get=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"openssl ocsp exited {proc.returncode} before answering")
        try:
            if _Conn(port).exchange(probe)[0] == 200:
                return proc, port
        except (OSError, BenchError):
            time.sleep(0.1)
    stop(proc)
    raise BenchError("openssl ocsp did not answer within 30 s")


def bench_ocsp(home: Path, work: Path, sizes: Sizes, revoked: Sequence[Entry], good: Sequence[Entry],
               rng: random.Random) -> tuple[Figure, dict[str, Any]]:
    """``serve.ocsp_rate``: interleaved rounds, the same requests to each responder (module docstring)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    index = write_index(work / "index.txt", revoked, good)
    issuer_der = x509.load_pem_x509_certificate((home / "ca" / "uca.cer").read_bytes()).public_bytes(
        serialization.Encoding.DER)
    out: dict[str, Any] = {"revoked_entries": len(revoked), "good_entries": len(good),
                           "requests_per_round": sizes.requests, "rounds": sizes.rounds,
                           "concurrency": sizes.concurrency}
    results: dict[str, list[LoadResult]] = {"twcactl": [], "listener": [], "openssl": []}
    checks: dict[str, dict[str, Any]] = {}
    cpu_us: dict[str, list[float]] = {}
    t0 = time.monotonic()
    serve = start_serve(home, work)
    out["serve_start_s"] = time.monotonic() - t0  # includes signing every live certificate's answer (issue 29)
    ossl: subprocess.Popen[bytes] | None = None
    try:
        signer_der = x509.load_pem_x509_certificate((home / "serve" / "ocsp-uca.cer").read_bytes()).public_bytes(
            serialization.Encoding.DER)
        ossl, ossl_port = start_openssl_ocsp(home, index)
        targets = {"twcactl": OcspTarget("twcactl serve", serve.http_port, "/ocsp", "/ocsp/"),
                   "listener": OcspTarget("twcactl serve --ocsp-listen", serve.ocsp_port, "/ocsp", "/ocsp/"),
                   "openssl": OcspTarget("openssl ocsp", ossl_port, "/", "/")}
        for rnd in range(sizes.rounds + 1):  # round 0 warms both up and is not counted
            expected: list[Entry | int] = []
            for _ in range(sizes.requests if rnd else min(500, sizes.requests)):
                pick = rng.random()
                if pick < 0.6:
                    expected.append(revoked[rng.randrange(len(revoked))])
                elif pick < 0.95:
                    expected.append(good[rng.randrange(len(good))])
                else:
                    expected.append(rng.getrandbits(159) | (1 << 158))
            reqs = ocsp_requests(issuer_der, [e if isinstance(e, int) else e.serial for e in expected])
            order = ["twcactl", "listener", "openssl"] if rnd % 2 == 0 else ["openssl", "listener", "twcactl"]
            pids = {"twcactl": serve.proc.pid, "listener": serve.proc.pid, "openssl": ossl.pid}
            for who in order:
                cpu0 = _cpu_seconds(pids[who])
                result = drive(targets[who], reqs, concurrency=sizes.concurrency)
                if rnd:
                    results[who].append(result)
                    cpu_us.setdefault(who, []).append((_cpu_seconds(pids[who]) - cpu0) / len(reqs) * 1e6)
                    check = check_samples(result.samples, expected, signer_der)
                    agg = checks.setdefault(who, {"checked": 0, "ok": 0, "problems": []})
                    agg["checked"] += check["checked"]
                    agg["ok"] += check["ok"]
                    agg["problems"] += check["problems"]
        # the same two with two processes each: serve --workers 2, openssl ocsp -multi 2
        stop(serve.proc)
        stop(ossl)
        ossl = None
        serve = start_serve(home, work, workers=2)
        ossl, ossl_port = start_openssl_ocsp(home, index, multi=2)
        two = {"twcactl": OcspTarget("twcactl serve --workers 2", serve.http_port, "/ocsp", "/ocsp/"),
               "listener": OcspTarget("twcactl serve --workers 2 --ocsp-listen", serve.ocsp_port, "/ocsp",
                                      "/ocsp/"),
               "openssl": OcspTarget("openssl ocsp -multi 2", ossl_port, "/", "/")}
        reqs = ocsp_requests(issuer_der, [(e if isinstance(e, int) else e.serial) for e in expected])
        workers2: dict[str, Any] = {}
        for who in ("twcactl", "listener", "openssl"):
            drive(two[who], reqs[:200], concurrency=sizes.concurrency)
            r = drive(two[who], reqs, concurrency=sizes.concurrency)
            workers2[who] = {"rate": r.rate, "p50_ms": _pct(r.latencies, 0.5) * 1000,
                             "p99_ms": _pct(r.latencies, 0.99) * 1000, "errors": r.errors}
        workers2["ratio"] = workers2["twcactl"]["rate"] / workers2["openssl"]["rate"]
        workers2["listener_ratio"] = workers2["listener"]["rate"] / workers2["openssl"]["rate"]
        out["workers2"] = workers2
    finally:
        stop(serve.proc)
        if ossl is not None:
            stop(ossl)
    for who, rs in results.items():
        lat = [x for r in rs for x in r.latencies]
        out[who] = {"rate": median([r.rate for r in rs]), "rates": [r.rate for r in rs],
                    "p50_ms": _pct(lat, 0.5) * 1000, "p99_ms": _pct(lat, 0.99) * 1000,
                    "errors": sum(r.errors for r in rs), "reconnects": sum(r.reconnects for r in rs),
                    "server_cpu_us_per_answer": median(cpu_us[who]) if cpu_us.get(who) else None,
                    "verified": checks.get(who)}
    tw_, os_, li_ = out["twcactl"], out["openssl"], out["listener"]
    listen = Figure(
        key="serve.ocsp_listen_rate",
        label=f"OCSP responses/s, serve --ocsp-listen, {len(revoked):,} revoked, {sizes.concurrency} conns",
        unit="responses/s", value=li_["rate"], peer_name="openssl ocsp -port", peer_value=os_["rate"],
        target=Target("ratio_min", 1.0), samples=li_["rates"], peer_samples=os_["rates"],
        note=(f"p50/p99 {li_['p50_ms']:.2f}/{li_['p99_ms']:.2f} ms; answers produced ahead, served by the "
              f"OCSP-only listener; server CPU per answer {li_['server_cpu_us_per_answer'] or 0:.0f} us "
              f"(--http-listen {tw_['server_cpu_us_per_answer'] or 0:.0f} us, openssl "
              f"{os_['server_cpu_us_per_answer'] or 0:.0f} us); 2 processes: {out['workers2']['listener_ratio']:.2f}x"))
    p99 = Figure(
        key="serve.ocsp_listen_p99_ms", label="OCSP p99 latency, serve --ocsp-listen (client side)", unit="ms",
        value=li_["p99_ms"], peer_name="openssl ocsp -port p99", peer_value=os_["p99_ms"],
        target=Target("value_max", 2.0), note="every request of the counted rounds, measured by the load generator")
    out["figures"] = {"listen": listen, "p99": p99}
    figure = Figure(
        key="serve.ocsp_rate", label=f"OCSP responses/s, {len(revoked):,} revoked, {sizes.concurrency} conns",
        unit="responses/s", value=tw_["rate"], peer_name="openssl ocsp -port", peer_value=os_["rate"],
        target=Target("ratio_min", 1.0), samples=tw_["rates"], peer_samples=os_["rates"],
        note=(f"--http-listen (uvicorn + ASGI) over answers produced ahead; "
              f"p50/p99 twcactl {tw_['p50_ms']:.2f}/{tw_['p99_ms']:.2f} ms, openssl {os_['p50_ms']:.2f}/"
              f"{os_['p99_ms']:.2f} ms; one process each (openssl ocsp answers one request at a time); "
              f"2 processes: {out['workers2']['ratio']:.2f}x"))
    return figure, out


# ---------------------------------------------------------------- finalize in-process, on one CPU

def _acme_csr(names: Sequence[str], key: Any) -> bytes:
    """A certbot-like CSR (empty subject, the names as DNS SANs), DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.DER)


def finalize_worker(home: Path, runs: int) -> dict[str, Any]:
    """Time ``authority.acme.finalize`` (policy, books, signing, records, log) on ``runs`` ready orders, pinned
    to one CPU; and the raw signature of the same kind of leaf with the same CA key.  Milliseconds."""
    import josepy
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from twcactl.authority import acme as core
    from twcactl.authority.home import load_ca_key
    from twcactl.store import Store

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    store = Store.open(home)
    grant = core.create_eab(store, ACCOUNT, operator=OPERATOR)
    jwk = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    account = core.new_account(store, jwk_json=jwk.json_dumps(), kid=grant.kid, contact=[],
                               thumbprint=base64.urlsafe_b64encode(jwk.thumbprint()).rstrip(b"=").decode())
    key = ec.generate_private_key(ec.SECP256R1())
    ready = []
    for i in range(runs + 3):
        name = f"fin{i:05d}-{os.getpid()}.{DOMAIN}"
        view = core.new_order(store, account, [("dns", name)])
        for authz in view.authzs:
            chall = next(c for c in store.acme.challenges_of(authz.id) if c.type == "http-01")
            core.respond_challenge(store, account, chall.id, lambda *_a: None)
        ready.append((view.order.id, _acme_csr([name], key)))
    times, cpu = [], []
    for i, (order_id, csr_der) in enumerate(ready):
        t0, c0 = time.perf_counter(), time.thread_time()
        view = core.finalize(store, account, order_id, csr_der, passphrase=lambda: CA_PASSPHRASE)
        if i >= 3:  # the first few warm the caches up
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
        if view.order.status != "valid":
            raise BenchError(f"finalize left the order {view.order.status}")
    ca = store.cas.issuing()
    ca_cert, ca_key = ca.certificate(), load_ca_key(ca, CA_PASSPHRASE)
    csr = x509.load_der_x509_csr(ready[0][1])
    raw = []
    now = dt.datetime.now(dt.UTC)
    for _ in range(max(20, runs)):
        t0 = time.perf_counter()
        (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
         .public_key(csr.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, critical=True)
         .sign(ca_key, hashes.SHA256()))
        raw.append((time.perf_counter() - t0) * 1000)
    store.close()
    return {"finalize_ms": times, "finalize_cpu_ms": cpu, "raw_sign_ms": raw, "cpus": sorted(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else None}


def bench_finalize(home: Path, sizes: Sizes) -> tuple[Figure, dict[str, Any]]:
    """``serve.finalize_ms`` from :func:`finalize_worker` in its own process (pinned to one CPU)."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--finalize-worker", str(home),
                           str(sizes.finalize_runs)], capture_output=True, text=True, env=clean_env(), check=False)
    if proc.returncode != 0:
        raise BenchError(f"finalize worker exited {proc.returncode}: {proc.stderr[-2000:]}")
    doc = json.loads(proc.stdout)
    fin, raw = doc["finalize_ms"], doc["raw_sign_ms"]
    out = {"runs": len(fin), "median_ms": median(fin), "p99_ms": _pct(fin, 0.99), "raw_sign_median_ms": median(raw),
           "cpu_median_ms": median(doc["finalize_cpu_ms"]), "cpus": doc["cpus"], "target_ms": FINALIZE_TARGET_MS}
    figure = Figure(key="serve.finalize_ms", label="ACME finalize path per certificate (one CPU)", unit="ms",
                    value=out["median_ms"], peer_name="raw leaf signing (cryptography)", peer_value=median(raw),
                    target=Target("value_max", FINALIZE_TARGET_MS), samples=fin,
                    note=(f"in-process authority.acme.finalize on ready orders, pinned to CPU {doc['cpus']}; "
                          f"p99 {out['p99_ms']:.2f} ms; CPU {out['cpu_median_ms']:.2f} ms (the rest: three "
                          "commits, each an fsync, synchronous=FULL); the peer is one CertificateBuilder.sign "
                          "with the same RSA-2048 CA key"))
    return figure, out


# ---------------------------------------------------------------- ACME end to end, 8 clients

class _TokenDir(TokenServer):
    """The http-01 responder: ``/.well-known/acme-challenge/TOKEN`` answers the file TOKEN of a directory the
    client processes write into."""

    def __init__(self, port: int, directory: Path) -> None:
        self.directory = directory
        super().__init__(port)

    def body_for(self, token: str) -> bytes:
        path = self.directory / token
        return path.read_bytes() if token.isascii() and "." not in token and path.is_file() else b""


#: The start line of the client processes (inherited at the fork: a Barrier cannot travel through a Pool's queue).
_GATE: Any = None


def _acme_client(args: tuple[str, str, str, str, int, int]) -> dict[str, Any]:
    """One client process: register with its EAB key, wait for the start, then issue ``count`` certificates
    (newOrder, http-01, finalize, download), timing each and every HTTP exchange."""
    directory_url, kid, hmac, tokens, index, count = args
    gate = _GATE
    import josepy
    from acme import client as acme_client
    from acme import messages
    from cryptography.hazmat.primitives.asymmetric import ec

    key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = acme_client.ClientNetwork(key, alg=josepy.ES256, user_agent="twcactl-bench")
    exchanges: list[tuple[float, float]] = []
    send = net._send_request

    def timed(method: str, url: str, *a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        response = send(method, url, *a, **kw)
        spent = time.perf_counter() - t0
        header = response.headers.get("server-timing", "")
        server_ms = float(header.split("dur=", 1)[1].split(",")[0]) if "dur=" in header else float("nan")
        exchanges.append((spent, server_ms / 1000))
        return response

    net._send_request = timed  # type: ignore[method-assign]
    directory = acme_client.ClientV2.get_directory(directory_url, net)
    client = acme_client.ClientV2(directory, net)
    binding = messages.ExternalAccountBinding.from_data(key.public_key(), kid, hmac, directory)
    client.new_account(messages.NewRegistration.from_data(email=f"ops@{DOMAIN}", terms_of_service_agreed=True,
                                                          external_account_binding=binding))
    cert_key = ec.generate_private_key(ec.SECP256R1())
    csrs = [base64.b64encode(_acme_csr([f"c{index}-{i}-{os.getpid()}.{DOMAIN}"], cert_key)) for i in range(count)]
    gate.wait()
    exchanges.clear()
    start = time.monotonic()
    latencies = []
    for csr_b64 in csrs:
        t0 = time.perf_counter()
        pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + csr_b64 + b"\n-----END CERTIFICATE REQUEST-----\n"
        orderr = client.new_order(pem)
        for authzr in orderr.authorizations:
            challb = next(c for c in authzr.body.challenges if c.chall.typ == "http-01")
            response, validation = challb.response_and_validation(key)
            (Path(tokens) / challb.chall.encode("token")).write_text(validation)
            client.answer_challenge(challb, response)
        for authzr in orderr.authorizations:  # validated beside the request (issue 24): poll, as clients do
            for _ in range(200):
                authzr, _response = client.poll(authzr)
                if authzr.body.status != messages.STATUS_PENDING:
                    break
                time.sleep(0.02)
        orderr = client.begin_finalization(orderr)
        if orderr.body.status != messages.STATUS_VALID:
            raise BenchError(f"order {orderr.uri} is {orderr.body.status}")
        chain = client._post_as_get(orderr.body.certificate).text
        if "BEGIN CERTIFICATE" not in chain:
            raise BenchError("no certificate downloaded")
        latencies.append(time.perf_counter() - t0)
    end = time.monotonic()
    return {"start": start, "end": end, "latencies": latencies, "client_s": sum(e[0] for e in exchanges),
            "server_s": sum(e[1] for e in exchanges if e[1] == e[1]), "requests": len(exchanges)}


def bench_acme(home: Path, work: Path, sizes: Sizes) -> tuple[Figure, dict[str, Any]]:
    """``serve.acme_rate``: 8 ACME clients against the server, then the CLI with the same concurrency."""
    n = sizes.acme_clients
    tokens = work / "tokens"
    tokens.mkdir(exist_ok=True)
    http01_port = free_port()
    responder_http = _TokenDir(http01_port, tokens)
    global _GATE
    ctx = multiprocessing.get_context("fork")
    _GATE = gate = ctx.Barrier(n + 1)
    serve = start_serve(home, work, http01_port=http01_port)
    env_before = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(home / "ca" / "root.cer")  # the clients trust the CA's root
    try:
        grants = [json.loads(tw(home, "acme", "eab", ACCOUNT, "--json").stdout) for _ in range(n)]
        with ctx.Pool(n) as pool:
            pending = pool.map_async(_acme_client, [(serve.directory, g["kid"], g["hmac"], str(tokens), k,
                                                     sizes.acme_per_client) for k, g in enumerate(grants)])
            try:
                gate.wait(timeout=120)
            except threading.BrokenBarrierError:
                pending.get(timeout=10)  # a client's own error, if it failed before the start
                raise
            results = pending.get(timeout=600)
    finally:
        if env_before is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = env_before
        stop(serve.proc)
        responder_http.close()
    total = n * sizes.acme_per_client
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    lat = [x for r in results for x in r["latencies"]]
    client_s, server_s = sum(r["client_s"] for r in results), sum(r["server_s"] for r in results)
    out: dict[str, Any] = {
        "clients": n, "certificates": total, "seconds": wall, "rate": total / wall,
        "p50_ms": _pct(lat, 0.5) * 1000, "p99_ms": _pct(lat, 0.99) * 1000,
        "requests": sum(r["requests"] for r in results), "server_share": server_s / client_s if client_s else None,
        "server_ms_per_request": server_s / max(1, sum(r["requests"] for r in results)) * 1000,
    }
    out["cli"] = bench_cli_peer(home, work, total, n)
    figure = Figure(
        key="serve.acme_rate", label=f"ACME end-to-end issuance, {n} clients", unit="certs/s", value=out["rate"],
        peer_name=f"twcactl cert issue x{n} processes", peer_value=out["cli"]["rate"],
        note=(f"p50/p99 per certificate {out['p50_ms']:.0f}/{out['p99_ms']:.0f} ms (CLI {out['cli']['p50_ms']:.0f}/"
              f"{out['cli']['p99_ms']:.0f} ms); server share of the clients' request time "
              f"{(out['server_share'] or 0) * 100:.0f}%; peer: the CLI issuing as many certificates with the "
              "same concurrency, one process each (what a pipeline does without the server)"))
    return figure, out


def bench_cli_peer(home: Path, work: Path, count: int, concurrency: int) -> dict[str, Any]:
    """``count`` ``twcactl cert issue`` processes, ``concurrency`` at a time: rate and per-process latency."""
    from concurrent.futures import ThreadPoolExecutor

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import (
        CertificateSigningRequestBuilder,
        DNSName,
        Name,
        NameAttribute,
        NameOID,
        SubjectAlternativeName,
    )

    key = ec.generate_private_key(ec.SECP256R1())
    csr_dir = work / "cli-csrs"
    csr_dir.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        cn = f"cli{i:05d}.{DOMAIN}"
        subject = Name([NameAttribute(NameOID.COUNTRY_NAME, "TW"), NameAttribute(NameOID.STATE_OR_PROVINCE_NAME,
                        "Taiwan"), NameAttribute(NameOID.LOCALITY_NAME, "Taipei"),
                        NameAttribute(NameOID.ORGANIZATION_NAME, "TWCA"), NameAttribute(NameOID.COMMON_NAME, cn)])
        csr = (CertificateSigningRequestBuilder().subject_name(subject)
               .add_extension(SubjectAlternativeName([DNSName(cn)]), critical=False).sign(key, hashes.SHA256()))
        path = csr_dir / f"{i:05d}.csr"
        path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        paths.append(path)

    def one(path: Path) -> float:
        t0 = time.perf_counter()
        tw(home, "cert", "issue", str(path), "--account", ACCOUNT, "--out", str(path.with_suffix(".cer")))
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        lat = list(pool.map(one, paths))
    wall = time.perf_counter() - t0
    return {"certificates": count, "seconds": wall, "rate": count / wall, "p50_ms": _pct(lat, 0.5) * 1000,
            "p99_ms": _pct(lat, 0.99) * 1000}


# ---------------------------------------------------------------- the whole set

def figures(quick: bool, work: Path) -> tuple[list[Figure], dict[str, Any]]:
    """The five ``serve.*`` figures and their context (module docstring); ``work`` holds the homes."""
    sizes = QUICK if quick else FULL
    rng = random.Random(18)
    started = time.monotonic()
    home = init_home(work / "home", quota=10 * (sizes.acme_clients * sizes.acme_per_client + sizes.finalize_runs) + 100)
    t0 = time.monotonic()
    revoked, good = mint_records(home, sizes.revoked, sizes.good)
    tw(home, "crl")  # the CRL lists them all, so the home is consistent (ca check)
    log(f"minted {len(revoked):,} revoked and {len(good):,} good certificates in {time.monotonic() - t0:.1f} s")
    context: dict[str, Any] = {"mode": "quick" if quick else "full", "sizes": sizes.__dict__,
                               "loadavg_before": os.getloadavg()}
    ocsp_fig, context["ocsp"] = bench_ocsp(home, work, sizes, revoked, good, rng)
    extra = context["ocsp"].pop("figures")
    log(f"OCSP: {ocsp_fig.value:,.0f}/s (--ocsp-listen {extra['listen'].value:,.0f}/s, p99 "
        f"{extra['p99'].value:.2f} ms) against {ocsp_fig.peer_value:,.0f}/s")
    fin_fig, context["finalize"] = bench_finalize(home, sizes)
    log(f"finalize: {fin_fig.value:.2f} ms (raw signing {fin_fig.peer_value:.2f} ms)")
    acme_fig, context["acme"] = bench_acme(home, work, sizes)
    log(f"ACME: {acme_fig.value:.1f} certs/s against the CLI's {acme_fig.peer_value:.1f}/s")
    check = tw(home, "--json", "ca", "check", "--no-repair", check=False)
    context["ca_check"] = {"exit": check.returncode, "ok": json.loads(check.stdout).get("ok") if check.stdout else None,
                           "findings": (json.loads(check.stdout).get("findings") or [])[:5] if check.stdout else None}
    context["loadavg_after"] = os.getloadavg()
    context["seconds"] = time.monotonic() - started
    return [ocsp_fig, extra["listen"], extra["p99"], acme_fig, fin_fig], context


def main(argv: Sequence[str] | None = None) -> int:
    """Print the figures and their context as JSON (``--quick``: the small sizes, under 90 s)."""
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 revoked entries, 8 certificates (CI)")
    parser.add_argument("--work", type=Path, help="keep the homes here (default: a temporary directory)")
    parser.add_argument("--finalize-worker", nargs=2, metavar=("HOME", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.finalize_worker:
        print(json.dumps(finalize_worker(Path(args.finalize_worker[0]), int(args.finalize_worker[1]))))
        return 0
    import shutil
    import tempfile

    work = args.work or Path(tempfile.mkdtemp(prefix="twcactl-serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        figs, context = figures(args.quick, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"figures": [f.to_json() for f in figs], "context": context}, indent=2, default=str))
    return 0 if context["ca_check"]["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
