"""Alembic environment and revisions, shipped in the package so ``jobctl db upgrade`` works
from an installed wheel."""
