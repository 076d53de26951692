"""How a worker process's broker is built: middleware, consumer, one actor per queue.

pgjobs/worker/app.py (the module ``dramatiq worker.app`` loads) calls :func:`build_broker`, which
installs the broker before any actor exists (no hidden default broker) and declares one actor
per queue that the registered job types use.
Dramatiq defaults overridden on purpose:

* no Dramatiq ``TimeLimit``: time limits are per job type, enforced by pgjobs/worker/leases.py;
* ``Retries`` only for infrastructure errors (PostgreSQL or Redis unreachable); a handler's
  errors are retried by the runner, counted in PostgreSQL, with the job type's backoff;
* a consumer that checks every message before claiming its job, and dead-letters the
  malformed ones instead of raising (pgjobs/worker/consumer.py, pgjobs/worker/messages.py);
* a queue's prefetch of three messages per thread, not two (:data:`PREFETCH_PER_THREAD`);
* the process logs what it serves at start and records it in Redis for the others
  (pgjobs/worker/presence.py).
"""

from __future__ import annotations

from typing import Any

import dramatiq
import dramatiq.worker as dramatiq_worker
import redis
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
)

from pgjobs.db.errors import DatabaseError
from pgjobs.producer import broker as broker_module
from pgjobs.producer.job_types import actor_name_for, queues
from pgjobs.producer.user_modules import import_user_modules
from pgjobs.services.locate import redis_url
from pgjobs.settings import get_settings
from pgjobs.worker import consumer
from pgjobs.worker.consumer import SafeRedisConsumer
from pgjobs.worker.presence import Presence
from pgjobs.worker.runner import lease_keeper, run_job

INFRA_RETRIES = 20


class WorkerBroker(broker_module.JobsBroker):
    """The producer's broker, with the consumer that survives malformed messages."""

    worker_threads: int | None = None
    """The worker's thread count once it boots (the consumer sizes its fetches by it)."""

    @property
    def consumer_class(self) -> type[SafeRedisConsumer]:
        return SafeRedisConsumer


PREFETCH_PER_THREAD = 3
"""A queue's prefetch unless ``dramatiq_queue_prefetch`` sets it: a message running on each
thread, one waiting for each thread, and one more for each thread fetched while those wait
(pgjobs/worker/consumer.py). Dramatiq's default of two per thread left no message waiting when
the next batch was fetched: with 5 ms handlers the threads idled through each fetch and claim."""


class ThreadCount(Middleware):
    """Tells the broker the worker's thread count at boot (the consumer sizes its fetches), and
    sets the queues' prefetch to :data:`PREFETCH_PER_THREAD` per thread unless
    ``dramatiq_queue_prefetch`` sets it."""

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        if isinstance(broker, WorkerBroker):
            broker.worker_threads = worker.worker_threads
            if not dramatiq_worker.QUEUE_PREFETCH:  # (the consumers are added after this)
                worker.queue_prefetch = min(worker.worker_threads * PREFETCH_PER_THREAD, 65535)


class GracefulShutdown(Middleware):
    """On SIGTERM, start the grace period after which running jobs are released, and wake the
    consumers waiting on empty queues so they see the stop at once."""

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        consumer.worker_booting()
        lease_keeper().end_shutdown()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        lease_keeper().begin_shutdown()
        consumer.wake_all_for_shutdown()


def retry_infrastructure_errors(retries: int, exception: BaseException) -> bool:
    """Dramatiq re-delivers only when the message could not be handled for lack of a database
    or Redis; the claim then decides whether there is anything left to do."""
    infra = isinstance(exception, DatabaseError | redis.ConnectionError | redis.TimeoutError)
    return infra and retries < INFRA_RETRIES


def build_broker() -> WorkerBroker:
    settings = get_settings()
    import_user_modules()
    broker = WorkerBroker(
        url=redis_url(settings),
        namespace=settings.redis_namespace,
        heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
        middleware=[
            AgeLimit(),
            ShutdownNotifications(),
            Callbacks(),
            Pipelines(),
            Retries(
                max_retries=INFRA_RETRIES,
                min_backoff=500,
                max_backoff=30_000,
                retry_when=retry_infrastructure_errors,
            ),
            CurrentMessage(),
            ThreadCount(),
            GracefulShutdown(),
            Presence(),
        ],
    )
    if settings.metrics_port is not None:
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    broker_module.set_broker(broker)
    for queue in queues():
        dramatiq.actor(
            actor_name=actor_name_for(queue),
            queue_name=queue,
            broker=broker,
            retry_when=retry_infrastructure_errors,
        )(run_job)
    return broker
