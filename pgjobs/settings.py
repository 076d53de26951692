"""Every tunable value of the system, read once from the environment and `.env`.

RQ keeps its defaults in one module; so do we. Each field says what it tunes. Service URLs keep
their conventional names (DATABASE_URL, REDIS_URL); everything else is prefixed with ``JOBS_``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide configuration. Build with :func:`get_settings`, never at import time."""

    model_config = SettingsConfigDict(
        env_prefix="JOBS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "JOBS_DATABASE_URL"),
        description="PostgreSQL URL. Unset: use the embedded server started by `jobctl dev up`.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "JOBS_REDIS_URL"),
        description="Redis URL. Unset: use the embedded server started by `jobctl dev up`.",
    )
    dev_dir: Path = Field(
        default=Path(".dev"),
        description="Project-local folder for the embedded servers' data, logs and state file.",
    )
    environment: Literal["development", "production"] = Field(
        default="development", description="Production logs JSON and refuses embedded servers."
    )
    log_level: str = Field(default="INFO", description="Root log level.")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal in development, else JSON."
    )
    slow_query_ms: float = Field(
        default=250.0, description="Queries slower than this are logged at warning level."
    )
    db_pool_size: int = Field(default=5, description="SQLAlchemy pool size per process.")
    db_max_overflow: int = Field(default=10, description="Extra connections beyond the pool.")
    db_statement_timeout_ms: int = Field(
        default=30_000, description="Server-side statement_timeout for every connection."
    )

    redis_namespace: str = Field(
        default="pgjobs", description="Prefix of every Redis key the broker writes."
    )
    max_payload_bytes: int = Field(
        default=256 * 1024, description="Largest accepted job payload, as compact JSON."
    )
    page_size_max: int = Field(default=500, description="Largest page the status API returns.")
    relay_pending_after_seconds: float = Field(
        default=5.0, description="A pending row older than this is re-sent by the relay."
    )
    relay_queued_after_seconds: float = Field(
        default=30.0,
        description="A queued row untouched this long is checked for a lost Redis message.",
    )
    broker_heartbeat_timeout_ms: int = Field(
        default=60_000,
        description="A worker silent on Redis this long is presumed dead; its unacked "
        "messages are requeued (Dramatiq's heartbeat_timeout).",
    )
    schedule_horizon_seconds: float = Field(
        default=300.0,
        description="Jobs due further out than this stay pending in PostgreSQL; the relay "
        "sends them when they come within it (Redis only holds near-term delays).",
    )
    relay_batch_size: int = Field(default=500, description="Rows the relay handles per pass.")
    lease_seconds: float = Field(
        default=30.0, description="How long a claim holds a job before it can be rescued."
    )
    heartbeat_seconds: float = Field(
        default=2.0,
        description="How often a worker extends its jobs' leases and notices cancellations.",
    )
    progress_interval_seconds: float = Field(
        default=0.5, description="Progress reports closer together than this are coalesced."
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        description="On SIGTERM, running jobs get this long to finish before being released.",
    )
    rescue_grace_seconds: float = Field(
        default=0.0, description="Extra time past lease expiry before the rescuer acts."
    )
    maintenance_interval_seconds: float = Field(
        default=1.0, description="Pause between two passes of the maintenance loop."
    )
    retention_days: float = Field(
        default=30.0, description="Terminal jobs (and their events) older than this are pruned."
    )
    prune_batch_size: int = Field(default=1000, description="Jobs deleted per pruning statement.")
    scheduler_interval_seconds: float = Field(
        default=0.25,
        description="How often the maintenance process looks for schedules with a slot due "
        "(an idle look is one indexed query).",
    )
    scheduler_threads: int = Field(
        default=2,
        description="Threads a scheduler pass fires its batches with once more than one batch "
        "is due (one waits for PostgreSQL while another prepares jobs).",
    )
    schedule_batch_size: int = Field(
        default=1000, description="Schedules fired per transaction by the scheduler."
    )
    schedule_misfire_grace_seconds: float = Field(
        default=60.0,
        description="A slot found later than this after its time is missed: its schedule's "
        "misfire policy decides what happens to it. Slots within it always fire.",
    )
    imports: str = Field(
        default="",
        description="Comma-separated modules that declare job types and handlers; workers "
        "and the maintenance process import them at start.",
    )
    worker_processes: int = Field(default=2, description="Worker processes for `jobctl worker`.")
    worker_threads: int = Field(default=8, description="Threads per worker process.")
    metrics_port: int | None = Field(
        default=None,
        description="Serve Prometheus metrics of all worker processes on this port "
        "(Dramatiq's exposition server; unset: no metrics endpoint).",
    )
    worker_poll_ms: int = Field(
        default=10,
        description="Longest pause of an idle worker between two polls of Redis "
        "(Dramatiq's worker_timeout; its default is 1000).",
    )

    openai_base_url: str = Field(
        default="https://api.openai.com/v1", description="OpenAI-compatible API root."
    )
    cfbd_base_url: str = Field(
        default="https://api.collegefootballdata.com", description="CollegeFootballData API root."
    )
    espn_base_url: str = Field(
        default="https://site.api.espn.com/apis/site/v2/sports/football/college-football",
        description="ESPN site API root.",
    )
    http_timeout_seconds: float = Field(
        default=15.0, description="Timeout of every outbound provider or MCP call."
    )

    encryption_keys: SecretStr | None = Field(
        default=None,
        description="Credential keys: 'key_id:base64-32-bytes' entries separated by commas.",
    )
    active_key_id: str | None = Field(
        default=None, description="Key id new ciphertexts use. Default: the first key listed."
    )
    key_file: Path | None = Field(
        default=None,
        description="File with one 'key_id:base64' per line; a line starting '*' is active.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (tests call ``get_settings.cache_clear()``)."""
    return Settings()


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}.get(
        field, f"JOBS_{field.upper()}"
    )


def settings_reference() -> str:
    """Every setting as a Markdown table (docs/operations.md embeds it; a test keeps it current)."""
    lines = ["| variable | default | what it tunes |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None else str(default)
        lines.append(f"| `{env_name(name)}` | `{shown}` | {field.description} |")
    return "\n".join(lines)
