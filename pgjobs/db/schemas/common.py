"""Pieces shared by the per-table schemas."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ReadModel(BaseModel):
    """A row as the API returns it: built from ORM objects or Core rows, immutable."""

    model_config = ConfigDict(from_attributes=True, frozen=True)


class InputModel(BaseModel):
    """Caller input: unknown fields are an error, strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
