"""The generator benchmark at smoke size, so it never rots (no timing is asserted)."""

from __future__ import annotations

import json

import simpy


def test_generator_benchmark_smoke():
    from benchmarks.generator_throughput import SMOKE, run_benchmark

    step = simpy.Environment.step
    report = run_benchmark(SMOKE, seed=3)
    assert simpy.Environment.step is step  # the step counter is unwrapped again
    json.dumps(report)
    config = SMOKE.quick_overrides
    assert report["benchmark"] == "generator_throughput"
    assert report["rows"] >= config["epoch_count"] * config["rows_per_epoch"]
    assert report["epochs"] == report["simpy_ticks"]
    assert 0 < report["simpy_events"] < report["rows"]  # SimPy schedules ticks, not payments
    assert report["ratios"]["rows_per_simpy_event"] == report["rows"] / report["simpy_events"]
    names = {m["perf_metric_name"]: m for m in report["metrics"]}
    assert set(names) == {"generator_rows_per_s", "simpy_events_per_s"}
    assert all(m["perf_metric_type"] == "THROUGHPUT" and m["perf_metric_value"] > 0
               for m in names.values())
    assert len(report["rows_sha256"]) == 64


def test_generator_benchmark_hash_is_seeded():
    from benchmarks.generator_throughput import SMOKE, run_benchmark

    assert run_benchmark(SMOKE, seed=3)["rows_sha256"] == run_benchmark(SMOKE, seed=3)["rows_sha256"]
    assert run_benchmark(SMOKE, seed=3)["rows_sha256"] != run_benchmark(SMOKE, seed=4)["rows_sha256"]
