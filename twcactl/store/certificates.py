"""Issued certificates: records, stored states, and the store queries behind the status words.

The status words are :data:`twcactl.rules.vocab.STATUS_WORDS` (cli-contract.md
"JSON shapes"; domain.md §5).  A record's word is judged in Python by
:meth:`twcactl.store.records.CertRecord.status`; :func:`status_window` is
the same rule as an indexed query on ``(state, not_after)``, and is the one
place that SQL selection is decided.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from twcactl.errors import NotFoundError, StateError
from twcactl.rules.times import parse_rfc3339, rfc3339, utcnow
from twcactl.rules.vocab import STATUS_WORDS
from twcactl.store.cas import CaRepository
from twcactl.store.executor import ConstraintViolation
from twcactl.store.home import HomeLayout
from twcactl.store.interface import Engine, Row
from twcactl.store.records import CertRecord, RevokedRow, StoredCertificate

_SECOND = dt.timedelta(seconds=1)
# SQLite allows 999 parameters per statement in old builds; stay well under
_CHUNK = 500
_INSERT_BULK = (
    "INSERT INTO certificates (serial, ca_name, account_id, profile, cn, cn_lower, subject, sans,"
    " not_before, not_after, issued_at, state, revoked_at, reason, cost, validity, operator, sha256, der)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# every record read carries its newest successor (issue 12: the ``renewed`` status word and ``renewed_by``);
# the correlated subquery uses the cert_renewed_from index
_SELECT = ("SELECT c.*, (SELECT r.serial FROM certificates r WHERE r.renewed_from = c.serial"
           " ORDER BY r.issued_at DESC, r.serial LIMIT 1) AS renewed_by FROM certificates c")


@dataclass(frozen=True)
class StatusWindow:
    """The stored states and the notAfter range (inclusive; None: open) that select a status word."""

    states: tuple[str, ...] | None
    low: dt.datetime | None
    high: dt.datetime | None
    renewed: bool | None = None  # True: only renewed certificates; False: none of them; None: either


def status_window(status: str | None, now: dt.datetime, renewal_window_days: int,
                  expiring_within: int | None = None) -> StatusWindow:
    """What a status word (and ``--expiring-within DAYS``) selects, at ``now``.

    ``revoked`` and ``suspended`` are stored states; ``expired`` is valid with
    notAfter <= now; ``renewed`` valid, not expired, with a successor (issue 12);
    ``expiring`` valid, not renewed, with notAfter inside the renewal window;
    ``valid`` valid, not renewed, with notAfter beyond it (domain.md §5).
    ``expiring_within`` narrows to valid certificates ending within that many
    days, not renewed unless ``status`` is ``renewed``.

    Raises:
        ValueError: ``status`` is not one of STATUS_WORDS (a programming error: the CLI offers only those).
    """
    if status is not None and status not in STATUS_WORDS:
        raise ValueError(f"unknown status word {status!r}")
    horizon = now + dt.timedelta(days=renewal_window_days)
    states: tuple[str, ...] | None = None
    low: dt.datetime | None = None
    high: dt.datetime | None = None
    renewed: bool | None = None
    if status in ("revoked", "suspended"):
        states = (status,)
    elif status == "expired":
        states, high = ("valid",), now
    elif status == "renewed":
        states, low, renewed = ("valid",), now + _SECOND, True
    elif status == "expiring":
        states, low, high, renewed = ("valid",), now + _SECOND, horizon, False
    elif status == "valid":
        states, low, renewed = ("valid",), horizon + _SECOND, False
    if expiring_within is not None:
        end = now + dt.timedelta(days=expiring_within)
        states = ("valid",) if states in (None, ("valid",)) else ()
        low = max(low or now + _SECOND, now + _SECOND)
        high = min(high or end, end)
        renewed = bool(renewed)
    return StatusWindow(states, low, high, renewed)


class CertificateRepository:
    """The ``certificates`` table."""

    def __init__(self, engine: Engine, layout: HomeLayout, cas: CaRepository,
                 renewal_window_days: Callable[[], int]) -> None:
        self._engine = engine
        self._db = engine.db
        self._layout = layout
        self._cas = cas
        self._window = renewal_window_days

    # ----- writes -----
    def add(self, *, serial: str, ca_name: str, account_id: str | None, profile: str, cn: str | None,
            subject: str, sans: Sequence[str], not_before: dt.datetime, not_after: dt.datetime,
            cost: int, contact: str | None, note: str | None, renewed_from: str | None,
            operator: str, der: bytes, validity: str = "", paid_until: dt.datetime | None = None,
            spki_sha256: str | None = None) -> None:
        """Record an issued certificate (inside a transaction); ``cost`` in certificate-years; ``paid_until`` the
        end of the subscription's paid time it serves (issue 16; None: not a subscription); ``spki_sha256`` its
        key's fingerprint (hex; what ``KeyRepository.set_key`` would record, in the same statement).

        Raises:
            StateError: the serial is already taken (exit 5; a 64-bit random collision).
        """
        try:
            self._db.run(
                "INSERT INTO certificates (serial, ca_name, account_id, profile, cn, cn_lower, subject, sans,"
                " not_before, not_after, issued_at, cost, validity, contact, note, renewed_from, operator, sha256, der,"
                " paid_until, spki_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (serial, ca_name, account_id, profile, cn, cn.lower() if cn else None, subject, json.dumps(list(sans)),
                 rfc3339(not_before), rfc3339(not_after), rfc3339(utcnow()), cost, validity, contact, note,
                 renewed_from, operator, hashlib.sha256(der).hexdigest(), der,
                 rfc3339(paid_until) if paid_until else None, spki_sha256),
            )
        except ConstraintViolation as exc:
            raise StateError(f"serial {serial} is already in use.") from exc

    def bulk_add(self, rows: Iterable[dict[str, Any]], *, batch: int = 10_000) -> int:
        """Load many certificate records at once, for benchmarks and imports (not for issuing).

        Each row holds the ``certificates`` columns: ``serial``, ``ca_name``,
        ``account_id``, ``profile``, ``cn``, ``subject``, ``not_before``,
        ``not_after`` (RFC 3339 text), ``der`` and optionally ``state``,
        ``revoked_at``, ``reason``, ``sans`` (list), ``cost``, ``validity``,
        ``operator``.  One transaction per ``batch`` rows; no ledger or log
        entries are written, so use it only on homes made for the purpose.

        Returns:
            The number of rows inserted.
        """
        now = rfc3339(utcnow())
        total = 0
        chunk: list[tuple[Any, ...]] = []
        for r in rows:
            chunk.append(_bulk_row(r, now))
            total += 1
            if len(chunk) >= batch:
                self._insert_chunk(chunk)
        if chunk:
            self._insert_chunk(chunk)
        self._engine.checkpoint()
        return total

    def _insert_chunk(self, chunk: list[tuple[Any, ...]]) -> None:
        with self._engine.transaction():
            self._db.run_many(_INSERT_BULK, chunk)
        chunk.clear()

    def set_state(self, serial: str, state: str, *, revoked_at: dt.datetime | None = None,
                  reason: str | None = None, invalidity_date: dt.datetime | None = None) -> None:
        """Change a certificate's stored state (inside a transaction); ``valid`` clears the revocation fields."""
        self._db.run(
            "UPDATE certificates SET state = ?, revoked_at = ?, reason = ?, invalidity_date = ? WHERE serial = ?",
            (state, rfc3339(revoked_at) if revoked_at else None, reason,
             rfc3339(invalidity_date) if invalidity_date else None, serial),
        )

    # ----- reads -----
    def set_contact(self, serial: str, contact: str | None) -> None:
        """Set (None: clear) the technical contact of certificate ``serial`` (inside a transaction; issue 28)."""
        self._db.run("UPDATE certificates SET contact = ? WHERE serial = ?", (contact, serial))

    def get(self, serial: str) -> CertRecord:
        """The record of certificate ``serial`` (lowercase hex).

        Raises:
            NotFoundError: no such certificate (exit 5).
        """
        row = self._db.one(f"{_SELECT} WHERE c.serial = ?", (serial,))
        if row is None:
            raise NotFoundError(f"no certificate with serial {serial} in this CA home.")
        return self._record(row, self._cas.subjects())

    def with_prefix(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Serials that start with ``prefix`` (lowercase hex digits only), sorted, at most ``limit``.

        The serial is the primary key: a range on it (``serial >= prefix AND serial < prefix + 'g'``,
        'g' sorting after every hex digit) uses its index in SQLite and PostgreSQL alike.

        Raises:
            ValueError: ``prefix`` is not lowercase hex (a programming error: the resolver cleans it).
        """
        if not prefix or any(ch not in "0123456789abcdef" for ch in prefix):
            raise ValueError(f"not a lowercase hex prefix: {prefix!r}")
        rows = self._db.all("SELECT serial FROM certificates WHERE serial >= ? AND serial < ? AND serial LIKE ?"
                            " ORDER BY serial LIMIT ?", (prefix, prefix + "g", prefix + "%", limit))
        return [r["serial"] for r in rows]

    def sorted_serials(self) -> list[str]:
        """Every serial of the home, sorted (one query; a long table's short serials are worked out from it)."""
        # sorted here, by code point: a PostgreSQL collation need not order them as bisection expects
        return sorted(r["serial"] for r in self._db.iterate("SELECT serial FROM certificates"))

    def neighbours(self, serial: str) -> tuple[str | None, str | None]:
        """The serials just before and just after ``serial`` in sorted order (either None at an end): the two that
        share the longest prefix with it, so its shortest unique prefix follows from them (issue 28)."""
        before = self._db.one("SELECT serial FROM certificates WHERE serial < ? ORDER BY serial DESC LIMIT 1",
                              (serial,))
        after = self._db.one("SELECT serial FROM certificates WHERE serial > ? ORDER BY serial LIMIT 1", (serial,))
        return (before["serial"] if before else None), (after["serial"] if after else None)

    def get_many(self, serials: Sequence[str]) -> list[CertRecord]:
        """The records of ``serials``, in that order (unknown serials are left out)."""
        issuers = self._cas.subjects()
        found: dict[str, CertRecord] = {}
        for start in range(0, len(serials), _CHUNK):
            chunk = list(serials[start:start + _CHUNK])
            rows = self._db.iterate(f"{_SELECT} WHERE c.serial IN ({','.join('?' * len(chunk))})", chunk)
            found.update((r["serial"], self._record(r, issuers)) for r in rows)
        return [found[s] for s in serials if s in found]

    def find_by_der(self, der: bytes) -> CertRecord | None:
        """The record holding exactly this certificate (DER), or None.

        Looked up by its serial (the primary key), then compared whole, so a
        certificate from another CA that happens to share a serial is not taken.
        """
        from cryptography import x509

        try:
            serial = format(x509.load_der_x509_certificate(der).serial_number, "x")
        except ValueError:
            return None
        row = self._db.one(f"{_SELECT} WHERE c.serial = ?", (serial,))
        if row is None or bytes(row["der"]) != der:
            return None
        return self._record(row, self._cas.subjects())

    def matching(self, *, account: str | None = None, cn_glob: str | None = None, domain: str | None = None,
                 states: Sequence[str] | None = None, not_after_min: dt.datetime | None = None,
                 not_after_max: dt.datetime | None = None, limit: int | None = None,
                 renewed: bool | None = None, soonest_first: bool = False) -> list[CertRecord]:
        """Certificates matching every given filter, newest notAfter first (``soonest_first``: the reverse).

        Args:
            account: the account ID.
            cn_glob: a shell-style glob on the CN, case-insensitive.
            domain: CN equal to the domain or ending in ``.domain``.
            states: stored states to include (``valid``, ``suspended``, ``revoked``); empty selects nothing.
            not_after_min / not_after_max: a notAfter range (inclusive).
            limit: at most this many rows.
            renewed: True: only certificates a renewal was issued from; False: none of them.
            soonest_first: order by notAfter ascending (``cert list --sort expiry``, issue 17); the limit
                then keeps the soonest.
        """
        if states is not None and not states:
            return []
        dialect = self._db.dialect
        clauses: list[str] = []
        params: list[Any] = []
        if account is not None:
            clauses.append("account_id = ?")
            params.append(account)
        if cn_glob is not None:
            clauses.append(dialect.glob("cn_lower"))
            params.append(dialect.glob_param(cn_glob.lower()))
        if domain is not None:
            d = domain.lower().rstrip(".")
            clauses.append(f"(cn_lower = ? OR {dialect.glob('cn_lower')})")
            params.extend([d, dialect.glob_param("*." + dialect.glob_literal(d))])
        if states is not None:
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if not_after_min is not None:
            clauses.append("not_after >= ?")
            params.append(rfc3339(not_after_min))
        if not_after_max is not None:
            clauses.append("not_after <= ?")
            params.append(rfc3339(not_after_max))
        if renewed:  # the renewed_from index gives the set (a list subquery: faster than EXISTS per row)
            clauses.append("c.serial IN (SELECT s.renewed_from FROM certificates s WHERE s.renewed_from IS NOT NULL)")
        elif renewed is not None:  # NOT EXISTS stops at the LIMIT
            clauses.append("NOT EXISTS (SELECT 1 FROM certificates s WHERE s.renewed_from = c.serial)")
        sql = _SELECT
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY not_after ASC, serial" if soonest_first else " ORDER BY not_after DESC, serial"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        issuers = self._cas.subjects()
        return [self._record(r, issuers) for r in self._db.iterate(sql, params)]

    def find(self, *, now: dt.datetime, status: str | None = None, expiring_within: int | None = None,
             account: str | None = None, cn_glob: str | None = None, domain: str | None = None,
             limit: int | None = None, soonest_first: bool = False) -> list[CertRecord]:
        """Certificates by the contract's status words (cli-contract.md, JSON shapes), as indexed queries.

        Args:
            now: the time the status words are judged at.
            status: one of STATUS_WORDS (see :func:`status_window`).
            expiring_within: valid and ending within this many days (combines with ``status``).
            account / cn_glob / domain / limit / soonest_first: as :meth:`matching`.
        """
        window = status_window(status, now, self._window(), expiring_within)
        return self.matching(account=account, cn_glob=cn_glob, domain=domain, states=window.states,
                             not_after_min=window.low, not_after_max=window.high, limit=limit,
                             renewed=window.renewed, soonest_first=soonest_first)

    def revoked_entries(self, ca_name: str) -> list[RevokedRow]:
        """Every revoked or held certificate of ``ca_name``: the entries its CRL must list (RFC 5280 §5.3)."""
        return [
            RevokedRow(r["serial"], r["revoked_at"], r["reason"], r["invalidity_date"])
            for r in self._db.iterate("SELECT serial, revoked_at, reason, invalidity_date FROM certificates"
                                      " WHERE ca_name = ? AND state IN ('revoked', 'suspended')", (ca_name,))
        ]

    def ocsp_states(self, ca_names: Sequence[str], not_after_min: dt.datetime) -> Iterator[Row]:
        """``serial, ca_name, state, revoked_at, reason`` of every certificate of ``ca_names`` whose notAfter
        is at or after ``not_after_min``, one at a time: what an OCSP answer says of each, for answers produced
        ahead (issue 29; RFC 5019 §2.2).  No DER is read."""
        if not ca_names:
            return
        yield from self._db.iterate(
            "SELECT serial, ca_name, state, revoked_at, reason FROM certificates"
            f" WHERE ca_name IN ({','.join('?' * len(ca_names))}) AND not_after >= ?",
            [*ca_names, rfc3339(not_after_min)])

    def count_revoked(self, ca_name: str) -> int:
        """How many certificates of ``ca_name`` are revoked or held (the entries its CRL must list)."""
        row = self._db.one("SELECT COUNT(*) AS n FROM certificates"
                           " WHERE ca_name = ? AND state IN ('revoked', 'suspended')", (ca_name,))
        return int(row["n"]) if row else 0

    def counts_by_ca(self, now: dt.datetime) -> dict[str, dict[str, int]]:
        """Per CA name: ``{"total", "unexpired", "revoked"}`` certificate counts (``ca issuer list``, issue 25);
        ``revoked`` counts held ones too, ``unexpired`` those whose notAfter is after ``now``."""
        out: dict[str, dict[str, int]] = {}
        for r in self._db.all(
                "SELECT ca_name, COUNT(*) AS total,"
                " SUM(CASE WHEN not_after > ? THEN 1 ELSE 0 END) AS unexpired,"
                " SUM(CASE WHEN state IN ('revoked', 'suspended') THEN 1 ELSE 0 END) AS revoked"
                " FROM certificates GROUP BY ca_name", (rfc3339(now),)):
            out[r["ca_name"]] = {"total": int(r["total"]), "unexpired": int(r["unexpired"] or 0),
                                 "revoked": int(r["revoked"] or 0)}
        return out

    def renewals_of(self, serial: str) -> list[str]:
        """Serials of the certificates that renewed ``serial``."""
        return [r["serial"] for r in self._db.all("SELECT serial FROM certificates WHERE renewed_from = ?", (serial,))]

    def carried_and_refunded(self) -> list[str]:
        """Serials of certificates whose time was both carried forward (a renewal was issued from them) and
        refunded (a ``refund`` ledger entry names them): what ``ca check`` reports (issue 12; domain.md §3)."""
        return [r["serial"] for r in self._db.all(
            "SELECT DISTINCT l.serial AS serial FROM ledger l WHERE l.action = 'refund' AND l.delta > 0"
            " AND EXISTS (SELECT 1 FROM certificates s WHERE s.renewed_from = l.serial) ORDER BY l.serial")]

    def stored(self) -> Iterator[StoredCertificate]:
        """Every record's serial, stored SHA-256 and DER, one at a time (``ca check`` over a big home)."""
        for r in self._db.iterate("SELECT serial, sha256, der FROM certificates"):
            yield StoredCertificate(serial=r["serial"], sha256=r["sha256"], der=bytes(r["der"]))

    def states(self) -> Iterator[dict[str, Any]]:
        """Every record's serial and the fields its log entries state (``ca check`` compares them, issue 13):
        ``serial, account, state, reason, revoked_at, not_after, sha256``, one at a time, without the DER."""
        for r in self._db.iterate("SELECT serial, account_id, state, reason, revoked_at, not_after, sha256"
                                  " FROM certificates"):
            yield {"serial": r["serial"], "account": r["account_id"], "state": r["state"], "reason": r["reason"],
                   "revoked_at": r["revoked_at"], "not_after": r["not_after"], "sha256": r["sha256"]}

    def _record(self, r: Row, issuers: dict[str, str]) -> CertRecord:
        return CertRecord(
            serial=r["serial"], ca_name=r["ca_name"], account=r["account_id"], profile=r["profile"], cn=r["cn"],
            subject=r["subject"], sans=tuple(json.loads(r["sans"])),
            not_before=parse_rfc3339(r["not_before"]), not_after=parse_rfc3339(r["not_after"]),
            issued_at=r["issued_at"], state=r["state"], revoked_at=r["revoked_at"], reason=r["reason"],
            contact=r["contact"], note=r["note"], renewed_from=r["renewed_from"], cost=r["cost"],
            validity=r["validity"], invalidity_date=r["invalidity_date"],
            issuer=issuers.get(r["ca_name"], r["ca_name"]), path=str(self._layout.cert_path(r["serial"])),
            der=bytes(r["der"]), renewed_by=r["renewed_by"],
            paid_until=parse_rfc3339(r["paid_until"]) if r["paid_until"] else None,
        )


def _bulk_row(r: dict[str, Any], now: str) -> tuple[Any, ...]:
    cn = r.get("cn")
    return (
        r["serial"], r["ca_name"], r.get("account_id"), r.get("profile", "ssl"), cn,
        cn.lower() if cn else None, r["subject"], json.dumps(list(r.get("sans", []))), r["not_before"],
        r["not_after"], r.get("issued_at", now), r.get("state", "valid"), r.get("revoked_at"), r.get("reason"),
        r.get("cost", 0), r.get("validity", ""), r.get("operator", "bulk"),
        hashlib.sha256(r["der"]).hexdigest(), r["der"],
    )
