"""Pydantic shapes per table (create / read / patch) and for the JSONB columns."""
