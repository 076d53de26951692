"""Handlers: one module per shipped job type; ``registry`` maps type names to functions."""
