"""OCSP answers produced ahead and served as stored bytes (issue 29; RFC 5019 §2.2 and §6, RFC 6960 §2.4).

Large CAs sign their OCSP answers in advance and serve them as bytes.  :class:`OcspAnswers` keeps, in each
server process, a map from a request's CertID (hash algorithm, issuerNameHash, issuerKeyHash, serial) to the
signed DER answer with its thisUpdate and nextUpdate:

* produced ahead: at start for every certificate of the unlocked CAs whose notAfter has not passed
  (:meth:`OcspAnswers.preproduce`, SHA-1 CertIDs, the RFC 5019 profile), again when a certificate's record
  changes (issue, revoke, hold, release: :meth:`OcspAnswers.sync`), when the delegated signer is replaced
  (rotation: an answer it did not sign is never served, and all are signed again in the background), and
  before an answer is :data:`~twcactl.authority.responder.OCSP_REUSE` old (:meth:`OcspAnswers.refresh_due`);
* fresh: before every answer :meth:`OcspAnswers.sync` asks the store whether another connection committed
  (SQLite's ``PRAGMA data_version`` with this connection's own ``total_changes()``: about 4 µs); only then,
  and on PostgreSQL always (one indexed query), it reads the activity-log entries after the last one seen.
  Every change of a certificate's record is logged in the same transaction with its serial, and log appends
  are serialised (SQLite ``BEGIN IMMEDIATE``, PostgreSQL's advisory write lock), so the entries after a
  ``seq`` are exactly the certificates changed since: their answers are signed again before the request is
  answered, and a revocation is visible on the very next request, as before;
* the same content as before: the status rule :func:`~twcactl.authority.responder.ocsp_status`, the
  builder :func:`~twcactl.pkix.ocsp.build_response`, thisUpdate the signing time, nextUpdate
  ``min(crl_days, 7)`` days later, the delegated signer; a request with a nonce, or for another issuer, is
  answered live by :func:`~twcactl.authority.responder.ocsp_answer` (the nonce echoed, never stored).
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import multiprocessing
import os
import threading
import time
import weakref
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as x509_ocsp

from twcactl.authority import responder
from twcactl.errors import NotFoundError
from twcactl.pkix.ocsp import OcspStatus, build_response, issuer_hashes, load_request
from twcactl.rules.times import utcnow
from twcactl.store import Store

#: Answers kept per server process (about 1.2 KB each with the delegated certificate); past it, an answer is
#: signed for the request and not kept.
OCSP_ANSWERS_MAX = 500_000
#: Request bytes remembered as the CertID they ask for (a repeated request is then not parsed again).
RAW_ALIASES = 200_000
#: Certificates changed at once whose answers are signed again at the next request; past it they are dropped
#: and signed when next asked for (a batch revocation does not hold one request for long).
EAGER_MAX = 256
#: Pre-production at start signs in this many processes at most (forked; the keys are already in memory)
#: when it has at least :data:`POOL_MIN` answers to sign.
POOL_MAX = 8
POOL_MIN = 2_000

_HASHES: dict[str, hashes.HashAlgorithm] = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(),
                                            "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}

CertIdKey = tuple[str, bytes, bytes, int]


class Answer:
    """One signed OCSP response and what it says.

    Attributes:
        der: the DER response.  this_update / next_update: its times (UTC).  status: the certificate's status
        it was signed for (None for an answer not kept).  ca_name: the CA answering.  delegate: the delegated
        signer it was signed by (None: the CA key).  fresh_until: ``time.time()`` after which it is signed
        again.  etag: a strong ETag of ``der``.  head: the HTTP layer's rendering of its fixed headers (bytes,
        filled by the server on first use).
    """

    __slots__ = ("der", "this_update", "next_update", "status", "ca_name", "delegate", "fresh_until", "etag",
                 "head")

    def __init__(self, der: bytes, this_update: dt.datetime, next_update: dt.datetime, *,
                 status: OcspStatus | None = None, ca_name: str = "", delegate: object = None,
                 fresh_until: float = 0.0) -> None:
        self.der = der
        self.this_update = this_update
        self.next_update = next_update
        self.status = status
        self.ca_name = ca_name
        self.delegate = delegate
        self.fresh_until = fresh_until
        self.etag = '"' + hashlib.sha256(der).hexdigest()[:32] + '"'
        self.head: bytes | None = None


class OcspAnswers:
    """The answers of one server process (module docstring).  Thread-safe: lookups take no lock, changes one.

    Attributes:
        signers: the unlocked CA keys and delegated signers.
        reuse: how long an answer is served after its thisUpdate (:data:`responder.OCSP_REUSE`).
        counts: ``served`` (stored bytes), ``produced`` (signed and kept), ``live`` (signed for one request),
            ``changed`` (certificates whose answers were dropped by a change).
    """

    def __init__(self, signers: responder.Signers, *, reuse: dt.timedelta = responder.OCSP_REUSE,
                 max_entries: int = OCSP_ANSWERS_MAX) -> None:
        self.signers = signers
        self.reuse = reuse
        self.max_entries = max_entries
        self.counts = {"served": 0, "produced": 0, "live": 0, "changed": 0}
        self._entries: dict[CertIdKey, Answer] = {}
        self._by_serial: dict[int, list[CertIdKey]] = {}
        self._raw: dict[bytes, CertIdKey] = {}
        self._issuers: dict[tuple[str, bytes, bytes], str] = {}
        self._issuer_algorithms: set[str] = set()
        self._due: collections.deque[tuple[float, CertIdKey]] = collections.deque()
        self._resign: collections.deque[CertIdKey] = collections.deque()  # signed by a replaced signer
        self._signers_seen: dict[str, object] = {}
        self._seq: int | None = None
        # per open store (connection): the change version it had when the log was last read through it
        self._versions: weakref.WeakKeyDictionary[Store, tuple[int, int]] = weakref.WeakKeyDictionary()
        self._dirty = True
        self._validity: dt.timedelta | None = None
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._entries)

    # ----- answering -----
    def reply(self, store: Store, data: bytes) -> Answer:
        """The answer to the DER OCSP request ``data``: stored bytes when its CertID has a fresh answer, else
        signed now (and kept unless the request carries a nonce or names another issuer).

        Raises:
            InputError: ``data`` is not an OCSP request (exit 3; the server answers malformedRequest).
        """
        self.sync(store)
        key = self._raw.get(data)
        if key is not None:
            found = self._entries.get(key)
            if found is not None and self._usable(found):
                self.counts["served"] += 1
                return found
        request = load_request(data)
        if responder.has_nonce(request):
            return self._live(store, data)
        algorithm = request.hash_algorithm
        ident = (algorithm.name, request.issuer_name_hash, request.issuer_key_hash)
        ca_name = self._issuer(ident, algorithm)
        if ca_name is None:
            return self._live(store, data)  # unauthorized: unsigned, nothing to keep
        key = (*ident, request.serial_number)
        if len(self._raw) >= RAW_ALIASES:
            self._raw.clear()
        self._raw[data] = key
        found = self._entries.get(key)
        if found is not None and self._usable(found):
            self.counts["served"] += 1
            return found
        with self._lock:
            status = responder.ocsp_status(store, request.serial_number, ca_name)
            return self._produce(store, key, ca_name, status)

    def _usable(self, answer: Answer) -> bool:
        return time.time() < answer.fresh_until and answer.delegate is self.signers.delegated.get(answer.ca_name)

    def _live(self, store: Store, data: bytes) -> Answer:
        der, _word, this_update, next_update = responder.ocsp_answer(store, data, self.signers)
        self.counts["live"] += 1
        return Answer(der, this_update, next_update)

    def _issuer(self, ident: tuple[str, bytes, bytes], algorithm: hashes.HashAlgorithm) -> str | None:
        if ident[0] not in self._issuer_algorithms:
            with self._lock:
                for name, (_ca, cert, _key) in self.signers.cas.items():
                    self._issuers[(ident[0], *issuer_hashes(cert, algorithm))] = name
                self._issuer_algorithms.add(ident[0])
        return self._issuers.get(ident)

    # ----- freshness -----
    def sync(self, store: Store) -> None:
        """Drop and sign again the answers of every certificate whose record changed since the last call
        (module docstring): a no-op of one cheap query when no other connection committed (SQLite)."""
        version = store.log.change_version()
        if version is not None and not self._dirty and self._versions.get(store) == version:
            return
        with self._lock:
            self._dirty = False
            if self._seq is None:
                self._seq = store.log.head_seq()
            changed = store.log.serials_since(self._seq)
            if changed:
                self._seq = changed[-1][0]
                self._changed(store, list(dict.fromkeys(serial for _seq, serial in changed)))
            if version is not None:
                self._versions[store] = version

    def _changed(self, store: Store, serials: Sequence[str]) -> None:
        self.counts["changed"] += len(serials)
        for i, text in enumerate(serials):
            try:
                serial = int(text, 16)
            except ValueError:
                continue  # an entry naming something else than a certificate serial
            keys = self._by_serial.pop(serial, [])
            for key in keys:
                self._entries.pop(key, None)
            if i >= EAGER_MAX:
                continue
            try:
                record = store.certificates.get(text)
            except NotFoundError:
                continue
            if record.ca_name not in self.signers.cas:
                continue
            if not keys:  # a new certificate: its RFC 5019 request (SHA-1 CertID)
                cert = self.signers.cas[record.ca_name][1]
                keys = [("sha1", *issuer_hashes(cert, _HASHES["sha1"]), serial)]
            status = responder.record_status(record.state, record.revoked_at, record.reason)
            for key in keys:
                self._produce(store, key, record.ca_name, status)

    def _produce(self, store: Store, key: CertIdKey, ca_name: str, status: OcspStatus) -> Answer:
        """Sign and keep the answer for ``key`` (under the lock)."""
        before = self.signers.delegated.get(ca_name)
        delegate = self.signers.responder_for(store, ca_name)
        if delegate is not before:
            self._dirty = True  # this connection wrote the new signer's record: read the log next time
        now = utcnow().replace(microsecond=0)
        validity = self._validity_for(store)
        der = _sign(self.signers, ca_name, key, status, now, validity)
        answer = Answer(der, now, now + validity, status=status, ca_name=ca_name, delegate=delegate,
                        fresh_until=now.timestamp() + self.reuse.total_seconds())
        self._keep(key, answer)
        return answer

    def _keep(self, key: CertIdKey, answer: Answer) -> None:
        if key not in self._entries:
            if len(self._entries) >= self.max_entries:
                return
            self._by_serial.setdefault(key[3], []).append(key)
        self._entries[key] = answer
        self._due.append((answer.fresh_until, key))
        self.counts["produced"] += 1

    def _validity_for(self, store: Store) -> dt.timedelta:
        if self._validity is None:  # as responder.ocsp_answer: the CRL's life, at most 7 days
            self._validity = dt.timedelta(days=min(store.settings().crl_days, 7))
        return self._validity

    def due(self) -> bool:
        """True when :meth:`refresh_due` has work: an answer past half its reuse time, or signed by a replaced
        signer (no store is read: an idle server asks this instead of the store)."""
        if self._resign or any(self._signers_seen.get(name) is not self.signers.delegated.get(name)
                               for name in self.signers.cas):
            return True
        return bool(self._due) and self._due[0][0] <= time.time() + self.reuse.total_seconds() / 2

    def refresh_due(self, store: Store, *, budget: int = 4) -> int:
        """Sign again, oldest first, at most ``budget`` kept answers that are past half their reuse time, so
        that requests find them fresh (RFC 5019 §6: answers renewed before they are stale).

        Returns:
            How many were signed.
        """
        self.sync(store)
        done = 0
        horizon = time.time() + self.reuse.total_seconds() / 2
        with self._lock:
            self._note_signers()
            while self._resign and done < budget:  # a replaced delegated signer (rotation): all of its CA's
                key = self._resign.popleft()
                current = self._entries.get(key)
                if current is None or current.status is None or self._usable(current):
                    continue
                self._produce(store, key, current.ca_name, current.status)
                done += 1
            while self._due and done < budget and self._due[0][0] <= horizon:
                fresh_until, key = self._due.popleft()
                current = self._entries.get(key)
                if current is None or current.fresh_until != fresh_until or current.status is None:
                    continue  # replaced or dropped since
                self._produce(store, key, current.ca_name, current.status)
                done += 1
        return done

    def _note_signers(self) -> None:
        """Queue every answer of a CA whose delegated signer was replaced since the last look (under the lock)."""
        for name in self.signers.cas:
            current = self.signers.delegated.get(name)
            if name in self._signers_seen and self._signers_seen[name] is not current:
                self._resign.extend(k for k, a in self._entries.items() if a.ca_name == name)
            self._signers_seen[name] = current

    # ----- ahead of time -----
    def preproduce(self, store: Store, *, processes: int | None = None) -> int:
        """Sign the answer of every certificate of the unlocked CAs whose notAfter has not passed (SHA-1
        CertIDs, RFC 5019 §2.1), in up to ``processes`` forked processes (default: the CPUs, at most
        :data:`POOL_MAX`; one below :data:`POOL_MIN` answers).

        Returns:
            How many answers were produced.
        """
        with self._lock:
            self._seq = store.log.head_seq()  # read first: whatever changes after it is read again by sync
            self._versions.clear()
            self._dirty = True
            for name in self.signers.cas:
                self.signers.responder_for(store, name)
            self._note_signers()
            now = utcnow().replace(microsecond=0)
            validity = self._validity_for(store)
            sha1 = {name: issuer_hashes(cert, _HASHES["sha1"]) for name, (_ca, cert, _key) in self.signers.cas.items()}
            jobs: list[tuple[str, CertIdKey, OcspStatus]] = []
            for row in store.certificates.ocsp_states(list(self.signers.cas), now):
                if len(jobs) + len(self._entries) >= self.max_entries:
                    break
                key = ("sha1", *sha1[row["ca_name"]], int(row["serial"], 16))
                jobs.append((row["ca_name"], key, responder.record_status(row["state"], row["revoked_at"],
                                                                          row["reason"])))
            ders = _sign_all(self.signers, jobs, now, validity, processes)
            fresh_until = now.timestamp() + self.reuse.total_seconds()
            for (ca_name, key, status), der in zip(jobs, ders):
                self._keep(key, Answer(der, now, now + validity, status=status, ca_name=ca_name,
                                       delegate=self.signers.delegated.get(ca_name), fresh_until=fresh_until))
            return len(jobs)


def answers_of(signers: responder.Signers) -> OcspAnswers:
    """The process's :class:`OcspAnswers` of ``signers`` (made on first use)."""
    if signers.answers is None:
        signers.answers = OcspAnswers(signers)
    answers: OcspAnswers = signers.answers
    return answers


def reply(store: Store, data: bytes, signers: responder.Signers) -> Answer:
    """:meth:`OcspAnswers.reply` of ``signers``' answers (the server's one call)."""
    return answers_of(signers).reply(store, data)


def _sign(signers: responder.Signers, ca_name: str, key: CertIdKey, status: OcspStatus, now: dt.datetime,
          validity: dt.timedelta) -> bytes:
    """The DER answer for CertID ``key`` saying ``status``, as :func:`responder.ocsp_answer` signs it."""
    _ca, cert, ca_key = signers.cas[ca_name]
    algorithm = _HASHES.get(key[0]) or hashes.SHA1()
    request = x509_ocsp.OCSPRequestBuilder().add_certificate_by_hash(key[1], key[2], key[3], algorithm).build()

    def lookup(_serial: int) -> OcspStatus:
        return status

    response = build_response(request, issuer_cert=cert, issuer_key=ca_key, lookup=lookup, now=now,
                              validity=validity, responder=signers.delegated.get(ca_name))
    return response.public_bytes(serialization.Encoding.DER)


#: What the forked signing processes sign with (set just before the fork, cleared after).
_POOL_STATE: tuple[responder.Signers, list[tuple[str, CertIdKey, OcspStatus]], dt.datetime, dt.timedelta] | None = None


def _sign_slice(bounds: tuple[int, int]) -> list[bytes]:
    assert _POOL_STATE is not None
    signers, jobs, now, validity = _POOL_STATE
    return [_sign(signers, ca, key, status, now, validity) for ca, key, status in jobs[bounds[0]:bounds[1]]]


def _sign_all(signers: responder.Signers, jobs: list[tuple[str, CertIdKey, OcspStatus]], now: dt.datetime,
              validity: dt.timedelta, processes: int | None) -> list[bytes]:
    global _POOL_STATE
    count = min(POOL_MAX, processes or os.cpu_count() or 1)
    # a key on a PKCS#11 token is a session of this process, which a forked child must not use
    keys = [signers.delegated.get(name, (None, key))[1] for name, (_ca, _cert, key) in signers.cas.items()]
    native = all(type(key).__module__.startswith("cryptography.") for key in keys)
    if count < 2 or len(jobs) < POOL_MIN or not native:
        return [_sign(signers, ca, key, status, now, validity) for ca, key, status in jobs]
    step = -(-len(jobs) // (count * 4))
    _POOL_STATE = (signers, jobs, now, validity)
    try:
        with multiprocessing.get_context("fork").Pool(count) as pool:
            parts = pool.map(_sign_slice, [(s, s + step) for s in range(0, len(jobs), step)])
    finally:
        _POOL_STATE = None
    return [der for part in parts for der in part]

