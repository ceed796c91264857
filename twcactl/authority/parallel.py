"""Batches on every core (issue 29): a batch's independent requests checked and signed by worker processes.

cryptography's RSA and EC signing holds the GIL (two threads sign slower than one), so the pure, store-free
work of a batch (parsing, verifying and judging each CSR; building and signing each certificate) is spread
over a pool of processes, while this process stays the one writer: it takes the results in request order,
does everything the store decides (blocked keys were read before; balance, records, ledger and hash-chained
log in ONE transaction, as before) and writes the files.  The outcome is the one of a run in one process.

How the work reaches the workers: the pool is forked (``multiprocessing`` fork context) after everything a
worker needs is in memory: the requests, the account's policy, the settings, the blocked keys, and for the
signing pool the unlocked CA key.  A task is only an index; a worker sends back a certificate's DER (or a
checked CSR's DER, or the error that refused it).  The CA key is never pickled, sent or written anywhere.
Workers never touch the store's connection (no transaction of the parent is open when they are forked) and
end with ``os._exit``, as multiprocessing's workers do, so they close nothing of the parent's.  A worker
ignores SIGINT (the parent handles Ctrl-C and ends the pool) and dies with its parent
(``PR_SET_PDEATHSIG``): a parent killed mid-batch leaves no worker behind and nothing recorded, since the
batch's one transaction commits only after every result came back.  A worker that dies fails the batch
(exit 70), never hangs it.  The collector's objects are frozen (``gc.freeze``) while a pool runs, as the
``gc`` documentation advises before a fork: a worker's collections would otherwise write to, and so copy,
pages the fork shares (memory; no difference in time was measured).

Two ways of using the pools: :func:`checked_and_signed` checks and signs each request in one task while
this process records the results as they come back, inside a transaction opened once the workers exist
(``cert issue DIR`` when nothing between checking and signing reads the store); :func:`checked` then
:func:`signed` run two pools with the store read between them (public-trust checks, a balance that may not
pay for every request), and the transaction starts after both ended.

In one process, exactly as before: ``jobs`` 1, a batch smaller than :data:`MIN_PER_WORKER` requests per
worker, or a CA key on a PKCS#11 token (a token session must not cross a fork; PKCS#11 v2.40 §6.7.7).
OpenSSL reseeds its random generator in a forked child, so ECDSA nonces and serial numbers (``os.urandom``)
differ between workers.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import pickle
import signal
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)

from twcactl.errors import InternalError, TwcaError
from twcactl.store.records import BlockedKey

__all__ = ["MIN_PER_WORKER", "Signed", "checked", "checked_and_signed", "default_jobs", "in_one_process", "new_keys",
           "ordered", "signed", "workers_for"]

#: The fewest requests per worker for which a pool is worth its start: forking the workers, their pipes
#: and ending them cost 15-100 ms (quiet or loaded machine), what 30-150 certificates' signing does.  A
#: smaller batch gets fewer workers, or none (then it runs in this process).
MIN_PER_WORKER = 16
#: The largest number of requests a worker takes at a time (``map`` chunks): results come back in order,
#: so smaller chunks let this process write sooner and keep a progress bar moving.
MAX_CHUNK = 32

_R = TypeVar("_R")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: ``(work, context)`` of the pool being forked: inherited by the workers, never pickled.
_TASK: tuple[Callable[[Any, int], Any], Any] | None = None
#: The module of cryptography's own key classes (Rust): keys held in this process's memory.
_IN_MEMORY_KEYS = "cryptography.hazmat.bindings."


def default_jobs() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` where that is missing)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def in_one_process(signer: object) -> bool:
    """True when signing with ``signer`` (lifecycle's ``_Signer``: ``.ca``, ``.key``) must stay in this
    process: a CA whose key is on a PKCS#11 token (``ca.key_uri``), or any key that is not one of
    cryptography's own in-memory keys (a token key object subclasses cryptography's key classes), since a
    token session must not cross a fork (PKCS#11 v2.40 §6.7.7)."""
    if getattr(getattr(signer, "ca", None), "key_uri", None) is not None:
        return True
    return not type(getattr(signer, "key", None)).__module__.startswith(_IN_MEMORY_KEYS)


def _workers(jobs: int, count: int, per_worker: int = MIN_PER_WORKER) -> int:
    """How many workers a batch of ``count`` requests gets for ``jobs`` (below 2: none, run in this process)."""
    return min(jobs, count // per_worker)


def workers_for(jobs: int, count: int) -> int:
    """How many worker processes a batch of ``count`` requests gets with ``jobs`` (below 2: none)."""
    return _workers(jobs, count)


def _start(parent: int) -> None:
    """Worker initializer: leave Ctrl-C to the parent, and die with it (Linux ``PR_SET_PDEATHSIG``), so a
    parent killed mid-batch leaves no worker behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker ends when its task pipe is closed
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def _run(index: int) -> Any:
    """One task in a worker: the inherited work function on request ``index``."""
    assert _TASK is not None
    work, context = _TASK
    return work(context, index)


def ordered(work: Callable[[Any, int], _R], context: Any, count: int, *, jobs: int,
            per_worker: int = MIN_PER_WORKER) -> Generator[_R, None, None]:
    """``work(context, i)`` for ``i`` in ``range(count)``, yielded in that order, computed by a pool of
    forked workers (see the module docstring) or, with fewer than two workers' worth of requests, here.

    ``work`` must be store-free and return something picklable; ``context`` is inherited, not sent.  An
    exception ``work`` raises in a worker is raised here (a bug: twcactl's refusals are returned as values).
    The pool ends when the iteration ends, is closed, or its consumer's frame unwinds with an exception.

    Raises:
        InternalError: a worker died (killed by a signal, or out of memory; exit 70); what it was working
            on was not recorded (``cert issue``: nothing of the batch).
    """
    global _TASK
    workers = _workers(jobs, count, per_worker)
    if workers < 2 or _TASK is not None:  # a small batch, or inside a worker: here
        for index in range(count):
            yield work(context, index)
        return
    import multiprocessing  # only for a pool: not on every command's start-up
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    _TASK = (work, context)  # the workers are forked with it (all of them at the first map, fork context)
    gc.freeze()  # the inherited objects out of the collector's reach: its passes would copy their pages (memory)
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_start,
                                   initargs=(os.getpid(),))
        try:
            chunk = max(1, min(MAX_CHUNK, count // (workers * 8)))
            yield from pool.map(_run, range(count), chunksize=chunk)
        except BrokenProcessPool as exc:
            raise InternalError("a worker process ended unexpectedly (killed, or out of memory); what it was "
                                "working on was not recorded.", hint="run the command again, or with --jobs 1"
                                ) from exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        _TASK = None
        gc.unfreeze()


def _portable(error: TwcaError) -> TwcaError:
    """``error`` as it can travel back from a worker: itself when it pickles, else a TwcaError with the same
    message, hint, details, exit code and kind (an error class whose constructor needs more than the message
    would not unpickle, and the pool would take that for a dead worker)."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - whatever pickling raises, the error goes back in a plain form
        plain = TwcaError(error.message, hint=error.hint, details=error.details)
        plain.exit_code, plain.kind = error.exit_code, error.kind
        return plain
    return error


# ----- checking requests -----

@dataclasses.dataclass(frozen=True)
class _BlockedKeys:
    """The home's blocked keys, read once before the fork (``store.keys.blocked`` for the workers)."""

    entries: dict[str, BlockedKey]

    def blocked(self, spki_sha256: str) -> BlockedKey | None:
        return self.entries.get(spki_sha256)


class CheckSnapshot:
    """What ``check_csr`` reads from the store, read before the fork: the settings and the blocked keys.

    It answers ``settings()`` and ``keys.blocked(fingerprint)`` as the store does, so the workers run
    :func:`twcactl.authority.lifecycle.check_csr` itself, unchanged, without a connection.
    """

    def __init__(self, store: Any) -> None:
        self._settings = store.settings()
        self.keys = _BlockedKeys({k.spki_sha256: k for k in store.keys.all_blocked()})

    def settings(self) -> Any:
        """The home's settings as they were when the batch started."""
        return self._settings


@dataclasses.dataclass(frozen=True)
class _CheckJob:
    check: Callable[..., x509.CertificateSigningRequest]
    requests: Sequence[Any]
    profiles: Sequence[str]
    policy: Any
    store: Any


def _check_one(job: _CheckJob, index: int) -> tuple[bytes | None, TwcaError | None]:
    try:
        csr = job.check(job.requests[index], job.policy, job.profiles[index], store=job.store)
    except TwcaError as exc:
        return None, _portable(exc)
    return csr.public_bytes(Encoding.DER), None


def checked(check: Callable[..., x509.CertificateSigningRequest], store: Any, requests: Sequence[Any],
            policy: Any, profiles: Sequence[str], *, jobs: int
            ) -> Iterator[tuple[Any, Callable[[], x509.CertificateSigningRequest]]]:
    """``(request, outcome)`` per request, in order: calling ``outcome()`` returns the checked CSR or raises
    the error that refused it, exactly as ``check(request, policy, profile, store=store)`` would here.

    With a pool, ``check`` runs in the workers against a :class:`CheckSnapshot` of the store; the CSR comes
    back as DER and is parsed again here (cryptography parses lazily: only its outer structure).
    """
    if _workers(jobs, len(requests)) < 2:
        for request, profile in zip(requests, profiles):
            yield request, _here(check, request, policy, profile, store)
        return
    job = _CheckJob(check, requests, profiles, policy, CheckSnapshot(store))
    for (der, error), request in zip(ordered(_check_one, job, len(requests), jobs=jobs), requests):
        yield request, _outcome(der, error)


def _here(check: Callable[..., x509.CertificateSigningRequest], request: Any, policy: Any, profile: str,
          store: Any) -> Callable[[], x509.CertificateSigningRequest]:
    return lambda: check(request, policy, profile, store=store)


def _outcome(der: bytes | None, error: TwcaError | None) -> Callable[[], x509.CertificateSigningRequest]:
    def outcome() -> x509.CertificateSigningRequest:
        if error is not None:
            raise error
        assert der is not None
        return x509.load_der_x509_csr(der)
    return outcome


# ----- building and signing certificates -----

@dataclasses.dataclass(frozen=True)
class _SignJob:
    build: Callable[..., Any]
    signer: Any
    calls: Sequence[dict[str, Any]]


def _sign_one(job: _SignJob, index: int) -> Any:
    built = job.build(job.signer, **job.calls[index])
    return dataclasses.replace(built, cert=None)  # the DER travels; cryptography's objects do not pickle


def signed(build: Callable[..., Any], signer: Any, calls: Sequence[dict[str, Any]], *, jobs: int) -> Iterator[Any]:
    """``build(signer, **call)`` per call, in order: lifecycle's ``_Built`` (a signed certificate and what
    its record needs).

    With a pool (not for a key on a token: :func:`in_one_process`), the workers build and sign; each result
    comes back without its certificate object and gets it again here from its DER (``der`` is required).
    """
    if in_one_process(signer):
        jobs = 1
    if _workers(jobs, len(calls)) < 2:
        for call in calls:
            yield build(signer, **call)
        return
    for built in ordered(_sign_one, _SignJob(build, signer, calls), len(calls), jobs=jobs):
        yield dataclasses.replace(built, cert=x509.load_der_x509_certificate(cast(bytes, built.der)))


# ----- checking and signing in one pass (cert issue DIR) -----

@dataclasses.dataclass(frozen=True)
class Signed:
    """One request's outcome from :func:`checked_and_signed`: exactly one of ``built`` (lifecycle's
    ``_Built``, everything its record, log entry and file need computed in the worker), ``refused`` (the
    check refused the request) or ``failed`` (building or signing it raised)."""

    built: Any = None
    refused: TwcaError | None = None
    failed: TwcaError | None = None


@dataclasses.dataclass(frozen=True)
class _PassJob:
    check: Callable[..., x509.CertificateSigningRequest]
    build: Callable[..., Any]
    finish: Callable[[Any], Any]
    store: Any
    signer: Any
    requests: Sequence[Any]
    profiles: Sequence[str]
    policy: Any
    calls: Sequence[dict[str, Any]]


def _pass_one(job: _PassJob, index: int) -> Signed:
    try:
        csr = job.check(job.requests[index], job.policy, job.profiles[index], store=job.store)
    except TwcaError as exc:
        return Signed(refused=_portable(exc))
    try:
        return Signed(built=job.finish(job.build(job.signer, csr=csr, **job.calls[index])))
    except TwcaError as exc:
        return Signed(failed=_portable(exc))


def checked_and_signed(check: Callable[..., x509.CertificateSigningRequest], build: Callable[..., Any],
                       finish: Callable[[Any], Any], store: Any, signer: Any, requests: Sequence[Any], policy: Any,
                       profiles: Sequence[str], calls: Sequence[dict[str, Any]], *, jobs: int
                       ) -> Generator[Signed, None, None]:
    """Per request, in order: ``check(request, policy, profile, store=snapshot)``, then
    ``finish(build(signer, csr=checked, **call))``, as one task of one pool (:func:`ordered`), so a batch
    forks once and this process gets back finished results while the workers go on.

    For a batch whose every request can be signed once checked (no check that reads the store between
    the two, enough balance for all, a key in memory: the caller decides); ``finish`` turns the built
    certificate into what travels back (lifecycle: the DER, PEM, serial, key fingerprint and dates, no
    cryptography object).  The first result is asked for before this returns, so the workers exist
    (forked without any transaction of this process open) once it has: the caller may then open one.
    """
    job = _PassJob(check, build, finish, CheckSnapshot(store), signer, requests, profiles, policy, calls)
    results = ordered(_pass_one, job, len(requests), jobs=jobs)
    first = next(results, None)

    def rest() -> Generator[Signed, None, None]:
        try:
            if first is not None:
                yield first
            yield from results
        finally:
            results.close()
    return rest()


# ----- new keys (cert renew-due --new-key) -----

def _new_key(olds: Sequence[bytes], index: int) -> tuple[bytes | None, TwcaError | None]:
    from twcactl import pfx  # looked up at run time: the one place keys like an old one are made

    try:
        key = pfx.new_key_like(x509.load_der_x509_certificate(olds[index]).public_key())
    except TwcaError as exc:
        return None, _portable(exc)
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()), None


def new_keys(olds: Sequence[bytes], *, jobs: int) -> Iterator[Callable[[], Any]]:
    """Per old certificate (DER), in order: a call returning a fresh key of its key's type and size
    (:func:`twcactl.pfx.new_key_like`), or raising what that raises.

    Key generation (RSA: tens to hundreds of milliseconds a key) is the bulk of ``cert renew-due
    --new-key``; with a pool the keys are made ahead by the workers while this process renews, each
    coming back as unencrypted PKCS#8 DER over the pool's pipe (the same user's processes; the key is
    written unencrypted to ``key.pem`` anyway).  Without one, each call makes its key here.
    """
    if _workers(jobs, len(olds), 2) < 2:
        for index in range(len(olds)):
            yield _key_here(olds, index)
        return
    for made, error in ordered(_new_key, olds, len(olds), jobs=jobs, per_worker=2):
        yield _key_outcome(made, error)


def _key_here(olds: Sequence[bytes], index: int) -> Callable[[], Any]:
    def make() -> Any:
        from twcactl import pfx

        return pfx.new_key_like(x509.load_der_x509_certificate(olds[index]).public_key())
    return make


def _key_outcome(der: bytes | None, error: TwcaError | None) -> Callable[[], Any]:
    def outcome() -> Any:
        if error is not None:
            raise error
        assert der is not None
        return load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)  # made by us just now
    return outcome
