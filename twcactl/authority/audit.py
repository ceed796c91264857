"""Verifying the hash-chained activity log (architecture.md, "The store").

Each entry's hash covers its content and the previous entry's hash, so an
edited, inserted, deleted or reordered entry breaks the chain; the head
(last sequence number and hash) is kept in ``meta`` and in every CRL
record, so dropping the newest entries shows too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twcactl.errors import NotFoundError, UsageError
from twcactl.rules.settings import NODE_LOCAL_KEYS
from twcactl.rules.times import parse_rfc3339, rfc3339
from twcactl.store import Store
from twcactl.store.log import GENESIS_HASH, log_hash


@dataclass(frozen=True)
class LogProblem:
    """One finding of :func:`verify_log`: the entry (sequence number) and what is wrong."""

    seq: int
    message: str


def verify_log(store: Store, *, expected: Sequence[tuple[int, str]] = ()) -> tuple[int, list[LogProblem]]:
    """Check the whole activity log.

    Args:
        expected: heads ``(seq, hash)`` exported earlier (``twcactl log head``) and kept outside the
            home; each entry ``seq`` must still have that hash, else the log was rewritten since.

    Returns:
        ``(entries checked, problems)``; no problems means the chain, its
        head, every CRL anchor and every ``expected`` head agree.
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
    for want_seq, want_hash in expected:
        if hashes.get(want_seq) != want_hash.lower():
            problems.append(LogProblem(want_seq, f"entry {want_seq} does not match the head exported earlier "
                                                 "(the log was rewritten or truncated since)"))
    from twcactl.authority.signed_actions import signature_problems  # issue 27: the operators' signatures

    problems += [LogProblem(seq, message) for seq, message in signature_problems(store)[1]]
    return count, problems


@dataclass(frozen=True)
class LogHead:
    """An entry's place in the chain: its sequence number and hash (``seq`` 0 and the genesis hash when empty)."""

    seq: int
    hash: str

    def to_json(self) -> dict[str, Any]:
        """``{"seq": N, "hash": "<64 hex>"}``, the form ``log head --json`` prints and ``--expect-head`` takes."""
        return {"seq": self.seq, "hash": self.hash}


def log_head(store: Store, seq: int | None = None) -> LogHead:
    """The newest entry of the chain as stored (or entry ``seq``), for anchoring outside the home.

    Read-only.  Exported elsewhere (another machine, a ticket, a signed mail), a head lets
    :func:`verify_log` (``expected``) prove later that the log up to it was not rewritten:
    without such an anchor someone holding the database can rewrite the whole chain consistently.

    Raises:
        NotFoundError: ``seq`` is not an entry of the log (exit 5).
    """
    head = LogHead(0, GENESIS_HASH)
    for entry in store.log.raw():
        if seq is not None and entry.seq > seq:
            break
        head = LogHead(entry.seq, entry.hash)
    if seq is not None and head.seq != seq:
        raise NotFoundError(f"the activity log has no entry {seq}.")
    return head


# ----- the records the log describes (issue 13) -----

#: The certificate fields a log entry's ``record`` states (the resulting values of the change).
CERT_FIELDS: tuple[str, ...] = ("state", "reason", "revoked_at", "not_after", "account", "sha256")


def certificate_state(*, state: str, reason: str | None, revoked_at: dt.datetime | str | None,
                      not_after: dt.datetime, account: str | None, der: bytes | None = None) -> dict[str, Any]:
    """The ``record`` a certificate log entry carries: the exact state the change left the record in.

    ``sha256`` (of the DER) is stated by issue and renew entries only.  Times are RFC 3339 to the
    second, as the records keep them.
    """
    when = parse_rfc3339(revoked_at) if isinstance(revoked_at, str) else revoked_at
    out: dict[str, Any] = {"state": state, "reason": reason, "revoked_at": rfc3339(when) if when else None,
                           "not_after": rfc3339(not_after), "account": account}
    if der is not None:
        out["sha256"] = hashlib.sha256(der).hexdigest()
    return out


@dataclass
class RecordCheck:
    """What :func:`check_records` compared: findings (each names its record) and counts by kind."""

    findings: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)


@dataclass
class _Replay:
    """The records as the log describes them, field by field; a field the log never stated is absent."""

    certs: dict[str, dict[str, Any]] = field(default_factory=dict)
    full: set[str] = field(default_factory=set)
    balances: dict[str, int] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    operators: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def _apply_cert(replay: _Replay, action: str, serial: str, account: str | None, details: dict[str, Any]) -> None:
    record = details.get("record")
    if isinstance(record, dict):
        replay.certs[serial] = dict(record)
        replay.full.add(serial)
        return
    known = replay.certs.get(serial)
    if action in ("cert.issue", "cert.renew"):
        # entries written before issue 13: the state, notAfter and account are stated, revoked_at is not
        replay.certs[serial] = {"state": "valid", "reason": None, "revoked_at": None, "account": account,
                                **({"not_after": details["not_after"]} if details.get("not_after") else {})}
    elif known is None:
        return
    elif action == "cert.revoke":
        known.update(state="revoked", reason=details.get("reason"))
        known.pop("revoked_at", None)
    elif action == "cert.hold":
        known.update(state="suspended", reason="certificateHold")
        known.pop("revoked_at", None)
    elif action == "cert.release":
        known.update(state="valid", reason=None, revoked_at=None)


def _apply_balance(replay: _Replay, action: str, account: str, details: dict[str, Any]) -> None:
    if isinstance(details.get("balance"), int):
        replay.balances[account] = details["balance"]
        return
    delta = {"account.add": details.get("quota"), "account.credit": details.get("delta"),
             "cert.issue": -(details.get("cost") or 0), "cert.renew": -(details.get("cost") or 0),
             "cert.revoke": details.get("refund") or 0}.get(action)
    if action == "account.add":
        replay.balances[account] = int(delta or 0)
    elif isinstance(delta, int) and account in replay.balances:
        replay.balances[account] += delta


def _apply_account(replay: _Replay, action: str, account: str, details: dict[str, Any]) -> None:
    result = details.get("result")
    if isinstance(result, dict):
        replay.accounts[account] = {"org": result.get("org"), "domains": set(result.get("domains") or ()),
                                    "aliases": set(result.get("aliases") or ())}
    elif action == "account.add":
        replay.accounts[account] = {"org": " ".join(str(details.get("org") or "").split()),
                                    "domains": set(details.get("domains") or ()),
                                    "aliases": set(details.get("org_aliases") or ())}
    elif action == "account.set" and account in replay.accounts:
        known = replay.accounts[account]
        if details.get("org"):
            known["org"] = " ".join(str(details["org"]).split())
        known["domains"] = (known["domains"] | set(details.get("add_domains") or ())) - set(
            details.get("remove_domains") or ())
        known["aliases"] = (known["aliases"] | set(details.get("add_aliases") or ())) - set(
            details.get("remove_aliases") or ())


def replay_log(store: Store) -> _Replay:
    """Walk the activity log once and rebuild, from its entries alone, every certificate's state, every
    balance, every account's organisation, agreed domains and aliases, every operator's role and every
    configured setting (issue 13).  Entries written before issue 13 state less; what they do not state
    is left out rather than guessed."""
    replay = _Replay()
    for entry in store.log.raw():
        try:
            details = json.loads(entry.details)
        except ValueError:
            continue  # verify_log reports a changed entry
        if not isinstance(details, dict):
            continue
        action = entry.action
        if entry.serial and (action.startswith("cert.") or isinstance(details.get("record"), dict)):
            _apply_cert(replay, action, entry.serial, entry.account, details)
        if entry.account and (action in ("account.add", "account.credit", "cert.issue", "cert.renew", "cert.revoke")
                              or isinstance(details.get("balance"), int)):
            _apply_balance(replay, action, entry.account, details)
        if entry.account and action in ("account.add", "account.set"):
            _apply_account(replay, action, entry.account, details)
        if action in ("operator.add", "operator.update") and isinstance(details.get("name"), str):
            replay.operators[details["name"]] = str(details.get("role"))
        if action == "ca.config" and isinstance(details.get("key"), str):
            replay.settings[details["key"]] = details.get("new")
    return replay


def _same(fieldname: str, logged: Any, stored: Any) -> bool:
    if fieldname in ("not_after", "revoked_at") and logged and stored:
        try:
            return parse_rfc3339(str(logged)) == parse_rfc3339(str(stored))
        except ValueError:
            return False
    return bool(logged == stored)


def check_records(store: Store) -> RecordCheck:
    """Compare every record the log describes with the record as stored (issue 13).

    Certificates (state, reason, revoked_at, notAfter, account, DER hash), balances, accounts' names,
    agreed domains and aliases, operators' roles and the configured settings are rebuilt from the log by
    :func:`replay_log`; a record that differs, a record without the log entry that made it, and a logged
    record that is gone are findings, each naming the record.  Fields the log does not state (entries
    written before issue 13) are skipped and counted under ``checked``.
    """
    replay = replay_log(store)
    out = RecordCheck()
    _compare_certificates(store, replay, out)
    _compare_accounts(store, replay, out)
    _compare_operators(store, replay, out)
    _compare_settings(store, replay, out)
    return out


def _compare_certificates(store: Store, replay: _Replay, out: RecordCheck) -> None:
    seen: set[str] = set()
    partly = 0
    for row in store.certificates.states():
        serial = str(row["serial"])
        seen.add(serial)
        logged = replay.certs.get(serial)
        if logged is None:
            out.findings.append(f"certificate {serial}: no activity-log entry issued it (a record added outside "
                                "twcactl)")
            continue
        if serial not in replay.full:
            partly += 1
        for name in CERT_FIELDS:
            if name in logged and not _same(name, logged[name], row.get(name)):
                out.findings.append(f"certificate {serial}: its {name} is {row.get(name)!r} in the records but "
                                    f"{logged[name]!r} in the activity log")
    for serial in sorted(set(replay.certs) - seen):
        out.findings.append(f"certificate {serial}: the activity log issued it but its record is gone")
    out.checked["certificates against the log"] = len(seen)
    out.checked["certificates the log states only partly (entries before issue 13)"] = partly


def _compare_accounts(store: Store, replay: _Replay, out: RecordCheck) -> None:
    accounts = store.accounts.all()
    for account in accounts:
        logged = replay.accounts.get(account.id)
        if logged is None:
            out.findings.append(f"account {account.id}: no activity-log entry created it")
            continue
        if logged["org"] != account.org:
            out.findings.append(f"account {account.id}: its organisation is {account.org!r} in the records but "
                                f"{logged['org']!r} in the activity log")
        for name, stored in (("agreed domains", set(account.domains)), ("O aliases", set(account.org_aliases))):
            want = logged["domains" if name == "agreed domains" else "aliases"]
            if stored != want:
                extra, missing = sorted(stored - want), sorted(want - stored)
                out.findings.append(f"account {account.id}: its {name} differ from the activity log"
                                    + (f" (not logged: {', '.join(extra)})" if extra else "")
                                    + (f" (logged but missing: {', '.join(missing)})" if missing else ""))
        if account.id in replay.balances and replay.balances[account.id] != account.balance:
            out.findings.append(f"account {account.id}: its balance is {account.balance} certificate-years in the "
                                f"records but {replay.balances[account.id]} in the activity log")
    for account_id in sorted(set(replay.accounts) - {a.id for a in accounts}):
        out.findings.append(f"account {account_id}: the activity log created it but its record is gone")
    out.checked["balances against the log"] = sum(1 for a in accounts if a.id in replay.balances)


def _compare_operators(store: Store, replay: _Replay, out: RecordCheck) -> None:
    operators = store.operators.all()
    for op in operators:
        name, role = str(op["name"]), str(op["role"])
        if name not in replay.operators:
            out.findings.append(f"operator {name}: no activity-log entry added it (role {role})")
        elif replay.operators[name] != role:
            out.findings.append(f"operator {name}: its role is {role} in the records but {replay.operators[name]} "
                                "in the activity log")
    for name in sorted(set(replay.operators) - {str(o["name"]) for o in operators}):
        out.findings.append(f"operator {name}: the activity log added it but its record is gone")
    out.checked["operators against the log"] = len(operators)


def _compare_settings(store: Store, replay: _Replay, out: RecordCheck) -> None:
    if store.settings_problems():
        return  # reported on its own; nothing to compare with
    settings = store.settings()
    for key, logged in sorted(replay.settings.items()):
        if key in NODE_LOCAL_KEYS and store.shared:
            continue  # another node's own config.toml (issue 14): this node's may differ
        try:
            value = settings.value(key)
        except UsageError:  # a key a later version dropped: nothing to compare
            continue
        if value != logged:
            out.findings.append(f"setting {key}: config.toml says {value!r} but the activity log says {logged!r}")
    out.checked["settings against the log"] = len(replay.settings)
