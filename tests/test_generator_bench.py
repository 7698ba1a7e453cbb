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
    assert report["benchmark"] == "generator_throughput"
    # the smoke size is the product's model (quick resized), not a stand-in generator
    assert report["workload"]["scenario"]["population"]["users"] == SMOKE.size.users == 2_000
    assert report["epochs"] == 1 + SMOKE.size.epochs  # one funding epoch, then the traffic
    assert report["rows"] > 3 * SMOKE.size.users
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


def test_warm_passes_replay_the_same_rows_and_report_their_best():
    from benchmarks.generator_throughput import SMOKE, run_benchmark

    report = run_benchmark(SMOKE, seed=3, passes=3)
    assert len(report["warm_pass_seconds"]) == 2
    names = {m["perf_metric_name"]: m["perf_metric_value"] for m in report["metrics"]}
    assert names["generator_rows_per_s_warm"] == report["rows"] / min(report["warm_pass_seconds"])
    assert report["goal_met_warm"] == (names["generator_rows_per_s_warm"] >= 20_000_000)
    assert run_benchmark(SMOKE, seed=3)["goal_met_warm"] is None  # one pass: no warm figure


def test_main_sets_the_heap_policy_and_refuses_zero_passes(capsys):
    from benchmarks import generator_throughput
    from xpay import malloc_policy

    assert generator_throughput.main(["--smoke", "--passes", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["heap_keeps_freed_memory"] is malloc_policy.kept()
    assert len(report["warm_pass_seconds"]) == 1
    try:
        generator_throughput.main(["--smoke", "--passes", "0"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("--passes 0 was taken")


def test_heap_policy_can_be_turned_off(monkeypatch):
    from xpay import malloc_policy

    monkeypatch.setattr(malloc_policy, "_state", {"kept": False})
    monkeypatch.setenv(malloc_policy.ENV_DEFAULT_HEAP, "1")
    assert malloc_policy.keep_freed_memory() is False
    assert malloc_policy.kept() is False
