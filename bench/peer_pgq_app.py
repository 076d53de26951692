"""The pgqueuer side: the factory its docs start with ``pgq run bench.peer_pgq_app:main``.

One asyncpg connection per worker process, one noop entrypoint; the database comes from
``PGQUEUER_DSN`` (the variable pgqueuer's own CLI reads).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["PGQUEUER_DSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        """Does nothing: what is measured is the queue's own cost."""

    try:
        yield pgq
    finally:
        await connection.close()
