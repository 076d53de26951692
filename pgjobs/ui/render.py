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


def minute_bars(
    minutes: list[tuple[datetime, int, int]], width: int = 600, height: int = 120
) -> str:
    """Jobs succeeded (below) and failed (stacked above) per minute, as an inline SVG: one bar
    per minute, the minute and its counts in each bar's title (shown on hover)."""
    top = max((ok + failed for _, ok, failed in minutes), default=0) or 1
    step = width / max(len(minutes), 1)
    bars = []
    for i, (minute, ok, failed) in enumerate(minutes):
        x = round(i * step, 1)
        ok_h = round((height - 20) * ok / top, 1)
        failed_h = round((height - 20) * failed / top, 1)
        label = f"{minute:%H:%M} UTC: {ok} succeeded, {failed} failed"
        bars.append(
            f"<g><title>{label}</title>"
            f'<rect class="s-succeeded" x="{x}" y="{height - ok_h}" width="{step * 0.8:.1f}" '
            f'height="{ok_h}"/>'
            f'<rect class="s-failed" x="{x}" y="{height - ok_h - failed_h}" '
            f'width="{step * 0.8:.1f}" height="{failed_h}"/></g>'
        )
    return (
        f'<svg class="chart minutes" role="img" aria-label="jobs finished per minute, last hour"'
        f' viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        f'<text x="0" y="12">max {top}/min</text>{"".join(bars)}</svg>'
    )
