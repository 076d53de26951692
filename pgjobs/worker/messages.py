"""What a worker accepts off Redis: a well-formed message of one of its actors, for the queue it
was fetched from.

The consumer (pgjobs/worker/consumer.py) checks every fetched message with :func:`check` before
anything is claimed for it, and dead-letters one that fails. So a message that Dramatiq would
refuse or misuse later never claims a job, and never reaches Dramatiq's worker: an unknown
actor (``ActorNotFound``), arguments the actor cannot take (``TypeError``), an option a
middleware acts on (``max_age`` skips the message, ``eta`` delays it, ``pipe_target`` and
``on_success`` send others), or ids that do not match the Redis entry (the ack would remove
another message).

The well-formed message is the one ``producer.broker.Outgoing.to_message`` builds, plus the
options Dramatiq's ``Retries`` adds when it delivers one again after an infrastructure error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.common import q_name

from pgjobs.producer.broker import is_uuid_text, job_args
from pgjobs.producer.job_types import actor_name_for

FIELDS = frozenset(
    {"queue_name", "actor_name", "args", "kwargs", "options", "message_id", "message_timestamp"}
)
"""A Dramatiq message's fields: ``Message.decode`` fills in a missing id or timestamp and
raises on any other key; neither may happen to a message of ours."""

OPTIONS: dict[str, type] = {
    "redis_message_id": str,
    "retries": int,
    "traceback": str,
    "requeue_timestamp": int,
}
"""The options a message on a queue may carry, and their types: its Redis id, and what
Dramatiq's ``Retries`` records when it sends a message again."""

DELAYED_OPTIONS: dict[str, type] = {**OPTIONS, "eta": int}
"""On a delay queue (``<queue>.DQ``), the message's due time too (required there)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a message is not accepted: a fixed text, never any of the message's content (it
    goes into a log line)."""

    reason: str


Actors = Mapping[str, dramatiq.Actor[Any, Any]]


def check(
    body: bytes | None, redis_id: bytes, queue_name: str, actors: Actors
) -> dramatiq.Message[Any] | Refused:
    """The message stored under ``redis_id`` on ``queue_name``, if it is one that this worker
    (``actors``: its broker's) runs, exactly as ``Outgoing.to_message`` builds it; else why
    not. Never raises, whatever the body."""
    if body is None:
        return Refused("no body")
    try:
        fields = dramatiq.get_encoder().decode(body)
    except Exception:  # noqa: BLE001 - whatever the bytes, the answer is a refusal
        return Refused("undecodable")
    if not isinstance(fields, dict):
        return Refused("not a message object")
    if fields.keys() != FIELDS:
        return Refused("missing or unexpected message fields")
    reason = _refusal(fields, redis_id, queue_name, actors)
    if reason is not None:
        return Refused(reason)
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=fields["actor_name"],
        args=tuple(fields["args"]),
        kwargs={},
        options=fields["options"],
        message_id=fields["message_id"],
        message_timestamp=fields["message_timestamp"],
    )


def _refusal(
    fields: dict[str, Any], redis_id: bytes, queue_name: str, actors: Actors
) -> str | None:
    """The first rule the message's fields break (later rules rely on earlier ones)."""
    return _address_refusal(fields, redis_id, queue_name, actors) or _content_refusal(
        fields, delayed=queue_name != q_name(queue_name)
    )


def _address_refusal(
    fields: dict[str, Any], redis_id: bytes, queue_name: str, actors: Actors
) -> str | None:
    """Whose the message is: its ids, its queue, its actor."""
    message_id = fields["message_id"]
    if not is_uuid_text(message_id):
        return "message id is not a UUID"
    if message_id.encode() != redis_id:
        return "message id is not its Redis id"
    if fields["queue_name"] != queue_name:
        return "queue name is not the queue it came from"
    if not _is_our_actor(fields["actor_name"], q_name(queue_name), actors):
        return "not this queue's actor in this worker"
    return None


def _content_refusal(fields: dict[str, Any], *, delayed: bool) -> str | None:
    """What the message carries: its timestamp, options and arguments."""
    if type(fields["message_timestamp"]) is not int:
        return "timestamp is not an integer"
    reason = _options_refusal(fields["options"], fields["message_id"], delayed=delayed)
    if reason is not None:
        return reason
    if job_args(fields["args"]) is None:
        return "arguments are not (job_id, tenant_id)"
    return None if fields["kwargs"] == {} else "keyword arguments"


def _is_our_actor(name: Any, queue: str, actors: Actors) -> bool:
    """Ours (the name our producer gives this queue's messages) and declared in this worker
    for this queue: what Dramatiq's worker looks the actor up by."""
    if type(name) is not str or name != actor_name_for(queue):
        return False
    actor = actors.get(name)
    return actor is not None and actor.queue_name == queue


def _options_refusal(options: Any, message_id: str, *, delayed: bool) -> str | None:
    """Only the options a message of ours carries there, each of its type; a delayed one's
    eta among them."""
    if type(options) is not dict:
        return "options are not an object"
    if options.get("redis_message_id") != message_id:
        return "redis_message_id option is not the message id"
    allowed = DELAYED_OPTIONS if delayed else OPTIONS
    if any(type(value) is not allowed.get(name) for name, value in options.items()):
        return "options not ours, or of the wrong type"
    if delayed and "eta" not in options:
        return "delayed without an eta"
    return None
