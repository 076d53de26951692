"""Which function runs which job type. Handlers register with ``@handles(job_type)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from pgjobs.producer.job_types import JobType
from pgjobs.worker.context import JobContext

P = TypeVar("P", bound=BaseModel)
Handler = Callable[[JobContext[Any]], Any]

_handlers: dict[str, Handler] = {}


def handles(job_type: JobType[P]) -> Callable[[Callable[[JobContext[P]], Any]], Handler]:
    """Register the decorated function as the handler of ``job_type``.

    The function receives a :class:`JobContext` whose ``payload`` is the validated model and
    returns a JSON-serializable result (stored in ``content_jobs.result``) or None.
    """

    def register(func: Callable[[JobContext[P]], Any]) -> Handler:
        _handlers[job_type.name] = func
        return func

    return register


def get_handler(name: str) -> Handler | None:
    _load_builtins()
    return _handlers.get(name)


def unregister(name: str) -> None:
    _handlers.pop(name, None)


def _load_builtins() -> None:
    import pgjobs.worker.handlers.builtin  # noqa: F401  (registers on import)
