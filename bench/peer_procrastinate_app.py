"""The Procrastinate side: ``procrastinate --app=bench.peer_procrastinate_app.app worker``, as
its docs start it, with one noop task; the database comes from ``BENCH_PEER_DSN``."""

from __future__ import annotations

import os

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_PEER_DSN", ""))
)


@app.task(name="noop")
async def noop() -> None:
    """Does nothing: what is measured is the queue's own cost."""
