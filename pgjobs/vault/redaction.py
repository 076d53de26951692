"""Keep secrets out of every log line, stored error message and stored result.

Plaintext credentials exist only inside a worker while a handler uses them. A handler that
touches one wraps the work in ``with secrets_in_scope(value):``; the structlog processor
`redact_event` then replaces that value wherever it shows up in an event, including a formatted
traceback. Long-lived values (a service password read at startup) use `register_secret` /
`forget_secret` instead.

A unit of work that outlives those blocks (a job's attempt) keeps a `KnownSecrets`: while it is
active (``with known.active():``), every value put in scope joins it and stays redacted until the
unit ends, after its blocks have closed, and ``known.found_in(text)`` tells whether text the unit
is about to store (a job's result as JSON) carries one of them.

Place `redact_event` in the processor chain AFTER ``structlog.processors.format_exc_info`` (and
any other processor that renders values to text, e.g. stack info) and BEFORE the renderer, so the
traceback is already a string when it is scrubbed::

    processors=[..., structlog.processors.format_exc_info, redact_event, JSONRenderer()]

Three rules apply to every event:

(a) A key whose name matches `SENSITIVE_KEY` (case-insensitive: secret, token, password, passwd,
    authorization, api_key / apikey / api-key, private_key, cookie, credential_plaintext) has its
    value replaced by "[REDACTED]", at any nesting depth. Names ending in a metadata suffix from
    `HARMLESS_SUFFIX` (``token_count``, ``token_type``, ``password_length``, ...) are spared; their
    values still go through rule (b). A None value stays None ("no password given" is useful).
(b) Every known secret of at least `MIN_SECRET_LENGTH` characters is replaced in every string,
    in nested dicts (keys too) / lists / tuples / sets, and in the repr of any other object. A
    secret is known in the forms it takes in text: itself, its repr and its JSON string escapes.
(c) A URL password (``scheme://user:password@host``) is replaced.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

from structlog.typing import EventDict, WrappedLogger

REDACTED = "[REDACTED]"
"""What a removed value is replaced with."""
MIN_SECRET_LENGTH = 4
"""Shorter values are not matched: replacing 'a' or '123' everywhere would garble every line."""
MAX_DEPTH = 20
"""Nesting deeper than this is rendered with repr() and scrubbed as text (guards cycles)."""

SENSITIVE_KEY = re.compile(
    r"secret|token|passw(?:or)?d|authorization|api[_-]?key|private[_-]?key|cookie"
    r"|credential_plaintext",
    re.IGNORECASE,
)
"""Key names whose values are never logged (searched anywhere in the name)."""
HARMLESS_SUFFIX = re.compile(r"[_-](?:count|type|len|length|ttl|expires_at|limit)$", re.IGNORECASE)
"""Metadata about a secret rather than the secret itself: `token_count` is just a number."""

_URL_PASSWORD = re.compile(
    r"(?P<prefix>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<password>[^\s@]+)@"
)

_scoped: ContextVar[frozenset[str]] = ContextVar("redaction_secrets_in_scope", default=frozenset())
_global_lock = threading.Lock()
_global_counts: dict[str, int] = {}
_global: frozenset[str] = frozenset()


def _text_forms(text: str) -> set[str]:
    """`text` as itself, as a repr's body and as a JSON string's body (ASCII-only or not)."""
    return {
        text,
        repr(text)[1:-1],
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
    }


def _forms(value: str | bytes) -> set[str]:
    """The text forms a value can take in a log line, an error text or a JSON document."""
    forms: set[str] = set()
    if isinstance(value, bytes):
        with suppress(UnicodeDecodeError):
            forms |= _text_forms(value.decode("utf-8"))
        forms.add(repr(value)[2:-1])
    else:
        forms |= _text_forms(value)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class KnownSecrets:
    """The secrets one unit of work (a job's attempt) has seen, in all their text forms.

    Values are added by `secrets_in_scope` while the unit is active in a context, or with
    `add` from anywhere (another thread of the unit); they are forgotten when the unit ends.
    """

    __slots__ = ("_lock", "forms")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.forms: frozenset[str] = frozenset()
        """Replaced, never changed in place: a reader holds a consistent snapshot."""

    def __bool__(self) -> bool:
        return bool(self.forms)

    def add(self, *values: str | bytes) -> None:
        added: set[str] = set()
        for value in values:
            added |= _forms(value)
        with self._lock:
            self.forms = self.forms | added

    def found_in(self, text: str) -> bool:
        """Whether `text` carries one of these secrets, in any of its forms."""
        return any(form in text for form in self.forms)

    def where(self, document: Any) -> str | None:
        """Where in a JSON-shaped value (dicts, lists, scalars) a secret first appears:
        ``at $.auth.header``, ``at $.items[2]`` or ``in a key of $.auth``; None when no single
        key or value holds one (it spans several). Keys and scalars are judged by their JSON
        text, as `found_in` judges the whole document."""
        return _where(self, document, "$", 0)

    @contextmanager
    def active(self) -> Iterator[KnownSecrets]:
        """Make this the current context's unit until the block ends, then forget the values."""
        token = _unit.set(self)
        try:
            yield self
        finally:
            _unit.reset(token)
            with self._lock:
                self.forms = frozenset()


_unit: ContextVar[KnownSecrets | None] = ContextVar("redaction_unit_of_work", default=None)


def _step(key: Any) -> str:
    """A dict key as a path step; JSON turns every key into a string, so the path does too."""
    if isinstance(key, str) and key.isidentifier():
        return f".{key}"
    return f"[{json.dumps(key if isinstance(key, str) else json.dumps(key))}]"


def _where(known: KnownSecrets, value: Any, path: str, depth: int) -> str | None:
    if depth > MAX_DEPTH or not isinstance(value, dict | list | tuple):
        return f"at {path}" if known.found_in(json.dumps(value)) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if known.found_in(json.dumps(key)):
                return f"in a key of {path}"
            found = _where(known, item, path + _step(key), depth + 1)
            if found is not None:
                return found
        return None
    for index, item in enumerate(value):
        found = _where(known, item, f"{path}[{index}]", depth + 1)
        if found is not None:
            return found
    return None


@contextmanager
def secrets_in_scope(*values: str | bytes) -> Iterator[None]:
    """Track `values` for the current context only (thread- and task-local via contextvars);
    inside an active `KnownSecrets` unit they also join it, and stay known until it ends."""
    added: set[str] = set()
    for value in values:
        added |= _forms(value)
    unit = _unit.get()
    if unit is not None:
        unit.add(*values)
    token = _scoped.set(_scoped.get() | added)
    try:
        yield
    finally:
        _scoped.reset(token)


def register_secret(value: str | bytes) -> None:
    """Track `value` in every context of the process until `forget_secret` (counted)."""
    global _global
    with _global_lock:
        for form in _forms(value):
            _global_counts[form] = _global_counts.get(form, 0) + 1
        _global = frozenset(_global_counts)


def forget_secret(value: str | bytes) -> None:
    """Undo one `register_secret(value)`; unknown values are ignored."""
    global _global
    with _global_lock:
        for form in _forms(value):
            count = _global_counts.get(form, 0) - 1
            if count > 0:
                _global_counts[form] = count
            else:
                _global_counts.pop(form, None)
        _global = frozenset(_global_counts)


def _known() -> frozenset[str]:
    known = _scoped.get() | _global
    unit = _unit.get()
    return known | unit.forms if unit is not None and unit.forms else known


def redact_text(text: str) -> str:
    """`text` with every tracked secret and every URL password replaced by "[REDACTED]"."""
    known = _known()
    if known:
        # Longest first, so a secret containing another is removed whole.
        for secret in sorted(known, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(rf"\g<prefix>{REDACTED}@", text)


def is_sensitive_key(name: str) -> bool:
    """Whether a log key's value is dropped regardless of content (rule (a))."""
    return bool(SENSITIVE_KEY.search(name)) and not HARMLESS_SUFFIX.search(name)


def _redact_item(key: object, value: Any, depth: int) -> Any:
    if isinstance(key, str) and value is not None and is_sensitive_key(key):
        return REDACTED
    return _redact_value(value, depth)


def _redact_value(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if depth < MAX_DEPTH:
        if isinstance(value, dict):
            return {_redact_key(k): _redact_item(k, v, depth + 1) for k, v in value.items()}
        if type(value) in (list, tuple, set, frozenset):
            return type(value)(_redact_value(item, depth + 1) for item in value)
    return _redact_object(value)


def _redact_key(key: Any) -> Any:
    return redact_text(key) if isinstance(key, str) else key


def _redact_object(value: Any) -> Any:
    """Bytes and other objects are rendered to text later: scrub what they would show."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "backslashreplace")
        scrubbed = redact_text(text)
        return value if scrubbed == text else scrubbed
    try:
        shown = (repr(value), str(value))
    except Exception:  # noqa: BLE001 - a broken __repr__ must not break logging
        return value
    scrubbed_repr = redact_text(shown[0])
    if scrubbed_repr != shown[0] or redact_text(shown[1]) != shown[1]:
        return scrubbed_repr
    return value


def redact_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor applying rules (a)-(c); run it after format_exc_info."""
    for key, value in list(event_dict.items()):
        shown = _redact_key(key)
        if shown != key:
            del event_dict[key]
        event_dict[shown] = _redact_item(key, value, 0)
    return event_dict
