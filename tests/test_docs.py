"""Docs that are generated from code stay current, and the README's tour is the example in
examples/thumbnails/, which runs as written (worker and maintenance as real processes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pgjobs.settings import settings_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLE = ROOT / "examples" / "thumbnails"
_FILE_BLOCK = re.compile(r"<!-- file: (?P<name>[\w.-]+) -->\n```\w*\n(?P<body>.*?)```\n", re.S)
"""A code block of the README shown as a file: an HTML comment names it."""
_DROP_PREFIXES = ("JOBS_", "DATABASE_URL", "REDIS_URL", "PYTEST_", "PYTHONPATH")


def test_operations_doc_lists_every_setting() -> None:
    text = (DOCS / "operations.md").read_text()
    start = text.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == settings_reference(), (
        "regenerate with: jobctl settings --markdown"
    )


def readme_tour() -> dict[str, str]:
    """The README's tour files: name -> text, as a reader would paste them."""
    return {m["name"]: m["body"] for m in _FILE_BLOCK.finditer((ROOT / "README.md").read_text())}


def test_readme_tour_is_the_example() -> None:
    shown = readme_tour()
    example = {p.name: p.read_text() for p in EXAMPLE.iterdir() if p.suffix in {".py", ".sh"}}
    assert sorted(shown) == sorted(example), "the README shows other files than the example has"
    for name, text in example.items():
        assert shown[name] == text, f"README.md's {name} differs from examples/thumbnails/{name}"


def test_an_application_that_enqueues_imports_no_worker_code() -> None:
    """The example's job types, and every name its producer script uses, load without
    pgjobs.worker (run from the example's folder, as the tour does)."""
    names = set(re.findall(r"pgjobs\.(\w+)", (EXAMPLE / "enqueue.py").read_text()))
    code = (
        "import sys, jobs, pgjobs\n"
        f"for name in {sorted(names)!r}: getattr(pgjobs, name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('pgjobs.worker')))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=EXAMPLE, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.slow
def test_readme_tour_runs_as_written(
    tmp_path: Path, empty_db_url: str, server_urls: tuple[str, str], redis_namespace: str
) -> None:
    """The README's files pasted into a folder, its commands run from there: `jobctl db
    upgrade` on an empty database, a worker and a maintenance process, the producer script,
    `jobctl jobs list`. Encryption keys come from the development key file of that folder."""
    app = tmp_path / "app"
    app.mkdir()
    for name, text in readme_tour().items():
        (app / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        DATABASE_URL=empty_db_url,
        REDIS_URL=server_urls[1],
        JOBS_REDIS_NAMESPACE=redis_namespace,
        JOBS_WORKER_PROCESSES="1",
        JOBS_SHUTDOWN_GRACE_SECONDS="5",
        PYTHONDONTWRITEBYTECODE="1",
    )
    proc = subprocess.Popen(
        ["bash", "commands.sh"],
        cwd=app,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output[-4000:]
    assert len(re.findall(r"^job \d+: succeeded \{'thumbnails': \[", output, re.M)) == 2, output
    assert "thumbnails: 2 succeeded" in output
    assert re.search(r"^\s*\d+\s+thumbnail\s+succeeded", output, re.M), output  # jobs list
    assert '"event": "worker.serving"' in output and '"thumbnail"' in output
    assert '"event": "maintenance.started"' in output  # a background crash ends no script
    assert "Traceback" not in output, output[-4000:]
    assert (app / ".dev" / "keys.txt").exists()  # the folder's development key
