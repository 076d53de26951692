"""A producer process for tests/test_enqueue_concurrent.py: ``THREADS`` threads enqueue at
once (even threads one job a call, odd ones batches of ten), half the jobs under idempotency
keys every thread and process shares; prints what each call returned, one JSON line per job:
``[job id, created, key]``."""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid

from pgjobs.producer import JobRequest, enqueue, enqueue_many, flush

THREADS = int(os.environ["TEST_THREADS"])
JOBS = int(os.environ["TEST_JOBS_PER_THREAD"])
TENANT = uuid.UUID(os.environ["TEST_TENANT"])
TAG = os.environ["TEST_TAG"]
PAYLOAD = {"credential_id": str(uuid.uuid4()), "season": 2026, "team": "Navy"}


def main() -> None:
    barrier = threading.Barrier(THREADS)
    out: list[tuple[int, bool, str | None]] = []
    errors: list[BaseException] = []

    def produce(n: int) -> None:
        keys = [f"shared-{i}" if i % 2 == 0 else None for i in range(JOBS)]
        got: list[tuple[int, bool, str | None]] = []
        try:
            barrier.wait()
            if n % 2 == 0:
                for key in keys:
                    job = enqueue(
                        "scheduled_preview", PAYLOAD, tenant_id=TENANT, idempotency_key=key
                    )
                    got.append((job.id, job.created, key))
            else:
                for i in range(0, JOBS, 10):
                    chunk = keys[i : i + 10]
                    requests = [
                        JobRequest("scheduled_preview", PAYLOAD, TENANT, idempotency_key=k)
                        for k in chunk
                    ]
                    jobs = enqueue_many(requests)
                    got += [(j.id, j.created, k) for j, k in zip(jobs, chunk, strict=True)]
        except BaseException as exc:
            errors.append(exc)
        out.extend(got)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert flush(timeout=30)
    for item in out:
        print(json.dumps(item))
    if errors:
        print(f"{TAG}: {errors!r}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
