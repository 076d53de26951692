"""The job types this project ships: two content jobs and two service jobs.

Handlers live in pgjobs/worker/handlers/; only names, payload shapes and options live here.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pgjobs.producer.job_types import Backoff, job_type


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class McpPingPayload(_Payload):
    server_id: uuid.UUID


class CredentialCheckPayload(_Payload):
    credential_id: uuid.UUID


class FineTuneExample(_Payload):
    prompt: str = Field(min_length=1, max_length=20_000)
    completion: str = Field(min_length=1, max_length=20_000)


class FineTuneExportPayload(_Payload):
    """Upload a fine-tuning dataset (JSONL, chat format) to an OpenAI-compatible files API."""

    credential_id: uuid.UUID
    dataset_name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="1 to 100 letters, digits, dots, dashes and underscores",
    )
    examples: list[FineTuneExample] = Field(min_length=1, max_length=5_000)
    system_prompt: str | None = Field(default=None, max_length=5_000)


class ScheduledPreviewPayload(_Payload):
    """Build a preview of a team's upcoming games from a sports data provider."""

    credential_id: uuid.UUID
    provider: Literal["cfbd", "espn"] = "cfbd"
    season: int = Field(ge=1900, le=2100)
    week: int | None = Field(default=None, ge=1, le=25)
    team: str = Field(min_length=1, max_length=100)


mcp_ping = job_type(
    "mcp_ping",
    McpPingPayload,
    queue="service",
    max_attempts=3,
    time_limit_seconds=30,
    backoff=Backoff(base_seconds=1, max_seconds=30),
    description="Call an MCP server's base_url with its auth; record status and last_ping_at.",
)
credential_check = job_type(
    "credential_check",
    CredentialCheckPayload,
    queue="service",
    max_attempts=3,
    time_limit_seconds=30,
    backoff=Backoff(base_seconds=1, max_seconds=30),
    description="Validate a credential against its provider; record valid/invalid.",
)
fine_tune_export = job_type(
    "fine_tune_export",
    FineTuneExportPayload,
    queue="content",
    max_attempts=5,
    time_limit_seconds=900,
    description="Upload a JSONL fine-tuning dataset to the tenant's OpenAI account.",
)
scheduled_preview = job_type(
    "scheduled_preview",
    ScheduledPreviewPayload,
    queue="content",
    max_attempts=4,
    time_limit_seconds=300,
    description="Summarize a team's upcoming games from CFBD or ESPN.",
)
