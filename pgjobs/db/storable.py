"""What PostgreSQL can store as text or inside jsonb, and field paths that can be printed.

PostgreSQL's text and jsonb hold neither the NUL character nor a lone surrogate (which is not
Unicode, and which psycopg cannot even encode). A caller's string, dict key or secret with one
must be refused before a statement, naming where it is: :func:`text_problems` walks nested
values, and :func:`dotted` writes a path whose keys print safely in any terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import SecretStr

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL and lone surrogates: what text and jsonb cannot hold."""
_PATH_PART = 60
"""Characters of one key shown in a field path (a key is data too: long ones are cut)."""


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` as text or inside jsonb, or None if it can."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def storable_text(value: str) -> str:
    """``value`` with what PostgreSQL cannot store replaced by U+FFFD: for text that is only
    shown (a handler's progress message), where refusing would cost the job its report."""
    if text_problem(value) is None:
        return value
    return _UNSTORABLE.sub("\ufffd", value)


def nested_items(value: object) -> Iterator[tuple[tuple[object, ...], object]]:
    """(path, item) for every key and every scalar of nested dicts, lists and tuples; a key's
    path ends with the key itself. Depth-first without recursion, so any depth is fine."""
    stack: list[tuple[tuple[object, ...], object]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            for key, child in reversed(item.items()):
                stack.append(((*path, key), child))
                stack.append(((*path, key), key))
        elif isinstance(item, list | tuple):
            stack.extend(((*path, i), child) for i, child in reversed(list(enumerate(item))))
        else:
            yield path, item


def dotted(path: tuple[object, ...]) -> str:
    """A field path for an error message: keys that cannot be printed as they are come
    escaped, long ones cut."""
    parts = []
    for part in path:
        text = str(part)
        if text_problem(text) is not None:
            text = ascii(text)
        parts.append(text if len(text) <= _PATH_PART else text[: _PATH_PART - 1] + "…")
    return ".".join(parts)


def text_problems(value: object) -> Iterator[tuple[str, str]]:
    """(field path, problem) of every string, key or secret in ``value`` that PostgreSQL
    cannot store (NUL, lone surrogates)."""
    for path, item in nested_items(value):
        text = item.get_secret_value() if isinstance(item, SecretStr) else item
        if isinstance(text, str):
            problem = text_problem(text)
            if problem is not None:
                yield dotted(path), problem
