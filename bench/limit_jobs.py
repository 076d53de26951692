"""The 5 ms job type of bench/sleep_jobs.py, and the same with a concurrency limit of 3 per key
and with a rate of 20 per second per key (issue 17's goals), for bench/limits.py."""

from __future__ import annotations

from bench.sleep_jobs import QUEUE, KeyedPayload, plain, sleep
from pgjobs.producer.job_types import Limit, Rate, job_type
from pgjobs.worker.handlers.registry import handles

CONCURRENCY = 3
RATE = 20

limited = job_type(
    "bench_limited",
    KeyedPayload,
    queue=QUEUE,
    concurrency=Limit(max=CONCURRENCY, key="payload.key"),
    description="bench: 5 ms, at most 3 at once per key",
)
rated = job_type(
    "bench_rated",
    KeyedPayload,
    queue=QUEUE,
    rate=Rate(RATE, per=1.0, key="payload.key"),
    description="bench: 5 ms, at most 20 starts per second per key",
)
handles(limited)(sleep)
handles(rated)(sleep)

__all__ = ["CONCURRENCY", "RATE", "limited", "plain", "rated"]
