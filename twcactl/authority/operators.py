"""Operators and their roles: a manager queries and changes, an RA operator works on certificates, an auditor
only queries (domain.md §3, 3A; issue 27); each may be bound to a certificate that proves who they are.

One function per workflow, each taking the open store and a typed
:class:`OperatorGrant`, checking that the acting operator is a manager,
writing the change and its activity-log entry in one transaction, and
returning every operator afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twcactl.errors import StateError, UsageError
from twcactl.policy.checks import printable_problem
from twcactl.rules.operator_auth import SUBSCRIBER_PREFIX
from twcactl.rules.vocab import ROLES
from twcactl.store import Store

__all__ = ["OperatorGrant", "add_operator", "bind_operator", "remove_operator", "set_operator_role"]


@dataclass(frozen=True)
class OperatorGrant:
    """An operator name and the role it gets.

    Attributes:
        name: printable ASCII, no leading or trailing space (it is written into every log entry).
        role: one of :data:`twcactl.rules.vocab.ROLES` (``manager``, ``auditor``, ``ra``).

    Raises (on creation):
        UsageError: a name that is not printable ASCII, or an unknown role (exit 2).
    """

    name: str
    role: str
    #: the operator's certificate (DER), issued by this CA, whose key signs their changes (issue 27)
    cert_der: bytes | None = None

    def __post_init__(self) -> None:
        problem = printable_problem(self.name)
        if problem:
            raise UsageError(f"operator name: {problem}.")
        if self.name.startswith(SUBSCRIBER_PREFIX):
            raise UsageError(f"operator names never start with {SUBSCRIBER_PREFIX!r} (the log's name for subscribers).")
        if self.role not in ROLES:
            raise UsageError(f"unknown role {self.role!r}; choose one of {', '.join(ROLES)}.")


def _binding(store: Store, grant: OperatorGrant) -> dict[str, str]:
    """The log details of ``grant``'s certificate (``cert_sha256``, ``cert_serial``), checked first.

    Raises:
        StateError: the certificate is not issued by this CA, not valid now, or revoked (exit 5).
    """
    if grant.cert_der is None:
        return {}
    from cryptography import x509

    from twcactl.authority.signed_actions import cert_sha256, credential_problem

    cert = x509.load_der_x509_certificate(grant.cert_der)
    problem = credential_problem(store, cert)
    if problem is not None:
        raise StateError(f"the certificate for operator {grant.name} {problem}.")
    return {"cert_sha256": cert_sha256(grant.cert_der), "cert_serial": format(cert.serial_number, "x")}


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
    binding = _binding(store, grant)
    with store.transaction():
        store.operators.add(grant.name, grant.role, by=by, cert_der=grant.cert_der,
                            cert_sha256=binding.get("cert_sha256"))
        store.log.append(operator=by, action="operator.add",
                         details={"name": grant.name, "role": grant.role, **binding})
    return store.operators.all()


def set_operator_role(store: Store, grant: OperatorGrant, *, by: str) -> list[dict[str, Any]]:
    """Change an existing operator's role (and make it active again), logged as ``operator.update``.

    Returns:
        Every operator, as :func:`add_operator`.

    Raises:
        StateError: ``by`` is not a manager (exit 5).  NotFoundError: no such operator (exit 5).
    """
    store.operators.require_manager(by)
    binding = _binding(store, grant)
    with store.transaction():
        store.operators.set_role(grant.name, grant.role)
        if grant.cert_der is not None:
            store.operators.bind(grant.name, grant.cert_der, binding["cert_sha256"])
        store.log.append(operator=by, action="operator.update",
                         details={"name": grant.name, "role": grant.role, **binding})
    return store.operators.all()


def remove_operator(store: Store, name: str, *, by: str) -> list[dict[str, Any]]:
    """Remove an operator (it can no longer act or sign), logged as ``operator.remove``.

    Returns:
        Every operator, as :func:`add_operator` (the removed one with ``active`` 0).

    Raises:
        StateError: ``by`` is not a manager, or ``name`` is the last manager (exit 5).
        NotFoundError: no such active operator (exit 5).
    """
    store.operators.require_manager(by)
    with store.transaction():
        role = store.operators.remove(name)
        store.log.append(operator=by, action="operator.remove", details={"name": name, "role": role})
    return store.operators.all()


def bind_operator(store: Store, grant: OperatorGrant, *, by: str) -> list[dict[str, Any]]:
    """Register ``grant`` (``operator.add``), or give an existing operator its role and certificate
    (``operator.update``): the end of ``operator enroll`` (issue 27).

    Raises:
        StateError: ``by`` is not a manager, or the certificate cannot prove an operator (exit 5).
    """
    known = {str(o["name"]) for o in store.operators.all() if o["active"]}
    return (set_operator_role if grant.name in known else add_operator)(store, grant, by=by)
