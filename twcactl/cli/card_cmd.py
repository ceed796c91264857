"""``twcactl card``: PKCS#11 smart cards (placeholder until issue 6 lands)."""

from __future__ import annotations

import click


@click.group()
def card() -> None:
    """PKCS#11 smart cards: enrol, renew, PINs, register certificates."""
