"""Imports every shipped handler so that it registers (placeholder: being written)."""
