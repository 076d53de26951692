"""`jobctl` as a process: how fast `--help` answers, what reaches stdout and stderr, exit codes
and confirmations; and the library's silence inside an application's process.

Speed is measured in bench/cli_startup.py; the bound here is only generous enough to catch the
command modules being imported again for `--help`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import jobctl
from sqlalchemy.engine import make_url

from pgjobs.cli.main import COMMANDS
from pgjobs.services import embedded

HELP_BOUND_S = 1.0
"""Wall time of `jobctl --help` (about 0.1 s measured: docs/benchmarks.md); 1.5 s before its
commands were imported lazily."""

HEAVY = ("sqlalchemy", "dramatiq", "pydantic", "pydantic_settings", "redis", "pgjobs.producer")


def jobctl_executable() -> list[str]:
    """The installed console script, as an operator runs it."""
    script = Path(sys.executable).with_name("jobctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pgjobs.cli.main"]


def test_help_answers_fast_and_lists_every_command() -> None:
    started = time.perf_counter()
    proc = subprocess.run(
        [*jobctl_executable(), "--help"], capture_output=True, text=True, timeout=30
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < HELP_BOUND_S, f"jobctl --help took {elapsed:.2f} s"
    listed = proc.stdout.split("Commands:")[1]
    for name in COMMANDS:
        assert f"\n  {name} " in listed


def test_help_imports_none_of_the_heavy_modules() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        heavy = sys.argv[1:]
        from pgjobs.cli.main import main
        sys.argv = ["jobctl", "--help"]
        try:
            main()
        except SystemExit:
            pass
        loaded = [m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy)]
        print(json.dumps(sorted(loaded)))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_short_help_is_the_commands_own(name: str) -> None:
    entry = COMMANDS[name]
    command = entry.load()
    assert command.name == name
    assert command.get_short_help_str(limit=1000) == entry.short_help


# --- quiet by default ----------------------------------------------------------------------------


def test_commands_print_their_result_only(db_env: str, tenant_slug: str) -> None:
    created = jobctl("tenants", "create", tenant_slug)
    assert created.returncode == 0, created.stderr
    assert created.stderr == ""
    assert created.stdout.startswith(f"created tenant {tenant_slug} (") and (
        created.stdout.count("\n") == 1
    )
    quiet = jobctl("db", "current")
    assert quiet.returncode == 0 and quiet.stderr == ""
    # -v: the info lines of the libraries underneath (Alembic here) go to stderr, not stdout.
    verbose = jobctl("-v", "db", "current")
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    assert "Context impl PostgresqlImpl" in verbose.stderr


def test_errors_still_show_on_stderr_with_exit_1(db_env: str) -> None:
    proc = jobctl("tenants", "create", "Not A Slug")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "Error: invalid input: slug: must be 1 to 64 lowercase letters, digits and dashes, "
        "not starting or ending with a dash"
    ]


APPLICATION = """
import json, logging, sys, uuid
import pgjobs
{configure}
slug = "app-" + uuid.uuid4().hex[:10]
tenant = pgjobs.create_tenant(name=slug, slug=slug)
job = pgjobs.enqueue("scheduled_preview",
                     {{"credential_id": str(uuid.uuid4()), "season": 2026, "team": "Navy"}},
                     tenant_id=tenant.id)
pgjobs.cancel_job(tenant.id, job.id, reason="no longer needed")
pgjobs.retry_job(tenant.id, job.id)
pgjobs.flush(timeout=5)
print("the application's own output")
"""


def run_application(configure: str = "") -> subprocess.CompletedProcess[str]:
    code = APPLICATION.format(configure=configure)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_library_prints_nothing_into_an_applications_output(jobs_env: str) -> None:
    proc = run_application()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "the application's own output\n"
    assert proc.stderr == ""


def test_an_applications_logging_setup_decides_what_the_library_shows(jobs_env: str) -> None:
    proc = run_application("logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "the application's own output\n"
    lines = proc.stderr.splitlines()
    assert any(line.startswith("pgjobs.producer.control event=job.cancel ") for line in lines)
    assert any(line.startswith("pgjobs.producer.control event=job.retry ") for line in lines)


# --- db reset asks, db wait retries ---------------------------------------------------------------


def test_db_reset_asks_first(use_fresh_db: str, tenant_slug: str) -> None:
    assert jobctl("tenants", "create", tenant_slug).returncode == 0
    for answer in (b"", b"n\n"):
        refused = jobctl("db", "reset", stdin=answer)
        assert refused.returncode == 1 and "Aborted" in refused.stderr
        assert "every table and row is deleted. Continue?" in refused.stdout
        assert tenant_slug in jobctl("tenants", "list").stdout
    confirmed = jobctl("db", "reset", stdin=b"y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "database reset" in confirmed.stdout
    assert jobctl("tenants", "create", tenant_slug).returncode == 0
    unasked = jobctl("db", "reset", "--yes", "--json")
    assert unasked.returncode == 0, unasked.stderr
    assert "Continue?" not in unasked.stdout and json.loads(unasked.stdout)["revision"]
    assert tenant_slug not in jobctl("tenants", "list").stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_appearing_after(delay: float, target_url: str) -> Iterator[str]:
    """A URL whose port refuses connections for ``delay`` seconds, then forwards them to the
    real server (a server that is still starting, as far as a client can tell)."""
    target = make_url(target_url)
    port = _free_port()
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()

    def serve() -> None:
        time.sleep(delay)
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            server.settimeout(0.1)
            while not stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection((target.host, target.port or 5432))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        stop.set()
        thread.join(timeout=5)


@pytest.mark.timeout(60)
def test_db_wait_retries_until_postgres_accepts(db_env: str) -> None:
    with postgres_appearing_after(1.5, db_env) as url:
        started = time.monotonic()
        proc = jobctl(
            "db", "wait", "--timeout", "30", "--interval", "0.2", env={"DATABASE_URL": url}
        )
        waited = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("PostgreSQL accepts connections (") and proc.stderr == ""
    assert waited >= 1.5


@pytest.mark.timeout(60)
def test_db_wait_gives_up_after_its_timeout(db_env: str) -> None:
    url = make_url(db_env).set(host="127.0.0.1", port=_free_port())
    started = time.monotonic()
    proc = jobctl(
        "db", "wait", "--timeout", "1.5", "--interval", "0.2",
        env={"DATABASE_URL": url.render_as_string(hide_password=False)},
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("Error: PostgreSQL did not accept connections within 1.5 s: ")
    assert 1.5 <= time.monotonic() - started < 20


# --- --json and settings -------------------------------------------------------------------------


def test_health_and_tenants_create_print_json(db_env: str, tenant_slug: str) -> None:
    health = jobctl("health", "--json")
    assert health.returncode == 0, health.stderr
    found = json.loads(health.stdout)
    assert found["postgres"]["ok"] and found["redis"]["ok"]
    created = json.loads(jobctl("tenants", "create", tenant_slug, "--json").stdout)
    assert created["slug"] == tenant_slug and uuid.UUID(created["id"])


def test_settings_show_value_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_env: str
) -> None:
    (tmp_path / ".env").write_text("JOBS_LOG_LEVEL=DEBUG\nJOBS_WORKER_THREADS=5\n")
    env = {
        "JOBS_WORKER_THREADS": "3",  # the environment wins over .env
        "JOBS_ENCRYPTION_KEYS": "ka:" + "A" * 43 + "=",
        "JOBS_DEV_DIR": str(tmp_path / "dev"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", "from pgjobs.cli.main import main; main()", "settings", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **env},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["JOBS_WORKER_THREADS"] == {
        "variable": "JOBS_WORKER_THREADS",
        "value": "3",
        "source": "environment",
    }
    assert shown["JOBS_LOG_LEVEL"]["value"] == "DEBUG"
    assert shown["JOBS_LOG_LEVEL"]["source"] == ".env"
    assert shown["JOBS_LEASE_SECONDS"]["source"] == "default"
    assert shown["JOBS_ENCRYPTION_KEYS"]["value"] == "********"
    assert shown["DATABASE_URL"]["source"] == "environment"
    assert shown["JOBS_KEY_FILE"] == {"variable": "JOBS_KEY_FILE", "value": "", "source": "default"}


def test_settings_name_the_stand_ins_of_unset_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In development, unset service URLs and keys are served by the embedded servers and the
    dev key file: shown as such, and nothing is started or created to show them."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "DATABASE_", "REDIS_"))
    }
    env["JOBS_DEV_DIR"] = str(tmp_path / "dev")
    proc = subprocess.run(
        [sys.executable, "-c", "from pgjobs.cli.main import main; main()", "settings"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    key_file = str(tmp_path / "dev" / "keys.txt")
    assert lines["JOBS_KEY_FILE"].split()[0] == key_file
    assert lines["JOBS_KEY_FILE"].endswith("# dev key file (created on first use)")
    if embedded.available():
        assert lines["DATABASE_URL"].strip() == "# embedded server (not running: starts on use)"
        assert lines["REDIS_URL"].strip() == "# embedded server (not running: starts on use)"
    assert not (tmp_path / "dev").exists()
