"""Job types: a name, a pydantic payload model and options, declared in a few lines.

Producers validate payloads against the type without importing any worker code; workers look
the same type up by name to find its handler. ::

    class ResizePayload(BaseModel):
        image_id: int

    resize = job_type("resize_image", ResizePayload, queue="media", max_attempts=5)
"""

from __future__ import annotations

import importlib
import random
import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar

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

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"job type name {self.name!r}: lowercase letters, digits, _")
        if not _QUEUE.match(self.queue):
            raise ValueError(f"queue name {self.queue!r}: lowercase letters, digits, _ and -")
        if not 1 <= self.max_attempts <= 100:
            raise ValueError("max_attempts must be between 1 and 100")
        if self.time_limit_seconds <= 0:
            raise ValueError("time_limit_seconds must be positive")

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


def queues() -> list[str]:
    """Every queue some registered type uses."""
    return sorted({t.queue for t in all_job_types()})


def unregister(name: str) -> None:
    """Forget a type (tests declaring throwaway types)."""
    _registry.pop(name, None)


def import_declared_modules() -> None:
    """Import the modules named in ``JOBS_IMPORTS`` so their job types (and, in a worker, their
    handlers) register: every process that validates or runs jobs does it at start."""
    from pgjobs.settings import get_settings

    for name in filter(None, (n.strip() for n in get_settings().imports.split(","))):
        importlib.import_module(name)


def _load_builtins() -> None:
    import pgjobs.producer.builtin_types  # noqa: F401  (registers on import)
