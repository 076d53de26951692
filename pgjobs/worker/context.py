"""What a handler gets: the typed payload and the job's controls.

* ``progress(percent, message)`` records progress (coalesced: at most one write per
  ``progress_interval`` unless the percent reaches 100), and is a checkpoint;
* ``credential(credential_id)`` decrypts a credential of the job's tenant in memory for the
  duration of a ``with`` block, and is a checkpoint; under the worker, the value stays redacted
  from the attempt's log lines and progress messages until the attempt ends, and a result that
  carries it fails the job (pgjobs/worker/runner.py);
* ``checkpoint()`` raises :class:`JobCancelled` if the job was asked to cancel, or
  :class:`LeaseLost` if another worker took it over;
* ``log`` is a structlog logger bound to job_id, tenant_id, message_id, job_type and attempt.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from pgjobs.db.storable import storable_text
from pgjobs.vault.redaction import redact_text
from pgjobs.worker.errors import JobCancelled, LeaseLost

if TYPE_CHECKING:
    from pgjobs.worker.credentials import Plaintext

P = TypeVar("P", bound=BaseModel)

_MAX_MESSAGE = 500


@dataclass
class JobControls:
    """The runner's side of a context: how progress is written and the lease checked.

    ``write_progress(percent, message)`` and ``refresh()`` return ``(held, cancel_requested)``.
    """

    write_progress: Callable[[int, str | None], tuple[bool, bool]]
    refresh: Callable[[], tuple[bool, bool]]
    open_credential: Callable[[uuid.UUID], Any]
    progress_interval: float = 0.5
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    lease_lost: threading.Event = field(default_factory=threading.Event)


class JobContext(Generic[P]):
    """Handed to a handler for one attempt of one job."""

    def __init__(
        self,
        *,
        job_id: int,
        tenant_id: uuid.UUID,
        job_type: str,
        attempt: int,
        max_attempts: int,
        message_id: str | None,
        payload: P,
        log: Any,
        controls: JobControls,
    ) -> None:
        self.job_id = job_id
        self.tenant_id = tenant_id
        self.job_type = job_type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.message_id = message_id
        self.payload = payload
        self.log = log
        self._controls = controls
        self._last_write = 0.0
        self._pending: tuple[int, str | None] | None = None

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job_id}, type={self.job_type}, attempt={self.attempt})"

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (0-100). Frequent calls are coalesced; a checkpoint. The message is
        stored in the job's events: known secrets are redacted from it (before it is cut, so
        no part of one is left), and characters PostgreSQL cannot store (NUL, lone surrogates)
        become U+FFFD."""
        if not math.isfinite(percent):
            raise ValueError("progress percent must be a finite number")
        value = max(0, min(100, int(percent)))
        if message is not None:
            message = storable_text(redact_text(str(message)))[:_MAX_MESSAGE]
        now = time.monotonic()
        if value < 100 and now - self._last_write < self._controls.progress_interval:
            self._pending = (value, message)
            self._check_flags()
            return
        self._write(value, message, now)

    def flush_progress(self) -> None:
        """Write a coalesced progress report still waiting (the runner calls this at the end)."""
        if self._pending is not None:
            self._write(*self._pending, time.monotonic())

    def checkpoint(self) -> None:
        """Stop here if the job was asked to cancel or this worker lost it."""
        self._check_flags()

    @contextmanager
    def credential(self, credential_id: uuid.UUID) -> Iterator[Plaintext]:
        """Decrypt one of the tenant's credentials for the block; a checkpoint first."""
        self._check_flags()
        with self._controls.open_credential(credential_id) as plaintext:
            yield plaintext

    def _write(self, percent: int, message: str | None, now: float) -> None:
        self._pending = None
        self._last_write = now
        held, cancel = self._controls.write_progress(percent, message)
        self._apply(held, cancel)
        self._check_flags()

    def _apply(self, held: bool, cancel: bool) -> None:
        if not held:
            self._controls.lease_lost.set()
        if cancel:
            self._controls.cancel_requested.set()

    def _check_flags(self) -> None:
        if self._controls.lease_lost.is_set():
            raise LeaseLost(f"job {self.job_id} is no longer held by this worker")
        if self._controls.cancel_requested.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")
