"""Operators and their roles: a manager queries and operates, an auditor only queries (domain.md §3)."""

from __future__ import annotations

from typing import Any

from twcactl.errors import NotFoundError, StateError
from twcactl.rules.times import rfc3339, utcnow
from twcactl.store.executor import ConstraintViolation
from twcactl.store.interface import Engine


class OperatorRepository:
    """The ``operators`` table."""

    def __init__(self, engine: Engine) -> None:
        self._db = engine.db

    def add(self, name: str, role: str, *, by: str) -> None:
        """Record an operator with ``role`` (``manager`` or ``auditor``) added by ``by`` (inside a transaction).

        Raises:
            StateError: the operator exists (exit 5).
        """
        try:
            self._db.run("INSERT INTO operators (name, role, created_at, created_by) VALUES (?, ?, ?, ?)",
                         (name, role, rfc3339(utcnow()), by))
        except ConstraintViolation as exc:
            raise StateError(f"operator {name} already exists.") from exc

    def role(self, name: str) -> str | None:
        """The role of operator ``name``, or None when unknown or inactive."""
        row = self._db.one("SELECT role FROM operators WHERE name = ? AND active = 1", (name,))
        return str(row["role"]) if row else None

    def all(self) -> list[dict[str, Any]]:
        """All operators by name: ``[{"name", "role", "created_at", "created_by", "active"}]`` (active is 0/1)."""
        return [
            {"name": r["name"], "role": r["role"], "created_at": r["created_at"], "created_by": r["created_by"],
             "active": r["active"]}
            for r in self._db.all("SELECT name, role, created_at, created_by, active FROM operators ORDER BY name")
        ]

    def set_role(self, name: str, role: str) -> None:
        """Change an existing operator's role and make it active again (inside a transaction).

        Raises:
            NotFoundError: no such operator (exit 5).
        """
        if self._db.run("UPDATE operators SET role = ?, active = 1 WHERE name = ?", (role, name)) == 0:
            raise NotFoundError(f"operator {name} does not exist.")

    def require_manager(self, operator: str) -> None:
        """Refuse a state change by anyone but a manager (domain.md §3, roles).

        Raises:
            StateError: unknown operator or an auditor (exit 5).
        """
        role = self.role(operator)
        if role is None:
            raise StateError(f"operator {operator} is not registered in this CA home.",
                             hint="a manager can add it: twcactl operator add NAME --role manager")
        if role != "manager":
            raise StateError(f"operator {operator} is an {role} and may only query.")
