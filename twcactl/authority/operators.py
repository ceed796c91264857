"""Operators and their roles: a manager queries and changes, an auditor only queries (domain.md §3, 3A).

One function per workflow, each taking the open store and a typed
:class:`OperatorGrant`, checking that the acting operator is a manager,
writing the change and its activity-log entry in one transaction, and
returning every operator afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twcactl.errors import UsageError
from twcactl.policy.checks import printable_problem
from twcactl.rules.vocab import ROLES
from twcactl.store import Store

__all__ = ["OperatorGrant", "add_operator", "set_operator_role"]


@dataclass(frozen=True)
class OperatorGrant:
    """An operator name and the role it gets.

    Attributes:
        name: printable ASCII, no leading or trailing space (it is written into every log entry).
        role: one of :data:`twcactl.rules.vocab.ROLES` (``manager``, ``auditor``).

    Raises (on creation):
        UsageError: a name that is not printable ASCII, or an unknown role (exit 2).
    """

    name: str
    role: str

    def __post_init__(self) -> None:
        problem = printable_problem(self.name)
        if problem:
            raise UsageError(f"operator name: {problem}.")
        if self.role not in ROLES:
            raise UsageError(f"unknown role {self.role!r}; choose one of {', '.join(ROLES)}.")


def add_operator(store: Store, grant: OperatorGrant, *, by: str) -> list[dict[str, Any]]:
    """Register a new operator, logged as ``operator.add``.

    Args:
        by: the acting operator, who must be a manager.

    Returns:
        Every operator, by name: ``[{"name", "role", "created_at", "created_by", "active"}]``.

    Raises:
        StateError: ``by`` is not a manager, or the operator exists (exit 5).
    """
    store.operators.require_manager(by)
    with store.transaction():
        store.operators.add(grant.name, grant.role, by=by)
        store.log.append(operator=by, action="operator.add", details={"name": grant.name, "role": grant.role})
    return store.operators.all()


def set_operator_role(store: Store, grant: OperatorGrant, *, by: str) -> list[dict[str, Any]]:
    """Change an existing operator's role (and make it active again), logged as ``operator.update``.

    Returns:
        Every operator, as :func:`add_operator`.

    Raises:
        StateError: ``by`` is not a manager (exit 5).  NotFoundError: no such operator (exit 5).
    """
    store.operators.require_manager(by)
    with store.transaction():
        store.operators.set_role(grant.name, grant.role)
        store.log.append(operator=by, action="operator.update", details={"name": grant.name, "role": grant.role})
    return store.operators.all()
