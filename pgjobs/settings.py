"""Every tunable value of the system, read once from the environment and `.env`.

RQ keeps its defaults in one module; so do we. Each field says what it tunes. Service URLs keep
their conventional names (DATABASE_URL, REDIS_URL); everything else is prefixed with ``JOBS_``.

The project directory (:func:`project_dir`) is found from the current directory, so a command
or script run anywhere in a project reads the project's `.env` and finds its embedded servers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_DIR_NAME = ".dev"
DEV_DIR_STATE = ("services.json", "postgres", "keys.txt")
"""What a `.dev` folder of ours holds once used: the embedded servers' state file and
PostgreSQL data (pgjobs/services/embedded.py), the development key file (pgjobs/vault/keys.py).
A `.dev` folder holding none of them is another tool's, and is passed by."""
PROJECT_MARKER = "pyproject.toml"


def find_dev_dir(start: Path | None = None) -> Path | None:
    """The nearest `.dev` folder of ours, looking in ``start`` (the current directory) and
    then in each parent; None when there is none."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / DEV_DIR_NAME
        if any((candidate / name).exists() for name in DEV_DIR_STATE):
            return candidate
    return None


def project_dir(start: Path | None = None) -> Path:
    """The project's directory: the one holding the nearest `.dev` folder of ours (from
    ``start``, the current directory, up); else the nearest one holding a pyproject.toml; else
    ``start`` itself. That is where `jobctl dev up` puts `.dev`, and where `.env` is read."""
    here = (start or Path.cwd()).resolve()
    found = find_dev_dir(here)
    if found is not None:
        return found.parent
    for folder in (here, *here.parents):
        if (folder / PROJECT_MARKER).is_file():
            return folder
    return here


def env_files(start: Path | None = None) -> tuple[Path, ...]:
    """The `.env` files read, the later winning: the project directory's, then the current
    directory's (the same file when the two are one)."""
    here = (start or Path.cwd()).resolve()
    return tuple(dict.fromkeys([project_dir(here) / ".env", here / ".env"]))


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
        default=Path(DEV_DIR_NAME),
        description="Folder for the embedded servers' data, logs and state file and the "
        "development key file. Unset: `.dev` in the project directory (the nearest one, from "
        "the current directory up, holding a `.dev` folder of ours, else a pyproject.toml, "
        "else the current directory).",
    )
    environment: Literal["development", "production"] = Field(
        default="development", description="Production logs JSON and refuses embedded servers."
    )
    log_level: str = Field(
        default="INFO",
        description="Log level of workers and `jobctl maintenance`; one-shot `jobctl` "
        "commands log warnings and errors only unless given `-v` (or a higher level here).",
    )
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
    fair_queues: str = Field(
        default="",
        description="Comma-separated queues whose tenants get fair shares (docs/limits.md): "
        "a tenant's due jobs beyond its share of in-flight jobs are held in PostgreSQL and "
        "sent as its earlier ones finish; '*' for every queue; empty: none.",
    )
    fair_share_in_flight: int = Field(
        default=64,
        ge=1,
        le=10000,
        description="A tenant's share of a fair queue, times its weight: how many of its due "
        "jobs may be queued or running at once. Give at least twice the queue's worker "
        "threads, or a lone tenant cannot keep every thread busy.",
    )
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
    unserved_warning_seconds: float = Field(
        default=60.0,
        description="The maintenance process warns, at most this often per job type, about "
        "jobs due this long that no running worker serves or whose type it does not know.",
    )
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
        description="Comma-separated modules that declare your job types (for workers: and "
        "handlers), imported from the current directory by worker processes and every "
        "`jobctl` command that needs job types (worker, maintenance, enqueue, jobs).",
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
        description="Longest pause of a busy consumer waiting for room for its next fetch.",
    )
    worker_idle_wait_ms: int = Field(
        default=1000,
        description="Longest an idle consumer blocks on its doorbell before it looks at its "
        "queue again (writers ring it; this catches what nobody rang for, such as messages "
        "requeued from a dead worker); also Dramatiq's worker_timeout for `jobctl worker`. "
        "Capped at a quarter of JOBS_BROKER_HEARTBEAT_TIMEOUT_MS.",
    )

    api_host: str = Field(default="127.0.0.1", description="Address `jobctl api` listens on.")
    api_port: int = Field(default=8000, description="Port `jobctl api` listens on.")
    api_workers: int = Field(default=1, description="API processes `jobctl api` starts.")
    api_rate_limit: int = Field(
        default=6000,
        description="Requests one API token may make per rate window, over all API processes "
        "(counted in Redis); 0 turns the limit off.",
    )
    api_rate_window_seconds: int = Field(
        default=60, description="Length of the API's rate-limit window."
    )
    api_token_cache_seconds: float = Field(
        default=5.0,
        description="How long an API process reuses a token lookup: a revocation takes effect "
        "within this long (open event streams end too).",
    )
    api_max_body_bytes: int = Field(
        default=1024 * 1024,
        description="Largest request body the API reads; larger is refused (413) unread.",
    )
    api_max_batch_body_bytes: int = Field(
        default=8 * 1024 * 1024, description="Largest body of POST /v1/jobs/batch."
    )
    api_event_poll_ms: int = Field(
        default=25,
        description="How often each API process reads new job events for its event streams "
        "(one query per process, whatever the number of streams; ten times less often while "
        "no stream is open).",
    )
    api_event_gap_seconds: float = Field(
        default=10.0,
        description="How long an event id seen missing (its transaction still open) is "
        "awaited by the event streams before it is given up.",
    )
    api_stream_heartbeat_seconds: float = Field(
        default=15.0, description="An idle event stream sends a comment this often."
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

    @model_validator(mode="after")
    def _dev_dir_of_the_project(self) -> Self:
        """Unset: the project's `.dev`, found from the current directory (:func:`project_dir`)."""
        if "dev_dir" not in self.model_fields_set:
            self.dev_dir = project_dir() / DEV_DIR_NAME
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (tests call ``get_settings.cache_clear()``), with the
    project's `.env` and the current directory's (:func:`env_files`)."""
    return Settings(_env_file=env_files())


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}.get(
        field, f"JOBS_{field.upper()}"
    )


SOURCE_ENV = "environment"
SOURCE_DOTENV = ".env"
SOURCE_DEFAULT = "default"


def setting_sources() -> dict[str, str]:
    """Where each setting's value comes from, by field name: the environment (which wins),
    the ``.env`` file, or the default."""
    from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource

    found = {
        SOURCE_ENV: set(EnvSettingsSource(Settings)()),
        SOURCE_DOTENV: set(DotEnvSettingsSource(Settings)()),
    }
    sources = {}
    for name, field in Settings.model_fields.items():
        keys = {name}
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            keys.update(choice for choice in alias.choices if isinstance(choice, str))
        sources[name] = next(
            (source for source, given in found.items() if keys & given), SOURCE_DEFAULT
        )
    return sources


def settings_reference() -> str:
    """Every setting as a Markdown table (docs/operations.md embeds it; a test keeps it current)."""
    lines = ["| variable | default | what it tunes |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None else str(default)
        lines.append(f"| `{env_name(name)}` | `{shown}` | {field.description} |")
    return "\n".join(lines)
