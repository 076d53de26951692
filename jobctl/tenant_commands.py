"""`jobctl tenants ...` (placeholder: being written)."""

from __future__ import annotations

import click


@click.group()
def tenants() -> None:
    """(not yet available)"""
