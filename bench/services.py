"""Servers, scratch databases and Redis namespaces: every measure gets fresh ones.

A run never touches user data: each measure creates a database of its own on the configured
(or embedded) server, migrates it, points the library at it through the environment, and uses
a Redis namespace of its own, deleted afterwards.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
import redis

from pgjobs.db import migrate
from pgjobs.db.engine import reset_engine
from pgjobs.db.scratch import scratch_database
from pgjobs.producer import broker as broker_module
from pgjobs.services.local import ensure_local_services
from pgjobs.settings import get_settings

QUEUE = "bench"
"""The one queue both sides use."""


@dataclass(frozen=True)
class Servers:
    database_url: str
    redis_url: str


def servers() -> Servers:
    """DATABASE_URL / REDIS_URL when set, else the embedded servers (started if needed)."""
    database_url, redis_url = ensure_local_services()
    return Servers(database_url, redis_url)


@dataclass
class Env:
    """One measure's scratch database and Redis namespace, with the library pointed at them."""

    servers: Servers
    database_url: str
    namespace: str
    settings: dict[str, str] = field(default_factory=dict)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.servers.redis_url)

    def pg(self) -> psycopg.Connection[tuple[object, ...]]:
        """A plain autocommit connection for the bench's own probes (not the library's pool)."""
        return psycopg.connect(self.database_url, autocommit=True)

    def worker_env(self) -> dict[str, str]:
        """Environment for our worker processes: the same services, namespace and settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.servers.redis_url,
            JOBS_REDIS_NAMESPACE=self.namespace,
            JOBS_IMPORTS="bench.noop_jobs",
            JOBS_LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.settings)
        return env


def _point_library(database_url: str, redis_url: str, namespace: str, **extra: str) -> None:
    os.environ.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        JOBS_REDIS_NAMESPACE=namespace,
        JOBS_IMPORTS="bench.noop_jobs",
        **extra,
    )
    get_settings.cache_clear()
    reset_engine()
    broker_module.set_broker(None)


@contextmanager
def scratch(srv: Servers, **settings: str) -> Iterator[Env]:
    """A migrated scratch database and a fresh namespace for the block, both removed after.

    ``settings`` are JOBS_* variables (``retention_days="0.00001"``) for this process and the
    workers it starts.
    """
    extra = {f"JOBS_{k.upper()}": v for k, v in settings.items()}
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "REDIS_URL", *extra)}
    with scratch_database(srv.database_url, prefix="pgjobs_bench") as url:
        migrate.upgrade("head", url)
        namespace = f"pgjobs-bench-{secrets.token_hex(4)}"
        _point_library(url, srv.redis_url, namespace, **extra)
        env = Env(srv, url, namespace, extra)
        try:
            yield env
        finally:
            reset_engine()
            broker_module.set_broker(None)
            delete_namespace(srv.redis_url, namespace)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()


def delete_namespace(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()


def raw_namespace() -> str:
    return f"dramatiq-bench-{secrets.token_hex(4)}"


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
