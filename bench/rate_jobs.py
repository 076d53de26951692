"""The 5 ms job type of bench/sleep_jobs.py with a rate of 20 starts per second per key (issue
17's goal), for bench/limits.py."""

from __future__ import annotations

from bench.sleep_jobs import QUEUE, KeyedPayload, sleep
from pgjobs.producer.job_types import Rate, job_type
from pgjobs.worker.handlers.registry import handles

RATE = 20

rated = job_type(
    "bench_rated",
    KeyedPayload,
    queue=QUEUE,
    rate=Rate(RATE, per=1.0, key="payload.key"),
    description="bench: 5 ms, at most 20 starts per second per key",
)
handles(rated)(sleep)
