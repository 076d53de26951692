"""Job types: a name, a pydantic payload model and options, declared in a few lines.

Producers validate payloads against the type without importing any worker code; workers look
the same type up by name to find its handler. ::

    class ResizePayload(BaseModel):
        image_id: int

    resize = job_type("resize_image", ResizePayload, queue="media", max_attempts=5)
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from pgjobs.producer.errors import UnknownJobType

P = TypeVar("P", bound=BaseModel)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_QUEUE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits up to min(max, base * factor^(n-1))."""

    base_seconds: float = 2.0
    factor: float = 2.0
    max_seconds: float = 300.0
    jitter: bool = True

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` >= 1 just failed)."""
        ceiling = min(self.max_seconds, self.base_seconds * self.factor ** max(attempt - 1, 0))
        if not self.jitter:
            return ceiling
        # "Equal jitter": never less than half the ceiling, so retries still back off.
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


_KEY_WORDS = ("tenant", "job_type")
_PAYLOAD_PATH = re.compile(r"^payload(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_SCOPE = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
MAX_KEY_LENGTH = 300


KeySpec = str | Callable[[Mapping[str, Any]], object]
"""A limit's key: ``"tenant"``, ``"job_type"``, ``"payload.<field>[.<field>]"`` or a function
of the payload (a dict) returning a string, number or UUID (docs/limits.md)."""


def _check_key(kind: str, key: KeySpec, scope: str | None) -> None:
    if isinstance(key, str):
        if key not in _KEY_WORDS and not _PAYLOAD_PATH.match(key):
            raise ValueError(
                f"{kind} key {key!r}: 'tenant', 'job_type', 'payload.<field>[.<field>]'"
                " or a function of the payload"
            )
    elif not callable(key):
        raise ValueError(f"{kind} key must be a string or a function of the payload")
    if scope is not None and not _SCOPE.match(scope):
        raise ValueError(f"{kind} scope {scope!r}: lowercase letters, digits, _")


def _key_for(
    key: KeySpec, scope: str | None, job_type: str, tenant_id: object, payload: Mapping[str, Any]
) -> str:
    """``<scope>:<value>``; a payload field that is missing, or a function that fails, is a
    :class:`ValueError` (the enqueue refuses it)."""
    if key == "tenant":
        value: object = tenant_id
    elif key == "job_type":
        value = job_type
    elif isinstance(key, str):
        value = payload
        for part in key.split(".")[1:]:
            if not isinstance(value, Mapping) or part not in value:
                raise ValueError(f"the payload has no {key[len('payload.') :]!r}")
            value = value[part]
    else:
        value = key(payload)
    if value is None or isinstance(value, Mapping | list):
        raise ValueError("the key must be a string, number or UUID")
    stored = f"{scope or job_type}:{value}"
    if len(stored) > MAX_KEY_LENGTH:
        raise ValueError(f"the key is longer than {MAX_KEY_LENGTH} characters")
    return stored


def _is_int_between(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@dataclass(frozen=True)
class Limit:
    """At most ``max`` jobs with the same key run at any instant, across every worker
    (docs/limits.md). ``key``: ``"tenant"``, ``"job_type"``, a payload field
    (``"payload.credential_id"``) or a function of the payload (a dict) returning a string.
    ``scope``: limits with the same scope and key value share their slots across job types
    (default: the job type's name)."""

    max: int
    key: KeySpec = "tenant"
    scope: str | None = None

    def __post_init__(self) -> None:
        if not _is_int_between(self.max, 1, 10_000):
            raise ValueError("Limit max must be an integer from 1 to 10000")
        _check_key("Limit", self.key, self.scope)

    def key_for(self, job_type: str, tenant_id: object, payload: Mapping[str, Any]) -> str:
        """The key stored on the job's row: ``<scope>:<value>``. A payload field that is
        missing, or a function that fails, is a :class:`ValueError` (the enqueue refuses it)."""
        return _key_for(self.key, self.scope, job_type, tenant_id, payload)


MAX_RATE = 1000
"""The most starts a rate admits per window: its window keeps one timestamp per start."""


@dataclass(frozen=True)
class Rate:
    """At most ``n`` jobs with the same key start in any window of ``per`` seconds, across
    every worker (a sliding window: docs/limits.md). ``key`` and ``scope`` as for
    :class:`Limit`; rates with the same scope and key value share their window."""

    n: int
    per: float = 1.0
    key: KeySpec = "tenant"
    scope: str | None = None

    def __post_init__(self) -> None:
        if not _is_int_between(self.n, 1, MAX_RATE):
            raise ValueError(f"Rate n must be an integer from 1 to {MAX_RATE}")
        per = self.per
        if isinstance(per, bool) or not isinstance(per, int | float) or not 0.01 <= per <= 86400:
            raise ValueError("Rate per must be a number of seconds from 0.01 to 86400")
        _check_key("Rate", self.key, self.scope)

    def key_for(self, job_type: str, tenant_id: object, payload: Mapping[str, Any]) -> str:
        """The job's rate key, ``<scope>:<value>`` (as :meth:`Limit.key_for`)."""
        return _key_for(self.key, self.scope, job_type, tenant_id, payload)


@dataclass(frozen=True)
class JobType(Generic[P]):
    """What a producer and a worker agree on about one kind of job."""

    name: str
    payload_model: type[P]
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    time_limit_seconds: float = 600.0
    backoff: Backoff = field(default_factory=Backoff)
    description: str = ""
    concurrency: Limit | None = None
    rate: Rate | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"job type name {self.name!r}: lowercase letters, digits, _")
        if not _QUEUE.match(self.queue):
            raise ValueError(f"queue name {self.queue!r}: lowercase letters, digits, _ and -")
        if not 1 <= self.max_attempts <= 100:
            raise ValueError("max_attempts must be between 1 and 100")
        if self.time_limit_seconds <= 0:
            raise ValueError("time_limit_seconds must be positive")
        if self.concurrency is not None and not isinstance(self.concurrency, Limit):
            raise ValueError("concurrency must be a Limit")
        if self.rate is not None and not isinstance(self.rate, Rate):
            raise ValueError("rate must be a Rate")

    @property
    def actor_name(self) -> str:
        """The Dramatiq actor that runs this type's queue (one actor per queue)."""
        return actor_name_for(self.queue)


def actor_name_for(queue: str) -> str:
    return f"pgjobs_run__{queue}"


_registry: dict[str, JobType[BaseModel]] = {}


def job_type(
    name: str,
    payload_model: type[P],
    *,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int = 3,
    time_limit_seconds: float = 600.0,
    backoff: Backoff | None = None,
    description: str = "",
    concurrency: Limit | None = None,
    rate: Rate | None = None,
) -> JobType[P]:
    """Declare and register a job type. Declaring the same name twice is an error."""
    declared = JobType(
        name=name,
        payload_model=payload_model,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        time_limit_seconds=time_limit_seconds,
        backoff=backoff or Backoff(),
        description=description,
        concurrency=concurrency,
        rate=rate,
    )
    existing = _registry.get(name)
    if existing is not None and existing != declared:
        raise ValueError(f"job type {name!r} is already declared differently")
    _registry[name] = declared  # type: ignore[assignment]
    return declared


def get_job_type(name: str) -> JobType[BaseModel]:
    """The registered type called ``name`` (built-in types are registered on first use)."""
    _load_builtins()
    found = _registry.get(name) if isinstance(name, str) else None
    if found is None:
        raise UnknownJobType(f"unknown job type {ascii(name)[:100]}")
    return found


def all_job_types() -> list[JobType[BaseModel]]:
    _load_builtins()
    return sorted(_registry.values(), key=lambda t: t.name)


def limits_declared() -> bool:
    """Whether any registered type has a concurrency limit: claims then take the limited path
    (pgjobs/worker/state_writer.py); without one they cost what they did before limits."""
    return any(t.concurrency is not None for t in _registry.values())


def rated_types() -> dict[str, Rate]:
    """The registered types with a rate, by name: with any, a claim round reads their jobs'
    payloads to compute rate keys (pgjobs/worker/rates.py); with none, it costs nothing more."""
    return {t.name: t.rate for t in _registry.values() if t.rate is not None}


def queues() -> list[str]:
    """Every queue some registered type uses."""
    return sorted({t.queue for t in all_job_types()})


def unregister(name: str) -> None:
    """Forget a type (tests declaring throwaway types)."""
    _registry.pop(name, None)


def _load_builtins() -> None:
    import pgjobs.producer.builtin_types  # noqa: F401  (registers on import)
