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


def status_bars(counts: dict[Any, int], width: int = 600, bar: int = 22) -> str:
    """An inline SVG bar chart of jobs per status, drawn on the server (no script needed)."""
    top = max(counts.values(), default=0) or 1
    rows = []
    for i, (status, n) in enumerate(sorted(counts.items(), key=lambda kv: str(kv[0]))):
        name = getattr(status, "value", str(status))
        y = i * (bar + 6)
        length = int((width - 200) * n / top)
        rows.append(
            f'<text x="0" y="{y + bar - 6}">{name}</text>'
            f'<rect class="s-{name}" x="110" y="{y}" width="{length}" height="{bar}"/>'
            f'<text x="{115 + length}" y="{y + bar - 6}">{n}</text>'
        )
    height = max(len(rows), 1) * (bar + 6)
    return (
        f'<svg class="chart" role="img" aria-label="jobs per status" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}">{"".join(rows)}</svg>'
    )
