"""The engine benchmark at smoke size, so it never rots (no timing is asserted)."""

from __future__ import annotations


def test_engine_benchmark_smoke(ray_session):
    from benchmarks.engine_throughput import SMOKE, run_benchmark

    report = run_benchmark(SMOKE, shards=2, seed=3)
    assert report["equal_results"]
    assert report["rows"] == SMOKE.accounts + SMOKE.transfers
    names = {m["perf_metric_name"] for m in report["metrics"]}
    assert {"ray_rows_per_s", "in_process_rows_per_s", "serial_numba_rows_per_s", "naive_actor_rows_per_s"} <= names
    assert all(m["perf_metric_value"] > 0 for m in report["metrics"])
    assert set(report["ratios"]) == {"ray_over_in_process", "ray_over_serial_numba", "ray_over_naive_actor"}
