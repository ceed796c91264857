"""``twcactl chain``: build and verify certificate chains (placeholder until issue 5 lands)."""

from __future__ import annotations

import click


@click.group()
def chain() -> None:
    """Build and verify certificate chains and cert.zip bundles."""
