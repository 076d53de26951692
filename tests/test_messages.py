"""Fetched messages are checked whole before anything is claimed for them: junk is dead-lettered
(without a body, dropped) with one log line, never claims a job, and never strands the valid
messages fetched with it; a claim whose message Dramatiq then refuses is given back at once.

The rule itself is tested on its own (``check``); the consumer against real PostgreSQL and Redis,
with an in-process Dramatiq worker, by examples and by generated junk (hypothesis).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import dramatiq.worker
import pytest
import redis as redis_lib
import structlog
from dramatiq.brokers.stub import StubBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobwait import events_of, wait_for
from pydantic import BaseModel
from structlog.testing import capture_logs

import pgjobs.worker.consumer
from pgjobs.db.models import EventType, JobStatus
from pgjobs.producer import JobRequest, count_jobs_by_status, enqueue, enqueue_many, get_job
from pgjobs.producer import broker as broker_module
from pgjobs.producer.job_types import actor_name_for, job_type
from pgjobs.worker.context import JobContext
from pgjobs.worker.handlers.registry import handles
from pgjobs.worker.messages import FIELDS, Refused, check
from pgjobs.worker.runner import lease_keeper

QUEUE = "msgq"
OTHER_ID = "0b0e7d4c-3f7a-4d2e-9a51-6c1f7e2b9d30"
TENANT = "5f0c6c2e-8d3b-4f57-9a6e-2b7d1c4e8f90"
KEY = "6a8e4f1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b"


class Count(BaseModel):
    value: int = 0


count_type = job_type("test_messages_count", Count, queue=QUEUE, time_limit_seconds=5.0)


@handles(count_type)
def count(ctx: JobContext[Count]) -> dict[str, int]:
    return {"value": ctx.payload.value}


def stored_fields(job_id: int, tenant_id: uuid.UUID | str, message_id: str) -> dict[str, Any]:
    """A message exactly as the producer stores it, as plain JSON fields."""
    outgoing = broker_module.Outgoing(job_id, uuid.UUID(str(tenant_id)), QUEUE, message_id)
    fields: dict[str, Any] = json.loads(outgoing.to_message().encode())
    return fields


# --- the rule --------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], dict[str, Any]]


def _set(field: str, value: Any) -> Mutation:
    return lambda m: {**m, field: value}


def _option(**options: Any) -> Mutation:
    return lambda m: {**m, "options": {**m["options"], **options}}


def _args(make: Callable[[int, str], Any]) -> Mutation:
    return lambda m: {**m, "args": make(*m["args"])}


def _without(field: str) -> Mutation:
    return lambda m: {k: v for k, v in m.items() if k != field}


_NOT_OURS = "options not ours, or of the wrong type"
_BAD_ARGS = "arguments are not (job_id, tenant_id)"
_FIELDS = "missing or unexpected message fields"
_ACTOR = "not this queue's actor in this worker"
_REDIS_ID = "redis_message_id option is not the message id"

MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("options null", _set("options", None), "options are not an object"),
    ("options a list", _set("options", []), "options are not an object"),
    ("options without the Redis id", _set("options", {}), _REDIS_ID),
    ("another Redis id option", _option(redis_message_id=OTHER_ID), _REDIS_ID),
    ("Redis id option a number", _option(redis_message_id=7), _REDIS_ID),
    ("max_age option (skips the message)", _option(max_age=1), _NOT_OURS),
    ("pipe_target option (sends another)", _option(pipe_target={"x": 1}), _NOT_OURS),
    ("on_success option", _option(on_success="pgjobs_run__msgq"), _NOT_OURS),
    ("eta on the queue (delays it)", _option(eta=0), _NOT_OURS),
    ("retries as text", _option(retries="1"), _NOT_OURS),
    ("retries a bool", _option(retries=True), _NOT_OURS),
    ("traceback null", _option(traceback=None), _NOT_OURS),
    (
        "another message's ids",
        lambda m: {**m, "message_id": OTHER_ID, "options": {"redis_message_id": OTHER_ID}},
        "message id is not its Redis id",
    ),
    (
        "message id not a UUID",
        lambda m: {**m, "message_id": "junk", "options": {"redis_message_id": "junk"}},
        "message id is not a UUID",
    ),
    (
        "message id upper-case",
        lambda m: {**m, "message_id": m["message_id"].upper()},
        "message id is not a UUID",
    ),
    ("message id a number", _set("message_id", 12), "message id is not a UUID"),
    ("unknown actor", _set("actor_name", "nope"), _ACTOR),
    ("another queue's actor", _set("actor_name", actor_name_for("other")), _ACTOR),
    ("a queue this worker does not serve", _set("actor_name", actor_name_for("gone")), _ACTOR),
    ("actor null", _set("actor_name", None), _ACTOR),
    ("another queue", _set("queue_name", "other"), "queue name is not the queue it came from"),
    ("queue name a list", _set("queue_name", [QUEUE]), "queue name is not the queue it came from"),
    ("timestamp as text", _set("message_timestamp", "1"), "timestamp is not an integer"),
    ("timestamp a float", _set("message_timestamp", 1.5), "timestamp is not an integer"),
    ("extra argument", _args(lambda j, t: [j, t, 1]), _BAD_ARGS),
    ("one argument", _args(lambda j, t: [j]), _BAD_ARGS),
    ("job id as text", _args(lambda j, t: [str(j), t]), _BAD_ARGS),
    ("job id a bool", _args(lambda j, t: [True, t]), _BAD_ARGS),
    ("job id a float", _args(lambda j, t: [float(j), t]), _BAD_ARGS),
    ("job id zero", _args(lambda j, t: [0, t]), _BAD_ARGS),
    ("job id beyond a bigint", _args(lambda j, t: [2**63, t]), _BAD_ARGS),
    ("tenant not a UUID", _args(lambda j, t: [j, "tenant"]), _BAD_ARGS),
    ("tenant upper-case", _args(lambda j, t: [j, t.upper()]), _BAD_ARGS),
    ("tenant a number", _args(lambda j, t: [j, 5]), _BAD_ARGS),
    ("arguments an object", _args(lambda j, t: {"job_id": j, "tenant_id": t}), _BAD_ARGS),
    ("keyword arguments", _set("kwargs", {"job_id": 1}), "keyword arguments"),
    ("keyword arguments null", _set("kwargs", None), "keyword arguments"),
    ("extra field", _set("extra", 1), _FIELDS),
    ("no message id", _without("message_id"), _FIELDS),
    ("no timestamp", _without("message_timestamp"), _FIELDS),
]


@pytest.fixture(scope="module")
def actors() -> dict[str, dramatiq.Actor[Any, Any]]:
    """The actors of a worker serving QUEUE and "other" (a real Dramatiq broker's registry)."""
    stub = StubBroker(middleware=[])
    for queue in (QUEUE, "other"):
        dramatiq.actor(actor_name=actor_name_for(queue), queue_name=queue, broker=stub)(print)
    return stub.actors


def test_the_producers_message_is_accepted_as_built(actors: Any) -> None:
    message = broker_module.Outgoing(12, uuid.UUID(TENANT), QUEUE, KEY).to_message()
    assert check(message.encode(), KEY.encode(), QUEUE, actors) == message


def test_what_dramatiqs_retries_adds_is_accepted(actors: Any) -> None:
    fields = _option(retries=2, traceback="Traceback ...", requeue_timestamp=1)(
        stored_fields(12, TENANT, KEY)
    )
    assert not isinstance(check(json.dumps(fields).encode(), KEY.encode(), QUEUE, actors), Refused)


def test_a_delayed_message_needs_its_eta_and_only_there(actors: Any) -> None:
    delayed = broker_module.Outgoing(12, uuid.UUID(TENANT), QUEUE, KEY, 5000).to_message()
    assert check(delayed.encode(), KEY.encode(), f"{QUEUE}.DQ", actors) == delayed
    fields = json.loads(delayed.encode())
    del fields["options"]["eta"]
    refused = check(json.dumps(fields).encode(), KEY.encode(), f"{QUEUE}.DQ", actors)
    assert refused == Refused("delayed without an eta")
    fields["options"]["eta"] = "soon"
    refused = check(json.dumps(fields).encode(), KEY.encode(), f"{QUEUE}.DQ", actors)
    assert refused == Refused(_NOT_OURS)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, "no body"),
        (b"", "undecodable"),
        (b"\xff\xfe", "undecodable"),
        (b'{"options": ', "undecodable"),
        (b"9" * 5000, "undecodable"),  # beyond Python's digit limit: a ValueError, not JSON's
        (b"[" * 100_000, "undecodable"),  # too deep
        (b"[]", "not a message object"),
        (b'"text"', "not a message object"),
        (b"{}", _FIELDS),
    ],
)
def test_bodies_that_are_not_messages(body: bytes | None, reason: str, actors: Any) -> None:
    assert check(body, KEY.encode(), QUEUE, actors) == Refused(reason)


@pytest.mark.parametrize(
    ("mutate", "reason"), [(m, r) for _, m, r in MUTATIONS], ids=[n for n, _, _ in MUTATIONS]
)
def test_messages_that_are_not_ours_as_built(mutate: Mutation, reason: str, actors: Any) -> None:
    body = json.dumps(mutate(stored_fields(12, TENANT, KEY))).encode()
    assert check(body, KEY.encode(), QUEUE, actors) == Refused(reason)


def test_the_producers_message_under_another_redis_id_is_refused(actors: Any) -> None:
    """A copy stored under another key: acking it by its ids would remove the original."""
    body = json.dumps(stored_fields(12, TENANT, KEY)).encode()
    refused = check(body, OTHER_ID.encode(), QUEUE, actors)
    assert refused == Refused("message id is not its Redis id")


# --- the consumer --------------------------------------------------------------------------------

StartWorker = Callable[..., dramatiq.Worker]


@pytest.fixture
def consumer_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer's module logger made afresh, so structlog's log capture sees it whatever
    an earlier test configured (loggers cache their configuration on first use)."""
    monkeypatch.setattr(
        pgjobs.worker.consumer, "log", structlog.get_logger("pgjobs.worker.consumer")
    )


def push_raw(
    client: redis_lib.Redis, namespace: str, entries: list[tuple[str, bytes | None]]
) -> None:
    """Store entries at the head of the queue, in order, as ``enqueue_many`` stores messages
    (body in ``.msgs``, id in the list); an entry without a body gets only its id."""
    pipe = client.pipeline(transaction=True)
    bodies = {key: body for key, body in entries if body is not None}
    if bodies:
        pipe.hset(f"{namespace}:{QUEUE}.msgs", mapping=bodies)  # type: ignore[arg-type]
    pipe.lpush(f"{namespace}:{QUEUE}", *[key for key, _ in reversed(entries)])
    pipe.execute()


def dead_letters(client: redis_lib.Redis, namespace: str) -> dict[str, bytes]:
    """The queue's dead-letter set: Redis id -> body."""
    held = client.hgetall(f"{namespace}:{QUEUE}.XQ.msgs")
    listed = {k.decode() for k in client.zrange(f"{namespace}:{QUEUE}.XQ", 0, -1)}
    return {k.decode(): v for k, v in held.items() if k.decode() in listed}


def wait_dead_lettered(client: redis_lib.Redis, namespace: str, keys: set[str]) -> None:
    wait_until(lambda: keys <= set(dead_letters(client, namespace)), "dead-lettered")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout}s")
        time.sleep(0.02)


def started_by(tenant_id: uuid.UUID, job_id: int) -> list[str | None]:
    """The message ids that started the job's attempts."""
    events = events_of(tenant_id, job_id)
    return [e.data.get("message_id") for e in events if e.event_type is EventType.STARTED]


def test_options_null_does_not_strand_the_batch_fetched_with_it(
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    worker_factory: StartWorker,
) -> None:
    """A message whose options are null, fetched first in a batch with six valid ones: the six
    run at once (they were left in the worker's ack set until its heartbeat timed out)."""
    jobs = enqueue_many([JobRequest(count_type, {"value": i}, tenant_id) for i in range(6)])
    junk = stored_fields(jobs[0].id, tenant_id, OTHER_ID) | {"options": None}
    push_raw(redis_client, jobs_env, [(OTHER_ID, json.dumps(junk).encode())])
    worker_factory(threads=4)  # a prefetch of 8: one fetch brings all seven
    for job in jobs:
        assert wait_for(tenant_id, job.id, timeout=10).status is JobStatus.SUCCEEDED
    wait_dead_lettered(redis_client, jobs_env, {OTHER_ID})


@pytest.mark.parametrize(
    "mutate",
    [_set("actor_name", "pgjobs_run__nowhere"), _set("kwargs", {"extra": 1})],
    ids=["unknown actor", "extra keyword argument"],
)
def test_junk_carrying_a_real_jobs_ids_does_not_claim_it(
    mutate: Mutation,
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    worker_factory: StartWorker,
) -> None:
    """Fetched just ahead of the job's own message, a junk message with the job's (id, tenant)
    claimed it, was dead-lettered, and left it active for ever (its own message skipped as a
    duplicate). Now the job's own message starts it, once."""
    job = enqueue(count_type, {"value": 1}, tenant_id=tenant_id)
    junk = mutate(stored_fields(job.id, tenant_id, OTHER_ID))
    push_raw(redis_client, jobs_env, [(OTHER_ID, json.dumps(junk).encode())])
    worker_factory(threads=4)
    assert wait_for(tenant_id, job.id, timeout=10).status is JobStatus.SUCCEEDED
    assert started_by(tenant_id, job.id) == [job.message_id]
    wait_dead_lettered(redis_client, jobs_env, {OTHER_ID})


def test_a_claimed_message_that_dramatiq_refuses_gives_its_job_back_at_once(
    tenant_id: uuid.UUID, jobs_env: str, redis_client: redis_lib.Redis
) -> None:
    """Claimed at fetch time, then nacked without a thread having taken the claim (what
    Dramatiq does with a message it cannot run): the job is queued again in the same round,
    under its own message id, and the lease keeper holds it no more."""
    from pgjobs.worker.setup import build_broker

    job = enqueue(count_type, {"value": 1}, tenant_id=tenant_id)
    consumer = build_broker().consume(QUEUE, prefetch=8, timeout=1000)
    try:
        message = next(consumer)
        assert message is not None and message.message_id == job.message_id
        assert get_job(tenant_id, job.id).status is JobStatus.ACTIVE  # claimed ahead
        consumer.nack(message)
        released = get_job(tenant_id, job.id)
        assert released.status is JobStatus.QUEUED and released.attempts == 0
        rescued = events_of(tenant_id, job.id)[-1]
        assert rescued.event_type is EventType.RESCUED
        assert rescued.data["reason"] == "message refused"
        assert job.id not in lease_keeper()._held
    finally:
        consumer.close()


# --- generated junk mixed with valid jobs -------------------------------------------------------


@dataclass(frozen=True)
class Junk:
    """How to make one junk entry once the example's jobs exist."""

    body: bytes | None = None
    mutation: tuple[str, Mutation, str] | None = None
    job: int = 0  # which of the example's jobs a mutated message carries

    def entry(self, jobs: list[Any], tenant_id: uuid.UUID) -> tuple[str, bytes | None]:
        key = str(uuid.uuid4())
        if self.mutation is None:
            return key, self.body
        fields = stored_fields(jobs[self.job % len(jobs)].id, tenant_id, key)
        return key, json.dumps(self.mutation[1](fields)).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
junk_recipes = st.one_of(
    st.binary(max_size=64).map(lambda b: Junk(body=b)),
    json_values.map(lambda v: Junk(body=json.dumps(v).encode())),
    st.fixed_dictionaries({f: json_values for f in sorted(FIELDS)}).map(
        lambda d: Junk(body=json.dumps(d).encode())
    ),
    st.builds(Junk, mutation=st.sampled_from(MUTATIONS), job=st.integers(0, 3)),
    st.builds(Junk, mutation=st.sampled_from(MUTATIONS), job=st.integers(0, 3)),
    st.just(Junk(body=None)),  # an id whose body is gone
)


@pytest.fixture
def running_worker(
    worker_factory: StartWorker, monkeypatch: pytest.MonkeyPatch, consumer_logs: None
) -> dramatiq.Worker:
    """One worker for all the examples; pausing it (to lay out an example's queue) restarts
    its consumers after Dramatiq's restart delay, made short here."""
    monkeypatch.setattr(dramatiq.worker, "CONSUMER_RESTART_DELAY_SECS", 0.01)
    return worker_factory(threads=4)


_LOGGED_KEYS = {"event", "log_level", "queue", "redis_message_id", "size", "reason"}


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_generated_junk_mixed_with_valid_jobs(
    data: st.DataObject,
    tenant_id: uuid.UUID,
    jobs_env: str,
    redis_client: redis_lib.Redis,
    running_worker: dramatiq.Worker,
) -> None:
    running_worker.pause()  # nothing is fetched while the example's queue is laid out
    valid = data.draw(st.integers(1, 4), label="valid jobs")
    recipes = data.draw(st.lists(junk_recipes, min_size=1, max_size=6), label="junk")
    jobs = enqueue_many([JobRequest(count_type, {"value": i}, tenant_id) for i in range(valid)])
    junk = dict(recipe.entry(jobs, tenant_id) for recipe in recipes)
    order = data.draw(st.permutations([*(j.message_id for j in jobs), *junk]), label="order")
    queue = f"{jobs_env}:{QUEUE}"
    pipe = redis_client.pipeline(transaction=True)
    pipe.delete(queue)  # the valid ids enqueue_many pushed: pushed again below, mixed with junk
    bodies = {key: body for key, body in junk.items() if body is not None}
    if bodies:
        pipe.hset(f"{queue}.msgs", mapping=bodies)  # type: ignore[arg-type]
    pipe.rpush(queue, *order)
    pipe.execute()

    acks = f"{jobs_env}:__acks__.{running_worker.broker.broker_id}.{QUEUE}"
    with capture_logs() as logs:
        running_worker.resume()
        for job in jobs:
            assert wait_for(tenant_id, job.id, timeout=10).status is JobStatus.SUCCEEDED
        wait_until(
            lambda: (
                not redis_client.llen(queue)
                and not {k.encode() for k in junk} & redis_client.smembers(acks)
            ),
            "every junk entry handled",
        )
    for job in jobs:  # started once, by its own message: no junk claimed it
        assert started_by(tenant_id, job.id) == [job.message_id]
    assert count_jobs_by_status(tenant_id).get(JobStatus.ACTIVE, 0) == 0
    dead = dead_letters(redis_client, jobs_env)
    for key, body in junk.items():
        assert not redis_client.hexists(f"{queue}.msgs", key)
        lines = [e for e in list(logs) if e.get("redis_message_id") == key]
        assert len(lines) == 1, lines
        assert set(lines[0]) <= _LOGGED_KEYS, lines[0]
        if body is None:
            assert key not in dead and lines[0]["event"] == "broker.message.dropped"
        else:
            assert dead.get(key) == body and lines[0]["event"] == "broker.message.dead_lettered"
            assert lines[0]["size"] == len(body)
