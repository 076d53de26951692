"""The raw Dramatiq side: a stock RedisBroker and noop actors, nothing of this project.

``python -m dramatiq bench.raw_app`` loads this module in each worker process; the bench
process calls :func:`build` itself to send. The broker has Dramatiq's default middleware and
the namespace given by ``BENCH_RAW_NAMESPACE`` (one per run, like ours).
"""

from __future__ import annotations

import os
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

QUEUE = "bench"


NAP_SECONDS = 0.005


def build(redis_url: str, namespace: str) -> tuple[RedisBroker, Any, Any]:
    """(broker, noop actor, latency actor) on ``namespace``; the 5 ms actor is the broker's
    ``bench_nap``."""
    broker = RedisBroker(url=redis_url, namespace=namespace)

    def noop(n: int = 0) -> None:
        """Does nothing: what is measured is the queue's own cost."""

    def noop_latency(key: str, sent_ms: float) -> None:
        """Records enqueue-to-start latency: ``sent_ms`` is the producer's clock just before
        ``send`` (what Dramatiq stamps as ``message_timestamp``). The RPUSH is the raw side's
        only extra cost, one Redis command per job, paid after the time is taken."""
        started = time.time() * 1000 - sent_ms
        broker.client.rpush(key, started)

    def nap(n: int = 0) -> None:
        """Sleeps 5 ms, like our ``bench_nap`` (bench/noop_jobs.py)."""
        time.sleep(NAP_SECONDS)

    actors = (
        dramatiq.actor(noop, actor_name="bench_noop", queue_name=QUEUE, broker=broker),
        dramatiq.actor(nap, actor_name="bench_nap", queue_name=QUEUE, broker=broker),
        dramatiq.actor(
            noop_latency, actor_name="bench_noop_latency", queue_name=QUEUE, broker=broker
        ),
    )
    return broker, actors[0], actors[2]


if "BENCH_RAW_NAMESPACE" in os.environ:  # a worker process started by the bench
    broker, _, _ = build(os.environ["REDIS_URL"], os.environ["BENCH_RAW_NAMESPACE"])
    dramatiq.set_broker(broker)
