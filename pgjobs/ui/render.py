"""Helpers the templates call: relative times and payloads redacted as log lines are."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pgjobs.vault.redaction import _redact_value


def relative(when: datetime | None, now: datetime | None = None) -> str:
    """``3 min ago`` / ``in 5 s``: what a table shows (the exact time goes in a title)."""
    if when is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    ahead, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)} {unit}"
            break
    else:
        text = f"{int(seconds)} s"
    return f"in {text}" if ahead else f"{text} ago"


def redacted_json(value: Any) -> str:
    """A JSON value with sensitive keys and known secrets masked, indented for reading."""
    return json.dumps(_redact_value(value, 0), indent=2, sort_keys=True, default=str)
