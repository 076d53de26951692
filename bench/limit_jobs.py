"""The 5 ms job type of bench/sleep_jobs.py with a concurrency limit of 3 per key (issue 17's
goal), for bench/limits.py."""

from __future__ import annotations

from bench.sleep_jobs import QUEUE, KeyedPayload, sleep
from pgjobs.producer.job_types import Limit, job_type
from pgjobs.worker.handlers.registry import handles

CONCURRENCY = 3

limited = job_type(
    "bench_limited",
    KeyedPayload,
    queue=QUEUE,
    concurrency=Limit(max=CONCURRENCY, key="payload.key"),
    description="bench: 5 ms, at most 3 at once per key",
)
handles(limited)(sleep)
