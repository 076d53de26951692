"""The project's exceptions, and the one boundary that turns driver errors into them.

Like Procrastinate's ``wrap_exceptions``: callers catch our types, never psycopg's. Messages name
the constraint, never the offending values (values can be payloads or secrets).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self, TypeVar

import psycopg
import pydantic
import sqlalchemy.exc

from pgjobs.db.storable import dotted
from pgjobs.db.validation_wording import rule

M = TypeVar("M", bound=pydantic.BaseModel)


class JobsError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(JobsError):
    """A setting is missing or wrong (e.g. no DATABASE_URL and no embedded server running)."""


class NotFound(JobsError):
    """No such row for this tenant. Another tenant's row is reported exactly like a missing one."""


class UnknownTenant(NotFound):
    """No tenant has this id or slug."""


class InvalidInput(JobsError):
    """Caller input failed validation. The message names fields and rules, never values: a
    value may be a secret. ``fields`` lists the offending field paths."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields

    @classmethod
    def for_field(cls, field: str, rule: str) -> Self:
        """The error for one field breaking ``rule`` (e.g. "must be a UUID")."""
        return cls(f"invalid input: {field}: {rule}", (field,))

    @classmethod
    def from_validation_error(
        cls, exc: pydantic.ValidationError, model: type[pydantic.BaseModel] | None = None
    ) -> InvalidInput:
        """Our error for pydantic's: each field named with the rule it breaks, in plain words
        (pgjobs/db/validation_wording.py), never its value (pydantic's str() quotes the input).
        ``model`` explains its fields' patterns by their descriptions."""
        problems = [
            (dotted(error["loc"]) or "value", rule(error, model))
            for error in exc.errors(include_input=False, include_url=False)
        ]
        detail = "; ".join(f"{field}: {msg}" for field, msg in problems)
        return cls(f"invalid input: {detail}", tuple(field for field, _ in problems))


def validated(model: type[M], data: Mapping[str, Any]) -> M:
    """``model`` built from ``data``; a validation failure is :class:`InvalidInput`."""
    try:
        return model.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        raise InvalidInput.from_validation_error(exc, model) from None


def validated_field(model: type[pydantic.BaseModel], field: str, value: object) -> Any:
    """One field of ``model`` validated alone (its type, constraints and model config)."""
    try:
        holder = model.__pydantic_validator__.validate_assignment(
            model.model_construct(), field, value
        )
    except pydantic.ValidationError as exc:
        raise InvalidInput.from_validation_error(exc, model) from None
    return getattr(holder, field)


class DatabaseError(JobsError):
    """PostgreSQL refused or failed a statement."""


class DatabaseUnavailable(DatabaseError):
    """PostgreSQL could not be reached."""


class IntegrityViolation(DatabaseError):
    """A constraint refused a row. ``constraint`` is its name (see pgjobs/db/models/base.py)."""

    def __init__(self, message: str, constraint: str | None = None, row: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint
        self.row = row
        """PostgreSQL's text of the refused row, kept only for tables in ``ROWS_KEPT`` (never
        in the message: other rows can hold payloads or secrets)."""


class UniqueViolation(IntegrityViolation):
    """A unique constraint refused a duplicate."""


class ForeignKeyViolation(IntegrityViolation):
    """A row points at a row that does not exist (or belongs to another tenant)."""


class CheckViolation(IntegrityViolation):
    """A CHECK constraint (enum value, range, state invariant) refused a row."""


class NotNullViolation(IntegrityViolation):
    """A required column was left empty."""


ROWS_KEPT = frozenset({"tenant_quota_usage"})
"""Tables whose refused rows hold only counts and names, which the caller may read back (a
quota's refusal says which quota and its count)."""

_BY_SQLSTATE: dict[str, tuple[type[IntegrityViolation], str]] = {
    "23505": (UniqueViolation, "duplicate value violates unique constraint"),
    "23503": (ForeignKeyViolation, "reference violates foreign key constraint"),
    "23514": (CheckViolation, "value violates check constraint"),
    "23502": (NotNullViolation, "missing value violates not-null constraint"),
}


def translate(exc: sqlalchemy.exc.DBAPIError | psycopg.Error) -> DatabaseError:
    """Our error for a driver error (raised through SQLAlchemy, or by psycopg directly on the
    state machine's hot path): typed by SQLSTATE, named by constraint, values left out."""
    orig = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    sqlstate = getattr(orig, "sqlstate", None)
    diag = getattr(orig, "diag", None)
    if sqlstate in _BY_SQLSTATE:
        cls, text = _BY_SQLSTATE[sqlstate]
        constraint = getattr(diag, "constraint_name", None)
        if sqlstate == "23502":
            column = getattr(diag, "column_name", None)
            table = getattr(diag, "table_name", None)
            return cls(f"{text}: {table}.{column}", constraint=None)
        row = None
        if getattr(diag, "table_name", None) in ROWS_KEPT:
            row = getattr(diag, "message_detail", None)
        return cls(f"{text} {constraint}", constraint=constraint, row=row)
    if isinstance(exc, sqlalchemy.exc.OperationalError) and exc.connection_invalidated:
        return DatabaseUnavailable("lost the connection to PostgreSQL")
    if isinstance(exc, sqlalchemy.exc.OperationalError | psycopg.OperationalError) and (
        sqlstate is None or sqlstate.startswith("08") or sqlstate in _SHUTDOWN_STATES
    ):
        return DatabaseUnavailable("could not connect to PostgreSQL")
    return DatabaseError(f"database error (SQLSTATE {sqlstate or 'unknown'})")


# admin_shutdown, crash_shutdown, cannot_connect_now: the server is restarting.
_SHUTDOWN_STATES = frozenset({"57P01", "57P02", "57P03"})


@contextmanager
def wrap_db_errors() -> Iterator[None]:
    """Re-raise SQLAlchemy/psycopg errors as :class:`DatabaseError` subclasses."""
    try:
        yield
    except (sqlalchemy.exc.DBAPIError, psycopg.Error) as exc:
        raise translate(exc) from None
