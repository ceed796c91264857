"""Challenge validations run beside the request workers, at most K at once per ACME account and M in all.

A challenge POST marks the challenge ``processing`` (RFC 8555 §7.1.6) and hands its validation here; the
client polls the authorization as RFC 8555 §7.5.1 says.  So a slow target holds one validation thread (until
its deadline, :mod:`twcactl.serve.validation`), never a thread that answers requests, and one account cannot
take more than its K threads: its further validations wait in its own queue (bounded by the pending
authorizations an account may have, :data:`twcactl.authority.acme.MAX_PENDING_AUTHZ`).  Threads are made
on first use, so each ``--workers`` process has its own pool.
"""

from __future__ import annotations

import collections
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: Validations at once per ACME account (K) and in all (M), per server process.
PER_ACCOUNT = 4
TOTAL = 32

Job = Callable[[Any], None]


class ValidationPool:
    """A fair queue of validation jobs: ``submit(account, job)`` runs ``job(store)`` in a validation thread.

    Args:
        open_store: this thread's store (called in the validation thread).
        per_account: K, validations of one account at once (>= 1).
        total: M, validations at once in all (>= 1).
    """

    def __init__(self, open_store: Callable[[], Any], *, per_account: int = PER_ACCOUNT, total: int = TOTAL) -> None:
        self.open_store = open_store
        self.per_account = per_account
        self.total = total
        self._lock = threading.Lock()
        self._running: dict[str, int] = collections.defaultdict(int)
        self._waiting: dict[str, collections.deque[Job]] = collections.defaultdict(collections.deque)
        self._executor: ThreadPoolExecutor | None = None
        self._peak = 0
        self._now = 0

    @property
    def peak(self) -> int:
        """The most validations that ran at once so far (for tests and diagnostics)."""
        return self._peak

    def submit(self, account: str, job: Job) -> None:
        """Run ``job`` now, or once fewer than K of ``account``'s validations run."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.total, thread_name_prefix="acme-validation")
            if self._running[account] >= self.per_account:
                self._waiting[account].append(job)
                return
            self._running[account] += 1
            executor = self._executor
        executor.submit(self._run, account, job)

    def close(self) -> None:
        """At shutdown: the validations running finish (each within its deadline); those waiting are dropped,
        their challenges stay ``processing`` until their order expires (the client orders anew)."""
        with self._lock:
            self._waiting.clear()
            executor = self._executor
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _run(self, account: str, job: Job) -> None:
        while True:
            with self._lock:
                self._now += 1
                self._peak = max(self._peak, self._now)
            try:
                job(self.open_store())
            except Exception as exc:  # noqa: BLE001 - a bug: one line on stderr; the challenge stays processing
                sys.stderr.write(f"twcactl serve: a validation failed: {type(exc).__name__}\n")
            with self._lock:
                self._now -= 1
                waiting = self._waiting.get(account)
                if not waiting:
                    self._running[account] -= 1
                    if not self._running[account]:
                        del self._running[account]
                        self._waiting.pop(account, None)
                    return
                job = waiting.popleft()
