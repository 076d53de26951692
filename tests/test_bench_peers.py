"""The peers section of the benchmark report (bench/peers.py): medians per system, this
system's ratio to each, every run listed, an unmeasured figure shown as such.

No servers: the results are built from figures.
"""

from __future__ import annotations

from bench.peers import PeerResult, PeersSuite, render


def _result(system: str, drain_s: float, single: float, batch: float) -> PeerResult:
    return PeerResult(system, 10_000, drain_s, 0.5, 0.7, 0.4, 0.3, single, 150.0, batch, 12.0)


def test_ratios_are_this_systems_median_over_each_peers_median() -> None:
    suite = PeersSuite(
        {"command": "python -m bench --only peers", "load": "1.00", "load_end": "1.10"},
        [
            _result("this system", 4.0, 1_000, 20_000),
            _result("pgqueuer", 2.0, 2_000, 40_000),
            _result("this system", 5.0, 1_200, 20_000),
            _result("pgqueuer", 2.0, 2_000, 40_000),
        ],
    )
    page = render(suite)
    # drain: the median of 2,500 and 2,000 jobs/s against 5,000; single 1,100 against 2,000
    assert "| pgqueuer | 0.45x | 0.55x | 0.50x |" in page
    assert "| 2 | pgqueuer |" in page
    assert "python -m bench --only peers" in page


def test_a_figure_not_measured_is_a_dash_not_nan() -> None:
    raw = PeerResult("raw Dramatiq", 10_000, 5.0, 0.4, 0.3, 0.3, 0.1, 4_000, 60.0)
    suite = PeersSuite({}, [_result("this system", 4.0, 1_000, 20_000), raw])
    page = render(suite)
    assert "nan" not in page.lower()
    assert "| raw Dramatiq | 1.25x | 0.25x | - |" in page


def test_the_insert_alone_and_the_machines_busy_share_are_set_beside_the_goals() -> None:
    """The floor under the enqueue goals (this system's INSERT alone against pgqueuer's whole
    enqueue) and the evidence for the 16-thread goal (the cores' busy share), same run."""
    ours = _result("this system", 4.0, 1_000, 20_000)
    ours.insert_alone_per_s, ours.insert_alone_batch_per_s = 1_500.0, 30_000.0
    ours.threaded_per_s, ours.single_busy_pct, ours.threaded_busy_pct = 1_900.0, 45.0, 92.0
    suite = PeersSuite({}, [ours, _result("pgqueuer", 2.0, 2_000, 40_000)])
    page = render(suite)
    assert "one job a call 1,500 jobs/s, 0.75x pgqueuer's `enqueue`" in page
    assert "in batches 30,000 jobs/s, 0.75x pgqueuer's `enqueue`" in page
    assert "1.90x its single-thread rate" in page
    assert "cores were 45% busy during the single-thread calls and 92% during" in page


def test_the_drain_floor_is_raw_dramatiqs_worker_cpu_on_the_machines_cores() -> None:
    raw = PeerResult("raw Dramatiq", 10_000, 5.0, 0.25, 0.3, 0.3, 0.1, 4_000, 60.0)
    suite = PeersSuite({"cores": 2}, [_result("pgqueuer", 2.0, 2_000, 40_000), raw])
    page = render(suite)
    assert "spent 0.25 ms of CPU per job: on 2 cores no Dramatiq worker drains faster " in page
    assert "than 8,000 jobs/s" in page and "pgqueuer drained 5,000 jobs/s" in page
    assert "cost PostgreSQL" not in page  # this system's drain not measured here
    ours = _result("this system", 4.0, 1_000, 20_000)
    ours.drain_pg_cpu_ms_per_job = 0.15
    page = render(PeersSuite({"cores": 2}, [ours, *suite.results]))
    assert "cost PostgreSQL 0.15 ms of CPU per job" in page and "at most 5,000 jobs/s" in page
