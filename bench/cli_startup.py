"""``python -m bench.cli_startup``: how long `jobctl` takes to answer, as an operator runs it.

Runs each command line as a new process ``--runs`` times and reports the median wall time
(and the fastest and slowest run) in docs/benchmarks.md, between the markers below; ``python
-m bench`` keeps that block when it rewrites the page. No server is needed: the commands
measured touch neither PostgreSQL nor Redis.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.stats import median

START = "<!-- cli-startup:start -->"
END = "<!-- cli-startup:end -->"
GOAL_S = 0.3
"""`jobctl --help` should answer within this (its commands are imported on first use)."""

COMMANDS = (
    ("jobctl --help", ["--help"]),
    ("jobctl --version", ["--version"]),
    ("jobctl jobs list --help", ["jobs", "list", "--help"]),
)


def jobctl() -> list[str]:
    """The installed console script (what an operator types), else the module."""
    found = shutil.which("jobctl", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "pgjobs.cli.main"]


def measure(args: list[str], runs: int) -> list[float]:
    """Wall seconds of each of ``runs`` processes (after one warm-up run for the disk cache)."""
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        subprocess.run([*jobctl(), *args], capture_output=True, check=True, timeout=60)
        if i:
            times.append(time.perf_counter() - started)
    return times


def block(results: list[tuple[str, list[float]]], runs: int) -> str:
    lines = [
        START,
        "## `jobctl` start-up",
        "",
        f"Command: `python -m bench.cli_startup --runs {runs}` — "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Wall time of a new process, median of "
        f"{runs} runs (after one warm-up run). Goal: `jobctl --help` within {GOAL_S} s.",
        "",
        "| command | median | fastest | slowest |",
        "|---|---|---|---|",
    ]
    for name, times in results:
        lines.append(
            f"| `{name}` | {median(times):.3f} s | {min(times):.3f} s | {max(times):.3f} s |"
        )
    help_median = median(results[0][1])
    met = "met" if help_median <= GOAL_S else "**missed**"
    lines += [
        "",
        f"`jobctl --help` {met}: {help_median:.3f} s against {GOAL_S} s. It imports click and "
        "the command table only; each command's module (and with it SQLAlchemy, Dramatiq, "
        "pydantic) is imported when that command runs (`jobctl jobs list --help` shows the "
        "cost of one group). Before, every command module was imported for any command: "
        "1.2-2.7 s for `--help`.",
        END,
    ]
    return "\n".join(lines)


def put_block(page: str, new_block: str) -> str:
    """``page`` with its start-up block replaced by ``new_block`` (appended when absent)."""
    if START in page and END in page:
        before, _, rest = page.partition(START)
        _, _, after = rest.partition(END)
        return before + new_block + after
    return page.rstrip("\n") + "\n\n" + new_block + "\n"


def kept_block(old_page: str) -> str | None:
    """The start-up block of a page about to be regenerated (None when it has none)."""
    if START not in old_page or END not in old_page:
        return None
    return START + old_page.partition(START)[2].partition(END)[0] + END


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cli_startup", description=__doc__)
    p.add_argument("--runs", type=int, default=9, help="processes per command (median)")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = p.parse_args(argv)
    results = [(name, measure(cmd, args.runs)) for name, cmd in COMMANDS]
    text = block(results, args.runs)
    print(text)
    page = args.out.read_text() if args.out.exists() else "# Benchmarks\n"
    args.out.write_text(put_block(page, text))


if __name__ == "__main__":
    main()
