"""A schedule's definition checked whole, the one boundary every write goes through.

``create``, ``update``, the declarations in code and ``sync`` all build a :class:`Definition`
with :func:`define` before any statement: a bad name, cron expression, time zone, interval,
policy or jitter is :class:`InvalidSchedule`; an unknown job type ``UnknownJobType``; a payload
that fails the type's model ``InvalidPayload`` (the same checks ``enqueue`` makes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypedDict, Unpack

from pydantic import BaseModel

from pgjobs.db.models.job_schedule import MisfirePolicy
from pgjobs.db.validation import as_int, as_text
from pgjobs.producer.job_types import JobType, get_job_type
from pgjobs.producer.payloads import validated_payload
from pgjobs.schedules.errors import InvalidSchedule
from pgjobs.schedules.timing import Timing, timing, whole_seconds
from pgjobs.settings import get_settings

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
"""Lowercase letters, digits, ``.``, ``_`` and ``-``, up to 100 characters."""
_NAME = re.compile(NAME_PATTERN)
CATCH_UP_MAX = 1000
"""The most missed slots ``catch_up`` fires for one schedule at once."""
JITTER_MAX_SECONDS = 86400


class Options(TypedDict, total=False):
    """A definition's keyword arguments (``create``, ``schedule`` and :func:`define` take
    the same ones)."""

    cron: str | None
    """Five cron fields, or ``@yearly``, ``@monthly``, ``@weekly``, ``@daily``, ``@hourly``."""
    every: float | timedelta | None
    """A fixed interval instead: whole seconds (or a timedelta)."""
    tz: str
    """The cron expression's IANA time zone (default UTC)."""
    payload: Mapping[str, Any] | BaseModel | None
    """Validated against the job type's model (default: empty)."""
    misfire: MisfirePolicy | str
    """``skip`` (default), ``run_once`` or ``catch_up``."""
    catch_up_limit: int | None
    """Required with ``catch_up``: missed slots fired at most."""
    jitter: float | timedelta
    """Each job runs up to this many seconds after its slot (default 0)."""


@dataclass(frozen=True, slots=True)
class Definition:
    """Everything a schedule row holds that its owner chooses, checked."""

    name: str
    job_type: str
    payload_json: str
    timing: Timing
    misfire_policy: MisfirePolicy
    catch_up_limit: int | None
    jitter_seconds: int

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.payload_json)
        return loaded


def define(name: object, job_type: object, **options: Unpack[Options]) -> Definition:
    """A checked definition from caller input (see the module's docstring for the errors)."""
    checked_name = schedule_name(name)
    found = job_type if isinstance(job_type, JobType) else get_job_type(job_type)  # type: ignore[arg-type]
    given: object = options.get("payload")
    given = {} if given is None else given
    if not isinstance(given, Mapping | BaseModel):
        raise InvalidSchedule.for_field("payload", "must be a mapping or a pydantic model")
    payload_json = validated_payload(found, given, get_settings().max_payload_bytes)
    policy = _policy(options.get("misfire", MisfirePolicy.SKIP))
    catch_up_limit = options.get("catch_up_limit")
    limit = None
    if policy is MisfirePolicy.CATCH_UP:
        if catch_up_limit is None:
            raise InvalidSchedule.for_field("catch_up_limit", "is required with catch_up")
        limit = as_int(catch_up_limit, "catch_up_limit", 1, CATCH_UP_MAX, InvalidSchedule)
    elif catch_up_limit is not None:
        raise InvalidSchedule.for_field("catch_up_limit", "is only for the catch_up policy")
    return Definition(
        name=checked_name,
        job_type=found.name,
        payload_json=payload_json,
        timing=timing(
            cron=options.get("cron"), every=options.get("every"), tz=options.get("tz", "UTC")
        ),
        misfire_policy=policy,
        catch_up_limit=limit,
        jitter_seconds=whole_seconds(options.get("jitter", 0), "jitter", 0, JITTER_MAX_SECONDS),
    )


def schedule_name(name: object) -> str:
    text = as_text(name, "name", min_length=1, max_length=100, error=InvalidSchedule)
    if not _NAME.fullmatch(text):
        raise InvalidSchedule.for_field("name", "lowercase letters, digits, '.', '_' and '-'")
    return text


def _policy(misfire: object) -> MisfirePolicy:
    try:
        return MisfirePolicy(misfire)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        allowed = ", ".join(MisfirePolicy)
        raise InvalidSchedule.for_field("misfire", f"must be one of: {allowed}") from None
