"""`jobctl credentials ...` (placeholder: being written)."""

from __future__ import annotations

import click


@click.group()
def credentials() -> None:
    """(not yet available)"""
