"""Small helpers shared by tests: Redis contents, tenants, encryption keys, the CLI runner,
production log lines captured."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import click
import pytest
import redis as redis_lib
import structlog
from click.testing import CliRunner, Result

from pgjobs.db.engine import reset_engine
from pgjobs.db.schemas.credential import CredentialRead
from pgjobs.db.tenants import create_tenant
from pgjobs.logs import configure_logging
from pgjobs.settings import get_settings
from pgjobs.vault.credentials import create_credential
from pgjobs.vault.keys import reset_cipher


def messages_for(client: redis_lib.Redis, namespace: str, queue: str) -> list[dict[str, object]]:
    """Every message body Dramatiq holds for ``queue`` (waiting or delayed)."""
    bodies = []
    for key in (f"{namespace}:{queue}.msgs", f"{namespace}:{queue}.DQ.msgs"):
        bodies.extend(json.loads(v) for v in client.hgetall(key).values())
    return bodies


def job_ids_in_redis(client: redis_lib.Redis, namespace: str, queue: str) -> list[int]:
    return [int(m["args"][0]) for m in messages_for(client, namespace, queue)]  # type: ignore[index]


def make_tenant(slug: str | None = None) -> uuid.UUID:
    slug = slug or f"t-{uuid.uuid4().hex[:12]}"
    return create_tenant(name=slug, slug=slug).id


new_tenant = make_tenant

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()


def set_keys(monkeypatch: pytest.MonkeyPatch, spec: str, active: str | None = None) -> None:
    """Configure JOBS_ENCRYPTION_KEYS (and the active id) and drop every cached key."""
    monkeypatch.setenv("JOBS_ENCRYPTION_KEYS", spec)
    monkeypatch.delenv("JOBS_KEY_FILE", raising=False)
    if active is None:
        monkeypatch.delenv("JOBS_ACTIVE_KEY_ID", raising=False)
    else:
        monkeypatch.setenv("JOBS_ACTIVE_KEY_ID", active)
    get_settings.cache_clear()
    reset_cipher()


def jobctl(
    *args: str, stdin: bytes | None = None, tz: str = "UTC", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `jobctl` process, against this test's database and Redis namespace (the
    fixtures put them in the environment; ``env`` adds to it), in the time zone ``tz``."""
    proc = subprocess.run(
        [sys.executable, "-c", "from pgjobs.cli.main import main; main()", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env={**os.environ, "TZ": tz, **(env or {})},
        timeout=60,
    )
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode(errors="backslashreplace"),
        proc.stderr.decode(errors="backslashreplace"),
    )


def invoke(group: click.Group, *args: str, input: str | None = None) -> Result:
    """Run a `jobctl` command group in-process (stdout and stderr together in .output)."""
    return CliRunner().invoke(group, list(args), input=input, catch_exceptions=False)


SECRET = "sk-test-0123456789abcdef"

APP_JOBS_MODULE = """
from pydantic import BaseModel

import pgjobs


class Thumbnail(BaseModel):
    image_id: int


thumbnail = pgjobs.job_type("thumbnail", Thumbnail, queue="media")


@pgjobs.handles(thumbnail)
def make(ctx: pgjobs.JobContext[Thumbnail]) -> dict[str, int]:
    return {"image_id": ctx.payload.image_id}
"""
"""An application's ``myapp/jobs.py`` (a job type and its handler), for tests that run
`jobctl` from an application's folder."""


def add(
    tenant: uuid.UUID, name: str = "default", secret: str = SECRET, provider: str = "openai"
) -> CredentialRead:
    """Store a credential through the API (keys must be configured: the ``keys`` fixture)."""
    return create_credential(tenant, provider=provider, name=name, secret=secret)


@contextmanager
def json_logs(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> Iterator[io.StringIO]:
    """Production logging (JSON) at DEBUG, SQL statements included, rendered into a buffer.

    ``modules``: modules whose module-level ``log`` is used in the test; structlog loggers cache
    their configuration on first use, so they get fresh ones.
    """
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    monkeypatch.setenv("JOBS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("JOBS_LOG_FORMAT", "json")
    get_settings.cache_clear()
    reset_engine()
    configure_logging(force=True)
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(root.handlers[0].formatter)
    root.addHandler(capture)
    for module in modules:
        monkeypatch.setattr(module, "log", structlog.get_logger(module.__name__))
    try:
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.configure(**saved[2])
