"""The dashboard's pieces without a browser: what the templates call, and that only the API
process imports it (Jinja2 stays out of workers and producers)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from pgjobs.db.models import JobStatus
from pgjobs.ui.render import redacted_json, relative, status_bars


def test_relative_times() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert relative(now - timedelta(seconds=5), now) == "5 s ago"
    assert relative(now - timedelta(minutes=3, seconds=10), now) == "3 min ago"
    assert relative(now + timedelta(hours=2), now) == "in 2 h"
    assert relative(now - timedelta(days=3), now) == "3 d ago"
    assert relative(None) == "—"


def test_payload_is_redacted_like_log_lines() -> None:
    shown = redacted_json({"api_key": "sk-live-123", "n": 1})
    assert "sk-live-123" not in shown and '"n": 1' in shown


def test_status_chart_scales_bars_to_the_largest_count() -> None:
    svg = status_bars({JobStatus.SUCCEEDED: 10, JobStatus.FAILED: 5})
    assert svg.startswith("<svg") and 'class="s-failed"' in svg
    assert 'width="400"' in svg and 'width="200"' in svg  # (600 - 200) * n / 10


def test_workers_and_producers_do_not_import_the_dashboard(
    server_urls: tuple[str, str],
) -> None:
    code = (
        "import sys, pgjobs.worker.app, pgjobs.worker.runner, pgjobs.producer; "
        "print(sorted(m for m in sys.modules if m.startswith(('jinja2', 'pgjobs.ui'))))"
    )
    env = {**os.environ, "DATABASE_URL": server_urls[0], "REDIS_URL": server_urls[1]}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"
