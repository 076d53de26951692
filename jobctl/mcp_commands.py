"""`jobctl mcp ...` (placeholder: being written)."""

from __future__ import annotations

import click


@click.group()
def mcp() -> None:
    """(not yet available)"""
