"""Soak and overload: the engine fed open-loop at a fraction of its capacity, for minutes.

1. Capacity: a stream of plain Zipf P2P epochs runs flat out for a few seconds (rows/s).
2. The same stream is offered open-loop at `load` x capacity for `minutes`: epoch k is due at
   t0 + k * rows_per_epoch / offered_rate, and the driver waits for that instant (never for
   the engine), so work falls behind, not away, under overload. A payment's latency runs from
   its scheduled arrival (rows are spread evenly over their epoch's span) to the commit of its
   epoch: no coordinated omission.
3. Meanwhile a sampler reads the resident memory (VmRSS) of the driver and of every shard
   actor once a second. The engine keeps no per-row state on long runs (status counts only).

    python -m benchmarks.soak --minutes 10 --load 0.8      # the soak
    python -m benchmarks.soak --minutes 2 --load 1.5       # overload
    python -m benchmarks.soak --smoke                      # seconds; runs in the test suite
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from xpay.bench import metric
from sim.engine import Engine
from sim.shard_state import table_hint_per_shard
from workloads.plain import PlainP2P
from xpay.memory import rss_bytes
from xpay.report import hardware, versions

ZIPF_EXPONENT = 1.2
RSS_SAMPLE_SECONDS = 1.0
LATENCY_SAMPLES_PER_EPOCH = 64


@dataclass(frozen=True)
class SoakSize:
    accounts: int
    rows_per_epoch: int
    capacity_epochs: int
    shards: int


REAL = SoakSize(accounts=1_000_000, rows_per_epoch=100_000, capacity_epochs=40, shards=4)
SMOKE = SoakSize(accounts=5_000, rows_per_epoch=2_000, capacity_epochs=5, shards=2)


class RssSampler:
    """Resident memory of some processes, sampled in a thread: [(t, {pid: bytes})]."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        started = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - started, {n: rss_bytes(p) for n, p in self.pids.items()}))
            self._stop.wait(RSS_SAMPLE_SECONDS)


def paced(epochs, rows_per_epoch: int, offered_rows_per_s: float, schedule: list):
    """Yield epochs no earlier than their due instant; record each due instant."""
    started = time.perf_counter()
    for k, rows in enumerate(epochs):
        due = started + k * rows_per_epoch / offered_rows_per_s
        schedule.append(due)
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield rows


def run_soak(size: SoakSize, minutes: float, load: float, seed: int, window_epochs: int = 100) -> dict:
    from actors.ray_hosts import RayHosts, start_ray
    from sim.warmup import warm_up

    # endless plain P2P (`workloads.plain`): every user funded so that no sender runs dry, so
    # every epoch is full work; one iterator, continued from phase to phase
    source = PlainP2P(size.accounts, None, size.rows_per_epoch, ZIPF_EXPONENT,
                      np.random.default_rng(seed))
    accounts, stream = source.accounts(), source.epochs()
    start_ray()
    warm_up()
    hint = table_hint_per_shard(10**12, size.rows_per_epoch, 0, window_epochs, size.shards)
    hosts = RayHosts(accounts, size.shards, window_epochs, hint)
    try:
        engine = Engine(accounts, hosts, window_epochs, stop_on_violation=True)
        engine.run(itertools.islice(stream, source.funding_epoch_count), keep_status=False)
        capacity = engine.run(itertools.islice(stream, size.capacity_epochs),
                              keep_status=False).metrics
        capacity_rows_per_s = capacity.rows / capacity.engine_seconds
        offered = load * capacity_rows_per_s
        epochs = max(1, int(minutes * 60 * offered / size.rows_per_epoch))
        schedule: list[float] = []
        pids = {"driver": os.getpid(), **{f"shard{s}": pid for s, pid in enumerate(hosts.pids)}}
        with RssSampler(pids) as sampler:
            soak = engine.run(paced(itertools.islice(stream, epochs), size.rows_per_epoch, offered,
                                    schedule),
                              keep_status=False).metrics
    finally:
        hosts.close()
    return _report(size, minutes, load, seed, capacity_rows_per_s, offered, soak, schedule, sampler.samples)


def _latencies_ms(commit_times: list, schedule: list, span_s: float) -> np.ndarray:
    """Each epoch's commit minus its payments' scheduled arrivals (evenly spread over span_s)."""
    commits = np.asarray(commit_times)[:, None]
    due = np.asarray(schedule[: len(commit_times)])[:, None]
    offsets = (np.arange(LATENCY_SAMPLES_PER_EPOCH) + 0.5) / LATENCY_SAMPLES_PER_EPOCH * span_s
    return ((commits - due - offsets[None, :]) * 1000.0).ravel()


def _rss_report(samples: list) -> dict:
    """Per process: first, last, max resident MB after warm-up, and growth over the second half."""
    out = {}
    if not samples:
        return out
    names = samples[0][1].keys()
    half = len(samples) // 2
    for name in names:
        series = np.array([s[1].get(name) or 0 for s in samples], np.float64) / 2**20
        early = float(np.median(series[max(0, half // 2):max(1, half)]))
        late = float(np.median(series[max(half, len(series) - max(1, half // 2)):]))
        out[name] = {"first_mb": float(series[0]), "last_mb": float(series[-1]), "max_mb": float(series.max()),
                     "median_second_quarter_mb": early, "median_last_quarter_mb": late,
                     "growth_mb": late - early}
    return out


def _report(size, minutes, load, seed, capacity_rows_per_s, offered, soak, schedule, samples) -> dict:
    committed_per_s = soak.committed / soak.engine_seconds
    rows_per_s = soak.rows / soak.engine_seconds
    latency = _latencies_ms(soak.commit_times, schedule, size.rows_per_epoch / offered)
    rss = _rss_report(samples)
    return {
        "benchmark": "soak", "size": size.__dict__, "minutes": minutes, "load": load, "seed": seed,
        "epochs": soak.epochs, "rows": soak.rows, "committed": soak.committed,
        "capacity_rows_per_s": capacity_rows_per_s, "offered_rows_per_s": offered,
        "metrics": [
            metric("capacity_rows_per_s", capacity_rows_per_s, "THROUGHPUT", "rows/s"),
            metric("offered_rows_per_s", offered, "THROUGHPUT", "rows/s"),
            metric("soak_rows_per_s", rows_per_s, "THROUGHPUT", "rows/s"),
            metric("soak_committed_per_s", committed_per_s, "THROUGHPUT", "rows/s"),
            metric("latency_from_arrival_p50_ms", float(np.percentile(latency, 50)), "LATENCY", "ms"),
            metric("latency_from_arrival_p99_ms", float(np.percentile(latency, 99)), "LATENCY", "ms"),
            metric("latency_from_arrival_max_ms", float(latency.max()), "LATENCY", "ms"),
        ],
        "throughput_held": min(rows_per_s, offered) / min(capacity_rows_per_s, offered),
        "rss": rss,
        "rss_samples": [[round(t, 2), s] for t, s in samples],
        "invariant_violations": soak.invariant_violations,
        "versions": versions(), "hardware": hardware(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny size and a few seconds, for the tests")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.8, help="offered load as a share of capacity")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the JSON report here too")
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else REAL
    minutes = 0.05 if args.smoke else args.minutes
    report = run_soak(size, minutes, args.load, args.seed)
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    summary = {k: v for k, v in report.items() if k not in ("rss_samples",)}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
