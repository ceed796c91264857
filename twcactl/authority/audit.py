"""Verifying the hash-chained activity log (architecture.md, "The store").

Each entry's hash covers its content and the previous entry's hash, so an
edited, inserted, deleted or reordered entry breaks the chain; the head
(last sequence number and hash) is kept in ``meta`` and in every CRL
record, so dropping the newest entries shows too.
"""

from __future__ import annotations

from dataclasses import dataclass

from twcactl.store import Store
from twcactl.store.log import GENESIS_HASH, log_hash


@dataclass(frozen=True)
class LogProblem:
    """One finding of :func:`verify_log`: the entry (sequence number) and what is wrong."""

    seq: int
    message: str


def verify_log(store: Store) -> tuple[int, list[LogProblem]]:
    """Check the whole activity log.

    Returns:
        ``(entries checked, problems)``; no problems means the chain, its
        head and every CRL anchor agree.
    """
    problems: list[LogProblem] = []
    prev = GENESIS_HASH
    expected_seq = 1
    hashes: dict[int, str] = {}
    count = 0
    for entry in store.log.raw():
        count += 1
        seq = entry.seq
        if seq != expected_seq:
            problems.append(LogProblem(seq, f"entry {seq} follows {expected_seq - 1}: "
                                            "entries are missing or reordered"))
        if entry.prev_hash != prev:
            problems.append(LogProblem(seq, f"entry {seq} does not chain to the entry before it"))
        digest = log_hash(entry.prev_hash, seq, entry.time, entry.operator, entry.action, entry.account,
                          entry.serial, entry.details)
        if digest != entry.hash:
            problems.append(LogProblem(seq, f"entry {seq} ({entry.action}) was changed after it was written"))
        prev = entry.hash
        hashes[seq] = entry.hash
        expected_seq = seq + 1
    last_seq = expected_seq - 1
    head = store.meta("log_head")
    if head is not None:
        head_seq, head_hash = head.split(":", 1)
        if int(head_seq) != last_seq or (last_seq and hashes.get(last_seq) != head_hash):
            problems.append(LogProblem(int(head_seq), f"the recorded head is entry {head_seq}, the log ends at "
                                                      f"entry {last_seq}: the newest entries were removed or changed"))
    for ca_name, number, anchor_seq, anchor_hash in store.crls.anchors():
        if anchor_seq and hashes.get(anchor_seq) != anchor_hash:
            problems.append(LogProblem(anchor_seq, f"entry {anchor_seq} does not match the log head recorded with "
                                                   f"CRL #{number} of {ca_name}"))
    return count, problems
