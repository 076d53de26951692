"""What a pydantic validation error means, in the words of the person who gave the input.

pydantic's messages describe its internals ("List should have at least 1 item after validation,
not 0", "Value error, ...", a raw regular expression) and some quote the input ("invalid
character: found `x` at 0"). :func:`rule` says instead which rule the field breaks: "must have at
least 1 item", "must be 1 to 64 lowercase letters, digits and dashes...". It never repeats the
value: a value may be a secret. A pattern is explained by the field's ``description`` (written as
the rule), never shown.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

_CUSTOM_PREFIXES = ("Value error, ", "Assertion failed, ")


def _plural(count: object, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


_COLLECTIONS = frozenset({"List", "Tuple", "Set", "Frozenset", "Dictionary", "Dict"})


def _too_short(ctx: Mapping[str, Any]) -> str:
    low = ctx["min_length"]
    if ctx.get("field_type") in _COLLECTIONS:
        return f"must have at least {_plural(low, 'item')}"
    return "must not be empty" if low == 1 else f"must be at least {_plural(low, 'character')}"


def _too_long(ctx: Mapping[str, Any]) -> str:
    if ctx.get("field_type") in _COLLECTIONS:
        return f"must have at most {_plural(ctx['max_length'], 'item')}"
    return f"must be at most {_plural(ctx['max_length'], 'character')}"


# Rules that need no context, and the error types that mean each.
_FIXED: dict[str, str] = {
    kind: phrase
    for phrase, kinds in (
        ("is required", ("missing",)),
        ("is not a known field", ("extra_forbidden",)),
        ("must be a whole number", ("int_parsing", "int_type", "int_from_float")),
        ("is too large a number", ("int_parsing_size",)),
        ("must be a number", ("float_parsing", "float_type", "decimal_parsing")),
        ("must be a finite number", ("finite_number",)),
        ("must be true or false", ("bool_parsing", "bool_type")),
        ("must be text", ("string_type",)),
        ("must be valid Unicode text", ("string_unicode",)),
        ("must be a list", ("list_type", "tuple_type", "set_type")),
        ("must be an object", ("dict_type", "model_type", "model_attributes_type")),
        ("must be a UUID", ("uuid_parsing", "uuid_type", "uuid_version")),
        ("must be a URL", ("url_parsing", "url_type", "url_syntax_violation")),
        (
            "must be a date and time (ISO 8601)",
            ("datetime_parsing", "datetime_type", "datetime_from_date_parsing"),
        ),
        ("must be a date (YYYY-MM-DD)", ("date_parsing", "date_type")),
        ("must include a time zone", ("timezone_aware",)),
        ("must be valid JSON", ("json_invalid",)),
        ("must be JSON text", ("json_type",)),
        ("is nested too deeply", ("recursion_loop",)),
    )
    for kind in kinds
}

# Rules that name a limit from the error's context.
_WITH_CONTEXT: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "string_too_short": _too_short,
    "string_too_long": _too_long,
    "too_short": _too_short,
    "too_long": _too_long,
    "url_too_long": _too_long,
    "greater_than_equal": lambda ctx: f"must be at least {ctx['ge']}",
    "greater_than": lambda ctx: f"must be greater than {ctx['gt']}",
    "less_than_equal": lambda ctx: f"must be at most {ctx['le']}",
    "less_than": lambda ctx: f"must be less than {ctx['lt']}",
    "multiple_of": lambda ctx: f"must be a multiple of {ctx['multiple_of']}",
    "enum": lambda ctx: f"must be {ctx['expected']}",
    "literal_error": lambda ctx: f"must be {ctx['expected']}",
    "url_scheme": lambda ctx: f"must be a URL starting with {ctx['expected_schemes']}",
}


def rule(error: ErrorDetails, model: type[BaseModel] | None = None) -> str:
    """The rule ``error`` says the input broke, as a phrase to follow the field's name
    ("must be a UUID"). ``model``: where to find a pattern's description."""
    kind = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        described = _description(model, error["loc"])
        return f"must be {described}" if described else "is not in the accepted form"
    if kind in ("value_error", "assertion_error"):
        said = str(ctx["error"]) if "error" in ctx else error["msg"]
        return said.removeprefix(_CUSTOM_PREFIXES[0]).removeprefix(_CUSTOM_PREFIXES[1])
    if kind in _FIXED:
        return _FIXED[kind]
    wording = _WITH_CONTEXT.get(kind)
    if wording is not None:
        try:
            return wording(ctx)
        except KeyError:  # a context without the expected limit: say what pydantic says
            pass
    return error["msg"]


def _description(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str | None:
    """The ``description`` of the field at ``loc``, through nested models and their lists and
    dicts; lowercased first letter and no final period, to read as a rule."""
    field = None
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _nested_model(field.annotation)
    if field is None or not field.description:
        return None
    text = field.description.rstrip(".")
    return text[:1].lower() + text[1:]


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, alone or inside ``list[...]``, ``dict[...]`` or ``... | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, dict, tuple, set, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found is not None:
                return found
    return None
