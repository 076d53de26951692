"""The benchmark report (bench/report.py): goals judged right, the half-load rule and the
INSERT-alone floor explained, and a JSON dump rendered again without measuring.

No servers: the suite is built from figures, as ``python -m bench --from-json`` does.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bench import cli_startup
from bench.report import (
    HALF_LOAD,
    HALF_OF_DRAIN,
    SAME_RATE_AS_RAW,
    Suite,
    load,
    render,
    summary_rows,
)
from bench.results import DrainResult, LatencyResult, RateResult


def _drain(side: str, seconds: float) -> DrainResult:
    return DrainResult(side, 10_000, seconds, seconds * 0.9, 0.3, 0.1, 0.02, 4.8)


def _rate(side: str, jobs_per_s: float) -> RateResult:
    return RateResult(side, 3_000, 3_000 / jobs_per_s, 250.0, 200.0, 20.0, 1.0, 4.0)


def _latency(side: str, rate: float, p50: float, p99: float) -> LatencyResult:
    return LatencyResult(side, rate, rate, 1_000, p50, p99, p99 * 1.2, 1.0)


def _suite() -> Suite:
    suite = Suite(
        meta={
            "command": "python -m bench",
            "date": "2026-12-01 15:16 UTC",
            "runs": 1,
            "batch": 1000,
            "cores": 2,
            "environment": {"machine": "2 cores"},
        }
    )
    suite.drain_raw = [_drain("raw", 5.0)]  # 2,000 jobs/s
    suite.drain_ours = [_drain("ours", 2.5)]  # 4,000 jobs/s
    suite.send_raw = [_rate("raw", 8_000)]
    suite.enqueue_ours = [_rate("ours", 1_600)]
    suite.many_ours = [_rate("ours (batches of 1000)", 20_000)]
    suite.insert_alone = [
        _rate("INSERT alone (1 per call)", 2_800),
        _rate("INSERT alone (1000 per call)", 39_000),
    ]
    suite.latency = [
        (HALF_LOAD, _latency("raw", 1_000, 3.0, 8.0)),
        (HALF_LOAD, _latency("ours", 800, 4.0, 60.0)),
        ("5 jobs/s", _latency("ours", 5, 4.0, 9.0)),
        (SAME_RATE_AS_RAW, _latency("ours", 1_000, 6.0, 700.0)),
        (HALF_OF_DRAIN, _latency("ours", 2_000, 20.0, 300.0)),
    ]
    return suite


def test_goals_are_judged_against_their_limits() -> None:
    rows = {row.measure: row for row in summary_rows(_suite())}

    assert rows["1. end-to-end drain"].met is True  # 2.0x against >= 0.7x
    assert rows["2. single `enqueue` vs `actor.send`"].met is False  # 0.2x against >= 0.5x
    assert rows["3. `enqueue_many` vs `actor.send`"].met is False  # 2.5x against >= 5x
    assert rows["4. enqueue-to-start p50, half load"].met is True  # 4 ms against <= 10 ms
    assert rows["4. enqueue-to-start p99, half load"].met is False  # 60 ms against <= 50 ms
    assert rows["4. enqueue-to-start p99, 5 jobs/s"].met is None  # no goal
    # diagnostics are reported, never judged
    assert not [m for m in rows if SAME_RATE_AS_RAW in m or HALF_OF_DRAIN in m]


def test_the_page_explains_half_load_and_the_insert_floor() -> None:
    page = render(_suite(), "benchmarks.png")

    assert "the lower of its median" in page  # how half load is chosen
    assert "At half load (800 jobs/s) p50 is 4.0 ms and p99 60.0 ms" in page
    assert "Diagnostic, raw's half-load rate (1,000/s offered" in page
    assert "Diagnostic, half of its drain rate (2,000/s offered" in page
    # the floor: the INSERT alone against what the goal asks of the whole call
    assert "runs at 2,800 jobs/s (357.1 µs per job), below the 4,000 jobs/s" in page
    assert "runs at 39,000 jobs/s (25.6 µs per job), below the 40,000 jobs/s" in page
    assert "| diagnostic: the INSERT alone, 1,000 per call | 39,000 |" in page


def test_a_json_dump_renders_the_same_page(tmp_path: Path) -> None:
    suite = _suite()
    dump = tmp_path / "suite.json"
    dump.write_text(json.dumps(dataclasses.asdict(suite), default=str))

    assert render(load(dump), "benchmarks.png") == render(suite, "benchmarks.png")


def test_a_dump_from_before_the_floor_still_loads(tmp_path: Path) -> None:
    data = dataclasses.asdict(_suite())
    del data["insert_alone"]
    dump = tmp_path / "old.json"
    dump.write_text(json.dumps(data, default=str))

    page = render(load(dump), "benchmarks.png")

    assert "INSERT alone" not in page


def test_the_cli_startup_section_survives_a_new_report() -> None:
    old = cli_startup.put_block("# Benchmarks\n\nold figures\n", cli_startup.block(_STARTUP, 3))
    kept = cli_startup.kept_block(old)
    assert kept is not None and "| `jobctl --help` | 0.090 s | 0.080 s | 0.100 s |" in kept
    page = cli_startup.put_block(render(_suite(), "benchmarks.png"), kept)
    assert page.count(cli_startup.START) == 1 and kept in page and "old figures" not in page
    again = cli_startup.put_block(page, cli_startup.block(_STARTUP, 3).replace("0.090", "0.095"))
    assert again.count(cli_startup.START) == 1 and "0.095 s" in again


_STARTUP = [("jobctl --help", [0.08, 0.09, 0.1]), ("jobctl --version", [0.1, 0.1, 0.1])]


def test_schedule_goals_are_judged_and_rendered() -> None:
    from bench.results import ScheduleResult

    suite = _suite()
    suite.schedules = [
        ScheduleResult(10_000, 100, 3, 30_000, True, 0.6, 1.2, 1.3, 0.4, 0.9, 1.1, 0.3, 20.0, 0.5)
    ]
    rows = {row.measure.split(" (")[0]: row for row in summary_rows(suite)}
    assert rows["6. scheduler wall time per minute p99"].met is False  # 1.2 s against <= 1 s
    assert rows["6. firing delay p99"].met is True  # 0.9 s against <= 2 s
    page = render(suite, "x.png")
    assert "## Periodic schedules" in page and "30,000" in page
    dumped = json.loads(json.dumps(dataclasses.asdict(suite), default=str))
    assert load_dump(dumped).schedules == suite.schedules


def load_dump(data: dict[str, object]) -> Suite:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        json.dump(data, out)
    return load(Path(out.name))


def test_sections_of_their_own_are_replaced_and_kept() -> None:
    from bench import sections

    page = "# Benchmarks\n\nbody\n"
    once = sections.splice(page, "## Idle\nfirst\n", "idle")
    assert sections.existing(once, "idle") == "## Idle\nfirst\n"
    twice = sections.splice(
        sections.splice(once, "## API\nx\n", "api"), "## Idle\nsecond\n", "idle"
    )
    assert twice.count("## Idle") == 1 and "second" in twice and "first" not in twice
    assert sections.existing(twice, "api") == "## API\nx\n" and twice.startswith(page.rstrip())


def test_idle_goals_are_judged_on_our_side() -> None:
    from bench.idle import IdleResult, IdleSuite, render

    def result(side: str, launch: float, idle_pct: float) -> IdleResult:
        return IdleResult(side, 3, launch, 0.4, idle_pct, 100.0)

    met = render(IdleSuite({}, [result("ours", 0.7, 0.4), result("raw Dramatiq", 0.1, 0.2)]))
    assert "| launch to first job finished | 0.10 s | 0.70 s | ≤ 1.0 s | yes |" in met
    missed = render(IdleSuite({}, [result("ours", 1.3, 12.7), result("raw Dramatiq", 0.1, 0.2)]))
    assert "| 1.30 s | ≤ 1.0 s | **no** |" in missed
    assert (
        "| idle CPU per worker process | 0.20% of a core | 12.70% of a core | ≤ 2% | **no** |"
        in missed
    )
