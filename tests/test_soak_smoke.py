"""The soak/overload benchmark at smoke size, so it never rots (no timing is asserted)."""

from __future__ import annotations


def test_soak_smoke(ray_session):
    from benchmarks.soak import SMOKE, run_soak

    report = run_soak(SMOKE, minutes=0.03, load=0.8, seed=2)
    assert report["rows"] == report["epochs"] * SMOKE.rows_per_epoch
    assert report["committed"] == report["rows"]  # every sender is funded far beyond its spending
    assert report["invariant_violations"] == []
    names = {m["perf_metric_name"] for m in report["metrics"]}
    assert {"capacity_rows_per_s", "soak_committed_per_s", "latency_from_arrival_p99_ms"} <= names
    assert set(report["rss"]) == {"driver"} | {f"shard{s}" for s in range(SMOKE.shards)}
    assert all(v["max_mb"] > 0 for v in report["rss"].values())
