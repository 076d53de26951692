"""A worker process says what it serves: in its log at start, and to other processes through
Redis (pgjobs/producer/served.py), so that jobs no running worker serves are reported instead of
waiting silently.

At boot, the process logs ``worker.serving`` with the queues it consumes and the job types it
has handlers for, and warns about what it was asked for but cannot serve: a queue given with
``--queues`` that no job type known to it uses (``worker.queues_without_types``: the module
declaring it is missing from ``JOBS_IMPORTS``), and job types of its queues without a handler
(``worker.types_without_handler``: their jobs would fail). It then writes its record, again
every ``ANNOUNCE_SECONDS`` (with ``JOBS_METRICS_PORT`` set, also refreshing the
``pgjobs_unserved_jobs`` gauge), and removes it when it stops.
"""

from __future__ import annotations

import threading
from typing import Any

from dramatiq.middleware import Middleware

from pgjobs.logs import get_logger
from pgjobs.producer import served
from pgjobs.producer.broker import JobsBroker
from pgjobs.producer.job_types import all_job_types, limits_declared, rated_types
from pgjobs.producer.user_modules import user_module_names
from pgjobs.settings import get_settings
from pgjobs.worker import metrics
from pgjobs.worker.handlers.registry import get_handler
from pgjobs.worker.limits import refresh_limit_gauges
from pgjobs.worker.rates import refresh_rate_gauges

log = get_logger(__name__)


def served_by(worker: Any) -> tuple[list[str], list[str], list[str]]:
    """(queues the Dramatiq ``worker`` consumes, job types of those queues with a handler,
    job types of those queues without one)."""
    queues = sorted(q for q in worker.consumers if not q.endswith(".DQ"))
    types = [t.name for t in all_job_types() if t.queue in queues]
    handled = [name for name in types if get_handler(name) is not None]
    return queues, handled, [name for name in types if name not in handled]


class Presence(Middleware):
    """Logs what the worker serves at boot, keeps its record in Redis while it runs."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        queues, handled, unhandled = served_by(worker)
        log.info(
            "worker.serving",
            queues=queues,
            job_types=handled,
            imports=user_module_names(),
        )
        asked = set(worker.consumer_whitelist or ())
        if asked - set(queues):
            log.warning(
                "worker.queues_without_types",
                queues=sorted(asked - set(queues)),
                hint="no job type known to this worker uses them: add the module declaring "
                "their types (and handlers) to JOBS_IMPORTS",
            )
        if unhandled:
            log.warning(
                "worker.types_without_handler",
                job_types=unhandled,
                hint="their jobs fail: add the module of their handlers to JOBS_IMPORTS",
            )
        if not isinstance(broker, JobsBroker):
            return
        record = served.WorkerRecord.of_this_process(broker, queues, handled)
        self._announce(broker, record, first=True)  # before the first message is taken
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._keep, args=(broker, record), name="pgjobs-presence", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if isinstance(broker, JobsBroker):
            try:
                served.withdraw(broker)
            except Exception as exc:  # noqa: BLE001 - readers drop it once its heartbeat is old
                log.warning("worker.withdraw_failed", error_type=type(exc).__name__)

    def _keep(self, broker: JobsBroker, record: served.WorkerRecord) -> None:
        """Refresh the gauge when metrics are served, and write the record again, every
        ANNOUNCE_SECONDS until the worker stops."""
        while True:
            if get_settings().metrics_port is not None:
                try:
                    metrics.unserved(served.unserved_jobs())
                except Exception as exc:  # noqa: BLE001 - never let this thread die
                    log.warning("worker.unserved_gauge_failed", error_type=type(exc).__name__)
                if limits_declared():
                    refresh_limit_gauges()
                if rated_types():
                    refresh_rate_gauges()
            if self._stop.wait(served.ANNOUNCE_SECONDS):
                return
            self._announce(broker, record)

    @staticmethod
    def _announce(broker: JobsBroker, record: served.WorkerRecord, *, first: bool = False) -> None:
        """Write the record; a failure (Redis away) is logged and tried again next time."""
        try:
            served.announce(broker, record, first=first)
        except Exception as exc:  # noqa: BLE001
            log.warning("worker.announce_failed", error_type=type(exc).__name__)
