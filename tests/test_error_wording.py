"""Validation errors say which rule a field breaks in plain words: no pydantic phrasing, no
regular expression, never the value."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from helpers import invoke
from pydantic import BaseModel, Field, ValidationError

import pgjobs.mcp.registry as mcp
from pgjobs.cli.mcp_commands import mcp as mcp_cli
from pgjobs.db.errors import InvalidInput
from pgjobs.db.tenants import create_tenant
from pgjobs.db.validation_wording import rule
from pgjobs.producer import InvalidPayload, enqueue
from pgjobs.vault.credentials import create_credential

# What pydantic says and we must not: its phrasing, its internals, a pattern.
PYDANTIC_WORDS = ("should", "Value error", "after validation", "Field required", "Extra inputs")
PATTERN_SIGNS = ("^", "$", "[a-z", "pattern")
VALUE = "DO-NOT-ECHO-42"


def message_of(call: Callable[[], object], error: type[Exception]) -> str:
    with pytest.raises(error) as info:
        call()
    text = str(info.value)
    for word in (*PYDANTIC_WORDS, *PATTERN_SIGNS, VALUE):
        assert word not in text, (word, text)
    return text


def test_tenant(use_session_db: str) -> None:
    text = message_of(lambda: create_tenant(name="", slug=f"Not {VALUE}"), InvalidInput)
    assert text == (
        "invalid input: name: must not be empty; slug: must be 1 to 64 lowercase letters, "
        "digits and dashes, not starting or ending with a dash"
    )


def test_credential(tenant: uuid.UUID) -> None:
    text = message_of(
        lambda: create_credential(tenant, provider=VALUE, name=f"-{VALUE}", secret=""),
        InvalidInput,
    )
    assert text == (
        "invalid input: provider: must be 'openai', 'espn', 'cfbd' or 'custom'; "
        "name: must be 1 to 200 letters, digits, spaces, dots, dashes and underscores, "
        "starting with a letter or digit; secret: must not be empty"
    )


def test_mcp_server_auth_and_url(tenant: uuid.UUID) -> None:
    text = message_of(
        lambda: mcp.create_mcp_server(
            tenant, label="s", base_url=f"ftp://{VALUE}", auth_type="token"
        ),
        InvalidInput,
    )
    assert text == (
        "invalid input: base_url: must be a URL starting with 'http' or 'https'; "
        "auth_ref: is required when auth_type is 'token': the credential to authenticate with"
    )
    with pytest.raises(InvalidInput) as info:
        mcp.create_mcp_server(tenant, label="s", base_url="https://m.example", auth_type="token")
    assert info.value.fields == ("auth_ref",)
    text = message_of(
        lambda: mcp.create_mcp_server(
            tenant, label="s", base_url="https://m.example", auth_ref=uuid.uuid4()
        ),
        InvalidInput,
    )
    assert text == "invalid input: auth_ref: must be empty when auth_type is 'none'"


def test_mcp_server_through_the_cli(tenant: uuid.UUID) -> None:
    result = invoke(
        mcp_cli, "add", "--tenant", str(tenant), "--label", "s", "--url", "https://m.example",
        "--auth-type", "basic",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output == (
        "Error: invalid input: auth_ref: is required when auth_type is 'basic': "
        "the credential to authenticate with\n"
    )


def test_payloads(jobs_env: str, tenant_id: uuid.UUID) -> None:
    text = message_of(
        lambda: enqueue(
            "fine_tune_export",
            {"credential_id": str(uuid.uuid4()), "dataset_name": VALUE + " x", "examples": []},
            tenant_id=tenant_id,
        ),
        InvalidPayload,
    )
    assert text == (
        "invalid payload for fine_tune_export: dataset_name: must be 1 to 100 letters, "
        "digits, dots, dashes and underscores; examples: must have at least 1 item"
    )
    text = message_of(
        lambda: enqueue(
            "scheduled_preview",
            {"credential_id": VALUE, "season": VALUE, "team": "", "extra": VALUE},
            tenant_id=tenant_id,
        ),
        InvalidPayload,
    )
    assert text == (
        "invalid payload for scheduled_preview: credential_id: must be a UUID; "
        "season: must be a whole number; team: must not be empty; extra: is not a known field"
    )


class Limits(BaseModel):
    name: str = Field(min_length=3, max_length=5)
    tags: list[str] = Field(min_length=2, max_length=3)
    count: int = Field(ge=1, le=9)
    ratio: float = Field(gt=0, lt=1)
    code: str = Field(pattern=r"^\d+$")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"name": "ab", "tags": ["x"], "count": 0, "ratio": 0, "code": "x"},
            [
                "must be at least 3 characters",
                "must have at least 2 items",
                "must be at least 1",
                "must be greater than 0.0",
                "is not in the accepted form",
            ],
        ),
        (
            {"name": "abcdef", "tags": ["x"] * 4, "count": 10, "ratio": 1, "code": "1"},
            [
                "must be at most 5 characters",
                "must have at most 3 items",
                "must be at most 9",
                "must be less than 1.0",
            ],
        ),
        (
            {"name": 1, "tags": "x", "count": "many", "ratio": "x", "code": None},
            [
                "must be text",
                "must be a list",
                "must be a whole number",
                "must be a number",
                "must be text",
            ],
        ),
    ],
)
def test_rules(data: dict[str, object], expected: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        Limits.model_validate(data)
    assert [rule(error, Limits) for error in info.value.errors()] == expected


def test_an_unknown_error_type_keeps_pydantics_message() -> None:
    error = {"type": "some_new_type", "loc": ("x",), "msg": "Something new", "input": None}
    assert rule(error) == "Something new"  # type: ignore[arg-type]
