"""Benchmark suite (issue #6): this system against raw Dramatiq on the same machine.

Run ``python -m bench --help``. Every measure runs in a scratch database and a Redis namespace
of its own, so it never touches user data; ``docs/benchmarks.md`` records what it measured.
"""
