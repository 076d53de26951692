"""`jobctl keys ...` (placeholder: being written)."""

from __future__ import annotations

import click


@click.group()
def keys() -> None:
    """(not yet available)"""
