"""``twcactl operator``: who may change the CA (manager) and who may only query (auditor) (domain.md §3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from twcactl.cli.context import app, current_operator, json_option
from twcactl.cli.output import emit, safe
from twcactl.rules.vocab import ROLES

if TYPE_CHECKING:
    from rich.console import Console


@click.group()
def operator() -> None:
    """Operators and their roles: manager (query and change) or auditor (query only).

    The current operator is $TWCACTL_OPERATOR, else the login name:
    accountability, not authentication.
    """


@operator.command("add", epilog="""\b
Examples:
  twcactl operator add bob --role manager
  twcactl operator add carol --role auditor
  twcactl operator add bob --role auditor --update     # change a role
""")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--update", is_flag=True, help="Change the role of an existing operator.")
@json_option
def add(name: str, role: str, update: bool) -> None:
    """Register an operator (managers only; every change is logged)."""
    from twcactl.authority.operators import OperatorGrant, add_operator, set_operator_role

    grant = OperatorGrant(name, role)
    store = app().open_store()
    try:
        workflow = set_operator_role if update else add_operator
        operators = workflow(store, grant, by=current_operator())
    finally:
        store.close()
    _render(operators)


@operator.command("list", epilog="""\b
Example:
  twcactl operator list --json
""")
@json_option
def list_() -> None:
    """List the operators and their roles."""
    store = app().open_store()
    try:
        operators = store.operators.all()
    finally:
        store.close()
    _render(operators)


def _render(operators: list[dict[str, object]]) -> None:
    rows = [{"name": o["name"], "role": o["role"], "created_at": o["created_at"], "created_by": o["created_by"]}
            for o in operators]

    def human(console: Console) -> None:
        for o in rows:
            console.print(f"{safe(o['name']):<20} {o['role']:<8} added {o['created_at']} by {safe(o['created_by'])}")

    emit({"operators": rows}, human)
