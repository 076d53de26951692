"""`jobctl worker` (Dramatiq worker processes) and `jobctl maintenance` (the periodic services)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from pgjobs.settings import get_settings


def worker_env() -> dict[str, str]:
    """Environment for worker processes. Dramatiq's ``worker_timeout`` is how long an idle
    thread waits before it looks again (and so how soon it sees a stop); consumers wait on
    their doorbells, not on this (pgjobs/worker/consumer.py). With
    ``JOBS_METRICS_PORT``, every process writes its metrics to one multiprocess directory that
    Dramatiq's exposition server reads (ours and Dramatiq's alike)."""
    settings = get_settings()
    env = {"dramatiq_worker_timeout": str(settings.worker_idle_wait_ms)}
    if settings.metrics_port is not None:
        metrics_dir = Path(settings.dev_dir).resolve() / "metrics" / str(settings.metrics_port)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env.update(
            dramatiq_prom_port=str(settings.metrics_port),
            dramatiq_prom_db=str(metrics_dir),
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        )
    return env


def worker_argv(processes: int, threads: int, queues: tuple[str, ...]) -> list[str]:
    """The `dramatiq` command line for our worker application."""
    settings = get_settings()
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "pgjobs.worker.app",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        # Longer than our grace period, so jobs are released by us, not killed by Dramatiq.
        "--worker-shutdown-timeout",
        str(int((settings.shutdown_grace_seconds + 15) * 1000)),
    ]
    if queues:
        argv += ["--queues", *queues]
    return argv


def find_user_modules() -> None:
    """Each module ``JOBS_IMPORTS`` names can be found from the current directory (found, not
    imported: pgjobs/producer/user_modules.py imports them in every worker process)."""
    here = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == here for entry in sys.path):
        sys.path.insert(0, here)
    for name in filter(None, (n.strip() for n in get_settings().imports.split(","))):
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            from pgjobs.db.errors import ConfigurationError

            raise ConfigurationError(
                f"JOBS_IMPORTS: cannot find {name[:100]!r} in {here} or on the Python path: run "
                "the command from the directory that holds it, or add that directory to "
                "PYTHONPATH"
            )


@click.command()
@click.option("--processes", "-p", type=int, default=None, help="Worker processes.")
@click.option("--threads", "-t", type=int, default=None, help="Threads per process.")
@click.option("--queues", "-Q", multiple=True, help="Only these queues (default: all).")
def worker(processes: int | None, threads: int | None, queues: tuple[str, ...]) -> None:
    """Run worker processes (`dramatiq pgjobs.worker.app ...`, run in this process)."""
    settings = get_settings()
    # Found here, imported by each worker process: a wrong JOBS_IMPORTS is one line, and the
    # launch does not pay for importing the application (and the library) one more time.
    find_user_modules()
    if not (settings.database_url and settings.redis_url):
        from pgjobs.services.local import ensure_local_services

        database_url, redis_url = ensure_local_services(schema=True)
        os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = database_url, redis_url
    os.environ.update(worker_env())
    argv = worker_argv(
        processes or settings.worker_processes, threads or settings.worker_threads, queues
    )
    sys.exit(run_dramatiq(argv[3:]))


def run_dramatiq(args: list[str]) -> int:
    """Dramatiq's main process, in this one: the worker processes it forks start with what
    this command has already imported (settings, pydantic, structlog: about 0.17 s of each
    one's start-up), where exec'ing ``python -m dramatiq`` made each import them again.

    On SIGHUP Dramatiq restarts by exec'ing ``sys.argv``: it becomes this command run by this
    interpreter's full path (``python -m`` with a bare ``python`` would lose the virtualenv)."""
    from dramatiq import cli as dramatiq_cli

    get_settings.cache_clear()  # the worker processes read the environment set above
    sys.argv = [sys.executable, "-m", "pgjobs.cli.main", *sys.argv[1:]]
    parsed = dramatiq_cli.make_argument_parser().parse_args(args)  # type: ignore[no-untyped-call]
    code: int = dramatiq_cli.main(parsed)  # type: ignore[no-untyped-call]
    return code


@click.command()
@click.option("--interval", type=float, default=None, help="Seconds between passes.")
def maintenance(interval: float | None) -> None:
    """Run the relay, the rescuer, the pruner and the scheduler until SIGTERM/SIGINT."""
    from pgjobs.producer.user_modules import import_user_modules
    from pgjobs.services.local import ensure_local_services
    from pgjobs.worker.maintenance import run_maintenance

    import_user_modules()  # the relay needs your job types' queues
    database_url, redis_url = ensure_local_services(schema=True)
    os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = database_url, redis_url
    get_settings.cache_clear()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run_maintenance(stop, interval=interval)
