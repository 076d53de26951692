"""A payload as the JSON ``content_jobs.payload`` stores: validated by the job type's model,
serialised, and checked for what jsonb refuses, all before any statement.

Every failure is :class:`InvalidPayload` (or :class:`PayloadTooLarge`), naming field paths and
rules, never values. pydantic accepts values it then cannot serialise (an ``object()`` in an
``Any`` field, bytes that are not UTF-8, a lone surrogate, nesting past its depth limit), and
jsonb refuses JSON that Python writes happily: the NUL character (``\\u0000``) in a string or a
key, and integers longer than PostgreSQL's numeric holds. pydantic also writes a key holding a
lone surrogate as U+FFFD, which would store a payload that is not the one given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from pgjobs.db.storable import dotted, nested_items, text_problems
from pgjobs.db.validation_wording import rule
from pgjobs.producer.errors import InvalidPayload, PayloadTooLarge
from pgjobs.producer.job_types import JobType

NUMERIC_DIGITS = 131072
"""Digits before the decimal point PostgreSQL's numeric (and so a jsonb number) holds."""

_SUSPECT = ("\\u0000", "\ufffd")
"""In the JSON text, the traces of a NUL and of a replaced surrogate. Only a payload showing
one (or long enough to hold a too long number) is walked, so the common case costs two
substring searches."""

# Words of pydantic's serialisation errors, and what we say instead (its messages can quote
# the offending text).
_SERIALISATION_CAUSES = (
    ("depth", "nested too deeply"),
    ("unicode", "holds text that is not valid Unicode"),
    ("utf-8", "holds bytes that are not UTF-8 text"),
    ("unknown type", "holds a value JSON cannot represent"),
)


@dataclass(frozen=True, slots=True)
class _Digits:
    """An integer of the JSON text, kept as its digits (Python refuses to parse long ones)."""

    text: str


def validated_payload(
    job_type: JobType[Any], payload: Mapping[str, Any] | BaseModel, max_bytes: int
) -> str:
    """The payload as compact JSON, validated and storable; errors name fields, never values."""
    name = job_type.name
    try:
        data = payload
        if type(payload) is not dict and isinstance(payload, BaseModel):
            data = payload.model_dump()
        # what model_validate and model_dump_json run, without their wrappers (two thirds of
        # their cost for a small payload; a batch validates a thousand)
        model = job_type.payload_model.__pydantic_validator__.validate_python(data)
    except ValidationError as exc:
        errors = [
            (dotted(e["loc"]) or "(payload)", e["type"], rule(e, job_type.payload_model))
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidPayload(name, errors) from None
    except (PydanticSerializationError, RecursionError) as exc:  # model_dump of the caller's model
        raise _unserialisable(name, exc) from None
    try:
        raw: bytes = model.__pydantic_serializer__.to_json(model, warnings=True)
    except (PydanticSerializationError, RecursionError) as exc:
        raise _unserialisable(name, exc) from None
    size = len(raw)
    text = raw.decode()
    if size > max_bytes:
        raise PayloadTooLarge(f"payload is {size} bytes; the limit is {max_bytes}")
    if _SUSPECT[0] in text or _SUSPECT[1] in text or len(text) > NUMERIC_DIGITS:
        problems = [*_jsonb_problems(text), *_replaced_keys(model, text)]
        if problems:
            raise InvalidPayload(name, [(path, "jsonb", rule) for path, rule in problems[:10]])
    if job_type.rate is not None:
        _check_rate_key(job_type, text)
    return text


def _check_rate_key(job_type: JobType[Any], payload_json: str) -> None:
    """Refuse a payload the type's rate key cannot be computed from (docs/limits.md): the
    worker computes the key again at each claim, and must not meet one that fails."""
    assert job_type.rate is not None
    try:
        job_type.rate.key_for(job_type.name, "tenant", json.loads(payload_json))
    except Exception as exc:  # noqa: BLE001 - a user's key function: any error refuses the job
        message = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
        raise InvalidPayload(job_type.name, [("rate key", "value_error", message)]) from None


def _unserialisable(name: str, exc: Exception) -> InvalidPayload:
    said = str(exc).lower()
    cause = "nested too deeply" if isinstance(exc, RecursionError) else "cannot be written as JSON"
    for word, meaning in _SERIALISATION_CAUSES:
        if word in said:
            cause = meaning
            break
    return InvalidPayload(name, [("(payload)", "serialization", cause)])


def _jsonb_problems(text: str) -> Iterator[tuple[str, str]]:
    """NUL characters in strings or keys, and numbers too long for numeric, by field path."""
    parsed = json.loads(text, parse_int=_Digits)
    yield from text_problems(parsed)
    for path, item in nested_items(parsed):
        if isinstance(item, _Digits) and len(item.text.lstrip("-")) > NUMERIC_DIGITS:
            yield dotted(path), f"numbers must have at most {NUMERIC_DIGITS} digits"


def _replaced_keys(model: BaseModel, text: str) -> Iterator[tuple[str, str]]:
    """Keys holding a lone surrogate, which pydantic's JSON writes as U+FFFD."""
    if "\ufffd" in text:
        yield from text_problems(model.model_dump())
