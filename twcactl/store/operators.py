"""Operators and their roles: a manager queries and operates, an auditor only queries (domain.md §3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twcactl.errors import NotFoundError, StateError
from twcactl.rules.operator_auth import SUBSCRIBER_PREFIX
from twcactl.rules.times import rfc3339, utcnow
from twcactl.store.executor import ConstraintViolation
from twcactl.store.interface import Engine


class OperatorRepository:
    """The ``operators`` table."""

    def __init__(self, engine: Engine) -> None:
        self._db = engine.db
        #: set by the command that opened the store when changes must be signed (issue 27): checks the acting
        #: operator's certificate (issued by the CA, valid, not revoked) where the role is checked, before any
        #: workflow opens its transaction; raises to refuse
        self.credential_check: Callable[[str], None] | None = None

    def add(self, name: str, role: str, *, by: str, cert_der: bytes | None = None,
            cert_sha256: str | None = None) -> None:
        """Record an operator with ``role`` (``manager``, ``auditor`` or ``ra``) added by ``by``, bound to the
        certificate ``cert_der`` when given (issue 27), inside a transaction.  A removed operator of the same
        name is registered again.

        Raises:
            StateError: the operator exists (exit 5).
        """
        if self._db.one("SELECT 1 AS ok FROM operators WHERE name = ? AND active = 0", (name,)) is not None:
            self._db.run("DELETE FROM operators WHERE name = ? AND active = 0", (name,))
        try:
            self._db.run("INSERT INTO operators (name, role, created_at, created_by, cert_der, cert_sha256)"
                         " VALUES (?, ?, ?, ?, ?, ?)", (name, role, rfc3339(utcnow()), by, cert_der, cert_sha256))
        except ConstraintViolation as exc:
            raise StateError(f"operator {name} already exists.") from exc

    def certificate(self, name: str) -> bytes | None:
        """The DER certificate active operator ``name`` is bound to (issue 27), None when unknown or unbound."""
        row = self._db.one("SELECT cert_der FROM operators WHERE name = ? AND active = 1", (name,))
        return bytes(row["cert_der"]) if row and row["cert_der"] is not None else None

    def any_bound_manager(self) -> bool:
        """True when an active manager is bound to a certificate (issue 27: signed actions then take effect)."""
        return self._db.one("SELECT 1 AS ok FROM operators WHERE role = 'manager' AND active = 1"
                            " AND cert_der IS NOT NULL LIMIT 1") is not None

    def bind(self, name: str, cert_der: bytes, cert_sha256: str) -> None:
        """Bind operator ``name`` to a new certificate (inside a transaction; issue 27)."""
        self._db.run("UPDATE operators SET cert_der = ?, cert_sha256 = ? WHERE name = ?", (cert_der, cert_sha256, name))

    def remove(self, name: str) -> str:
        """Deactivate operator ``name`` (inside a transaction); its log entries keep naming it.

        Returns:
            The role it had.

        Raises:
            NotFoundError: no such active operator (exit 5).
            StateError: it is the last active manager (exit 5): nobody could change the CA any more.
        """
        role = self.role(name)
        if role is None:
            raise NotFoundError(f"operator {name} does not exist.")
        if role == "manager":
            self._keep_a_manager(name)
        self._db.run("UPDATE operators SET active = 0 WHERE name = ?", (name,))
        return role

    def _keep_a_manager(self, name: str) -> None:
        row = self._db.one("SELECT COUNT(*) AS n FROM operators WHERE role = 'manager' AND active = 1 AND name <> ?",
                           (name,))
        if row is None or int(row["n"]) == 0:
            raise StateError(f"operator {name} is the last manager; add another manager first.",
                             hint="twcactl operator add NAME --role manager --cert FILE")

    def role(self, name: str) -> str | None:
        """The role of operator ``name``, or None when unknown or inactive."""
        row = self._db.one("SELECT role FROM operators WHERE name = ? AND active = 1", (name,))
        return str(row["role"]) if row else None

    def all(self) -> list[dict[str, Any]]:
        """All operators by name: ``[{"name", "role", "created_at", "created_by", "active", "cert_sha256"}]``
        (active is 0/1; cert_sha256 None when no certificate is bound)."""
        return [
            {"name": r["name"], "role": r["role"], "created_at": r["created_at"], "created_by": r["created_by"],
             "active": r["active"], "cert_sha256": r["cert_sha256"]}
            for r in self._db.all("SELECT name, role, created_at, created_by, active, cert_sha256 FROM operators"
                                  " ORDER BY name")
        ]

    def set_role(self, name: str, role: str) -> None:
        """Change an existing operator's role and make it active again (inside a transaction).

        Raises:
            NotFoundError: no such operator (exit 5).
        """
        if role != "manager" and self.role(name) == "manager":
            self._keep_a_manager(name)
        if self._db.run("UPDATE operators SET role = ?, active = 1 WHERE name = ?", (role, name)) == 0:
            raise NotFoundError(f"operator {name} does not exist.")

    def require_manager(self, operator: str) -> None:
        """Refuse a state change by anyone but a manager (domain.md §3, roles).

        Raises:
            StateError: unknown operator or an auditor (exit 5).  An RA operator passes: what it may log is
            judged per action when the entry is written (:func:`twcactl.rules.operator_auth.role_may`).
        """
        if operator.startswith(SUBSCRIBER_PREFIX):  # authenticated by their password; the log confines them
            return
        role = self.role(operator)
        if role is None:
            raise StateError(f"operator {operator} is not registered in this CA home.",
                             hint="a manager can add it: twcactl operator add NAME --role manager")
        if role not in ("manager", "ra"):  # an RA's certificate work passes; the log refuses what else it tries
            raise StateError(f"operator {operator} is an {role} and may only query.")
        if self.credential_check is not None:
            self.credential_check(operator)
