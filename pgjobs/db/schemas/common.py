"""Pieces shared by the per-table schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from pgjobs.db.storable import text_problems


class ReadModel(BaseModel):
    """A row as the API returns it: built from ORM objects or Core rows, immutable."""

    model_config = ConfigDict(from_attributes=True, frozen=True)


class InputModel(BaseModel):
    """Caller input: unknown fields are an error, strings are stripped, and no string (nor
    secret, header or key) holds what PostgreSQL cannot store: NUL or a lone surrogate."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        for path, problem in text_problems(value):
            raise ValueError(f"{path}: {problem}" if path else problem)
        return value
