"""pgjobs/vault/redaction.py: secrets never reach a rendered log event."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.typing import EventDict, WrappedLogger

from pgjobs.vault.redaction import (
    REDACTED,
    KnownSecrets,
    forget_secret,
    is_sensitive_key,
    redact_event,
    redact_text,
    register_secret,
    secrets_in_scope,
)

SECRET = "sk-live-5f3a9c7e1b2d4f60"


class Capture:
    """Last processor of the chain: keep the event, and its JSON rendering, then drop it."""

    def __init__(self) -> None:
        self.events: list[EventDict] = []
        self.rendered: list[str] = []

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        self.events.append(event_dict)
        self.rendered.append(json.dumps(event_dict, default=repr))
        raise structlog.DropEvent


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
def log(capture: Capture) -> Iterator[structlog.typing.FilteringBoundLogger]:
    logger = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            redact_event,
            capture,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(0),
    )
    yield logger
    structlog.contextvars.clear_contextvars()


def test_secret_in_scope_is_replaced_in_event_text(
    log: structlog.typing.FilteringBoundLogger, capture: Capture
) -> None:
    with secrets_in_scope(SECRET):
        log.info(f"calling provider with {SECRET}", note=f"prefix-{SECRET}-suffix")
    event = capture.events[-1]
    assert event["event"] == f"calling provider with {REDACTED}"
    assert event["note"] == f"prefix-{REDACTED}-suffix"
    assert SECRET not in capture.rendered[-1]


def test_secret_in_nested_values(
    log: structlog.typing.FilteringBoundLogger, capture: Capture
) -> None:
    class Holder:
        def __repr__(self) -> str:
            return f"Holder({SECRET})"

    with secrets_in_scope(SECRET.encode()):
        log.info(
            "nested",
            payload={"headers": [("X-Debug", SECRET)], "inner": {"deep": [1, {"x": SECRET}]}},
            items={SECRET},
            raw=SECRET.encode(),
            obj=Holder(),
        )
    event = capture.events[-1]
    assert event["payload"] == {
        "headers": [("X-Debug", REDACTED)],
        "inner": {"deep": [1, {"x": REDACTED}]},
    }
    assert event["items"] == {REDACTED}
    assert event["raw"] == REDACTED
    assert event["obj"] == f"Holder({REDACTED})"
    assert SECRET not in capture.rendered[-1]


def test_secret_in_formatted_exception(
    log: structlog.typing.FilteringBoundLogger, capture: Capture
) -> None:
    with secrets_in_scope(SECRET):
        try:
            raise RuntimeError(f"provider refused key {SECRET}")
        except RuntimeError:
            log.error("call failed", exc_info=True)
        try:
            raise ValueError(SECRET)
        except ValueError as exc:
            log.exception("again", error=exc)
    first, second = capture.events[-2:]
    assert "RuntimeError: provider refused key [REDACTED]" in first["exception"]
    assert "Traceback" in first["exception"]
    assert SECRET not in first["exception"]
    assert SECRET not in second["exception"]
    assert second["error"] == f"ValueError('{REDACTED}')"
    assert all(SECRET not in line for line in capture.rendered)


def test_sensitive_key_names_are_redacted(
    log: structlog.typing.FilteringBoundLogger, capture: Capture
) -> None:
    log.info(
        "request",
        password="hunter2",
        api_key="abc",
        headers={"Authorization": "Bearer xyz", "X-Api-Key": "k", "Accept": "json"},
        Set_Cookie="session=1",
        client_secret="s",
        access_token="t",
        credential_plaintext="p",
        private_key="pk",
        db_passwd="pw",
        token_count=17,
        token_type="bearer",
        missing_password=None,
        user="alice",
    )
    event = capture.events[-1]
    for key in (
        "password",
        "api_key",
        "Set_Cookie",
        "client_secret",
        "access_token",
        "credential_plaintext",
        "private_key",
        "db_passwd",
    ):
        assert event[key] == REDACTED, key
    assert event["headers"] == {"Authorization": REDACTED, "X-Api-Key": REDACTED, "Accept": "json"}
    assert event["token_count"] == 17
    assert event["token_type"] == "bearer"
    assert event["missing_password"] is None
    assert event["user"] == "alice"


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("APIKEY", True),
        ("apiKey", True),
        ("refresh_token", True),
        ("cookies", True),
        ("secret_ref", True),
        ("token_count", False),
        ("prompt_token_count", False),
        ("password_length", False),
        ("key_id", False),
        ("event", False),
    ],
)
def test_is_sensitive_key(name: str, sensitive: bool) -> None:
    assert is_sensitive_key(name) is sensitive


def test_url_passwords_are_redacted(
    log: structlog.typing.FilteringBoundLogger, capture: Capture
) -> None:
    log.info(
        "connecting to postgresql+psycopg://jobs:s3cr3t-pw@db.internal:5432/jobs",
        redis="redis://:r3d1s-pw@cache:6379/0",
        dsns=["amqp://guest:guest@localhost//"],
        plain="https://example.com/path?q=1",
        user_only="https://alice@example.com/",
    )
    event = capture.events[-1]
    assert event["event"] == (
        f"connecting to postgresql+psycopg://jobs:{REDACTED}@db.internal:5432/jobs"
    )
    assert event["redis"] == f"redis://:{REDACTED}@cache:6379/0"
    assert event["dsns"] == [f"amqp://guest:{REDACTED}@localhost//"]
    assert event["plain"] == "https://example.com/path?q=1"
    assert event["user_only"] == "https://alice@example.com/"


def test_scope_exit_forgets_and_nesting_works() -> None:
    outer, inner = "outer-secret-1", "inner-secret-2"
    with secrets_in_scope(outer):
        with secrets_in_scope(inner, outer):
            assert redact_text(f"{outer} {inner}") == f"{REDACTED} {REDACTED}"
        assert redact_text(f"{outer} {inner}") == f"{REDACTED} {inner}"
    assert redact_text(f"{outer} {inner}") == f"{outer} {inner}"


def test_scope_exit_on_exception() -> None:
    with pytest.raises(KeyError), secrets_in_scope("leaving-by-error"):
        raise KeyError("x")
    assert redact_text("leaving-by-error") == "leaving-by-error"


def test_short_values_are_not_matched() -> None:
    with secrets_in_scope("abc", ""):
        assert redact_text("abc abcabc") == "abc abcabc"
    with secrets_in_scope("abcd"):
        assert redact_text("abcd") == REDACTED


def test_longest_secret_wins() -> None:
    with secrets_in_scope("token", "token-with-suffix"):
        assert redact_text("token-with-suffix and token") == f"{REDACTED} and {REDACTED}"


def test_register_and_forget_are_process_wide_and_counted() -> None:
    value = "global-service-password"
    register_secret(value)
    register_secret(value)
    try:
        seen: list[str] = []
        thread = threading.Thread(target=lambda: seen.append(redact_text(value)))
        thread.start()
        thread.join()
        assert seen == [REDACTED]
        forget_secret(value)
        assert redact_text(value) == REDACTED
    finally:
        forget_secret(value)
    assert redact_text(value) == value
    forget_secret("never-registered")


def test_contextvar_isolation_across_threads() -> None:
    """Each thread sees only its own scope, even while both scopes are open."""
    both_in_scope = threading.Barrier(2, timeout=5)
    results: dict[str, str] = {}

    def worker(name: str, mine: str, theirs: str) -> None:
        with secrets_in_scope(mine):
            both_in_scope.wait()
            results[name] = redact_text(f"{mine}|{theirs}")
            both_in_scope.wait()

    threads = [
        threading.Thread(target=worker, args=("a", "alpha-secret", "bravo-secret")),
        threading.Thread(target=worker, args=("b", "bravo-secret", "alpha-secret")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"a": f"{REDACTED}|bravo-secret", "b": f"{REDACTED}|alpha-secret"}
    assert redact_text("alpha-secret bravo-secret") == "alpha-secret bravo-secret"


def test_contextvar_isolation_across_tasks() -> None:
    async def task(mine: str, theirs: str) -> str:
        with secrets_in_scope(mine):
            await asyncio.sleep(0.01)
            return redact_text(f"{mine}|{theirs}")

    async def main() -> list[str]:
        return list(
            await asyncio.gather(
                task("task-one-key", "task-two-key"), task("task-two-key", "task-one-key")
            )
        )

    assert asyncio.run(main()) == [f"{REDACTED}|task-two-key", f"{REDACTED}|task-one-key"]


def test_redact_text_for_stored_errors() -> None:
    with secrets_in_scope(SECRET):
        message = redact_text(f"401 from https://u:{SECRET}@api.example.com: bad key {SECRET}")
    assert SECRET not in message
    assert message == f"401 from https://u:{REDACTED}@api.example.com: bad key {REDACTED}"


# --- a unit of work (a job's attempt) ------------------------------------------------------------

ESCAPED = 'sk-"quoted"\\back-\u00e9-7f3a'
"""Characters JSON escapes: in a JSON document this value is written differently."""


def test_a_unit_keeps_what_was_in_scope_until_it_ends() -> None:
    known = KnownSecrets()
    with known.active():
        with secrets_in_scope(SECRET, "Basic cm9ib3Q6cGE1NQ=="):
            pass
        assert redact_text(f"{SECRET} / Basic cm9ib3Q6cGE1NQ==") == f"{REDACTED} / {REDACTED}"
        assert known and known.found_in(f"x{SECRET}y")
    assert redact_text(SECRET) == SECRET  # the unit is over: forgotten
    assert not known and not known.found_in(SECRET)
    with secrets_in_scope(SECRET):  # outside any unit nothing joins it
        pass
    assert not known


def test_a_unit_is_its_own_thread_s() -> None:
    known = KnownSecrets()
    seen: list[str] = []
    with known.active(), secrets_in_scope(SECRET):
        thread = threading.Thread(target=lambda: seen.append(redact_text(SECRET)))
        thread.start()
        thread.join()
        known.add("added-from-elsewhere")  # e.g. by another thread of the same attempt
        assert redact_text("added-from-elsewhere") == REDACTED
    assert seen == [SECRET]


@pytest.mark.parametrize("value", [SECRET, ESCAPED, "90817263544536"])
@pytest.mark.parametrize(
    ("make", "where"),
    [
        (lambda v: v, "at $"),
        (lambda v: {"token": v}, "at $.token"),
        (lambda v: {"a": {v: 1}}, "in a key of $.a"),
        (lambda v: {"a b": ["x", f"Bearer {v}!"]}, 'at $["a b"][1]'),
        (lambda v: {1: [{"deep": [f"<{v}>"]}]}, 'at $["1"][0].deep[0]'),
    ],
)
def test_found_in_the_json_of_a_result_in_any_position(value: str, make: Any, where: str) -> None:
    known = KnownSecrets()
    known.add(value)
    document = make(value)
    assert known.found_in(json.dumps(document))
    assert known.where(document) == where
    assert not known.found_in(json.dumps({"clean": [1, "two", {"three": None}]}))
    assert known.where({"clean": [1, "two"]}) is None


def test_a_secret_spanning_values_is_found_without_a_place() -> None:
    known = KnownSecrets()
    known.add('left", "right')
    document = ["left", "right"]
    assert known.found_in(json.dumps(document)) and known.where(document) is None


def test_json_escaped_forms_and_dict_keys_are_redacted_in_events(
    log: structlog.typing.FilteringBoundLogger, capture: Capture
) -> None:
    with secrets_in_scope(ESCAPED):
        log.info(
            "leaky",
            rendered=json.dumps({"k": ESCAPED}),
            by_key={ESCAPED: 1, "fine": {f"x-{ESCAPED}": 2}},
            **{f"kw-{ESCAPED}": 3},
        )
    event = capture.events[-1]
    assert event["rendered"] == json.dumps({"k": REDACTED})
    assert event["by_key"] == {REDACTED: 1, "fine": {f"x-{REDACTED}": 2}}
    assert event[f"kw-{REDACTED}"] == 3
    for form in (ESCAPED, json.dumps(ESCAPED)[1:-1]):
        assert form not in capture.rendered[-1]
