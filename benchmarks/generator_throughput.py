"""Generator throughput: payments generated per second on one core, and what SimPy costs.

A scenario (the same resolver as ``xpay run``/``generate``, `workloads.registry`) is iterated
epoch by epoch, in this one process (numpy draws are single-threaded), without writing or
joining anything. It reports, as typed metrics:

- ``generator_rows_per_s``: rows yielded by ``epochs()`` over the wall seconds spent inside
  ``epochs()`` (account creation, hashing and everything between yields excluded), on the
  first pass: every buffer is touched for the first time, as in ``xpay generate``;
- ``generator_rows_per_s_warm``: the same over the best of passes 2.. (``--passes``, default
  3), which replay the same epochs and must hash the same (the steady state of a long run);
  ``goal_met`` and ``goal_met_warm`` compare each with the goal, 20M rows/s;
- ``simpy_events_per_s``: how fast SimPy schedules the same events on their own. The numpy
  draws run inside the SimPy process's steps, so the SimPy share cannot be timed from the
  steps themselves; instead the events the run processed are counted (every
  ``simpy.Environment.step`` during ``epochs()``), and an empty SimPy environment with one
  process that makes the same number of timeouts is timed, repeated until it has run
  ``SIMPY_TIMING_SECONDS_MIN``;
- ratios: ``simpy_share_of_time``, SimPy's estimated seconds (events / simpy_events_per_s)
  over the generator's seconds; ``rows_per_simpy_event``, rows / events. SimPy schedules ticks, not
  payments, so events are a handful per epoch and rows per event are in the thousands.

The process keeps freed heap memory as ``xpay`` does (`xpay.malloc_policy`; ``XPAY_DEFAULT_HEAP=1``
measures glibc's defaults instead, and ``heap_keeps_freed_memory`` says which). The report
also carries the size, the seed, a sha256 of every column of every row generated
(in epoch order, little-endian), versions and hardware.

    python -m benchmarks.generator_throughput              # real size: quick, ~6M rows
    python -m benchmarks.generator_throughput --scenario NAME   # a scenario at its own size
    python -m benchmarks.generator_throughput --smoke      # a second; runs in the test suite
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import simpy

from xpay.bench import metric
from sim.columns import TRANSFER_DTYPES
from xpay import malloc_policy
from xpay.report import hardware, versions
from workloads.registry import QUICK, build_workload
from workloads.scenario import Resize

SIMPY_TIMING_SECONDS_MIN = 0.2  # the empty-SimPy timing repeats until at least this long
GOAL_ROWS_PER_S = 20_000_000  # the goal for one core


@dataclass(frozen=True)
class GeneratorSize:
    scenario: str
    size: Resize  # Resize() = the scenario's own size


# The quick scenario (workloads/scenarios/quick.toml) at its own size: 1.24M accounts, 6M rows;
# the smoke size is the same model and mix, resized to 2,000 users and 4 traffic epochs.
REAL = GeneratorSize(scenario=QUICK, size=Resize())
SMOKE = GeneratorSize(scenario=QUICK, size=Resize(users=2_000, epochs=4))


@contextmanager
def counting_simpy_steps():
    """Counts every `simpy.Environment.step` while inside (the class method is wrapped)."""
    counter = {"events": 0}
    original = simpy.Environment.step

    def step(env):
        counter["events"] += 1
        return original(env)

    simpy.Environment.step = step
    try:
        yield counter
    finally:
        simpy.Environment.step = original


def time_epochs(source) -> dict:
    """Rows, seconds inside `epochs()`, SimPy events, and the sha256 of the rows generated."""
    digest = hashlib.sha256()
    rows, seconds = 0, 0.0
    epoch_rows_per_s = []
    with counting_simpy_steps() as counter:
        iterator = iter(source.epochs())
        while True:
            started = time.perf_counter()
            part = next(iterator, None)
            epoch_seconds = time.perf_counter() - started
            seconds += epoch_seconds
            if part is None:
                break
            rows += len(part)
            epoch_rows_per_s.append(len(part) / epoch_seconds)
            for name, dtype in TRANSFER_DTYPES.items():
                little_endian = np.dtype(dtype).newbyteorder("<")
                digest.update(np.ascontiguousarray(part.columns()[name], little_endian).tobytes())
    assert seconds > 0.0
    return {"rows": rows, "epochs": len(epoch_rows_per_s), "seconds": seconds,
            "simpy_events": counter["events"], "rows_sha256": digest.hexdigest(),
            "epoch_rows_per_s": _spread(epoch_rows_per_s)}


def _spread(values: list[float]) -> dict:
    if not values:
        return {"min": 0.0, "p50": 0.0, "max": 0.0}
    return {"min": min(values), "p50": float(np.median(values)), "max": max(values)}


def _tick_process(env: simpy.Environment, timeouts: int):
    for _ in range(timeouts):
        yield env.timeout(1)


def simpy_events_per_s(event_count: int) -> float:
    """Events per second of an empty SimPy environment stepping `event_count` events, repeated."""
    event_count = max(event_count, 1)
    events, seconds = 0, 0.0
    while seconds < SIMPY_TIMING_SECONDS_MIN:
        env = simpy.Environment()
        env.process(_tick_process(env, event_count))
        started = time.perf_counter()
        while env.peek() != float("inf"):
            env.step()
            events += 1
        seconds += time.perf_counter() - started
    return events / seconds


def run_benchmark(size: GeneratorSize, seed: int, passes: int = 1) -> dict:
    """Pass 1 is the figure (a cold pass: first touch of every buffer); passes 2.. replay the
    same epochs (`epochs()` starts again), must give the same rows, and their best is reported
    as the warm figure."""
    assert passes >= 1, f"passes(={passes}) must be >= 1"
    source = build_workload(size.scenario, seed, size.size)
    started = time.perf_counter()
    account_count = len(source.accounts())
    accounts_seconds = time.perf_counter() - started
    _say(f"{size.scenario}: {account_count:,} accounts in {accounts_seconds:.2f} s;"
         " generating epochs")
    run = time_epochs(source)
    rows_per_s = run["rows"] / run["seconds"]
    warm_seconds = []
    for index in range(2, passes + 1):
        again = time_epochs(source)
        assert again["rows_sha256"] == run["rows_sha256"], f"pass {index} gave other rows"
        warm_seconds.append(again["seconds"])
    warm_rows_per_s = run["rows"] / min(warm_seconds) if warm_seconds else None
    warm = ([metric("generator_rows_per_s_warm", warm_rows_per_s, "THROUGHPUT", "rows/s")]
            if warm_seconds else [])
    events_per_s = simpy_events_per_s(run["simpy_events"])
    simpy_seconds = run["simpy_events"] / events_per_s
    rows_per_event = run["rows"] / run["simpy_events"] if run["simpy_events"] else None
    return {
        "benchmark": "generator_throughput",
        "scenario": size.scenario, "seed": seed, "size": dataclasses.asdict(size.size),
        "workload": source.configuration(),
        "accounts": account_count, "accounts_seconds": accounts_seconds,
        "rows": run["rows"], "epochs": run["epochs"], "generate_seconds": run["seconds"],
        "warm_pass_seconds": warm_seconds, "heap_keeps_freed_memory": malloc_policy.kept(),
        "epoch_rows_per_s": run["epoch_rows_per_s"],
        "simpy_events": run["simpy_events"], "simpy_ticks": source.tick_count,
        "simpy_seconds_estimated": simpy_seconds,
        "rows_sha256": run["rows_sha256"],
        "goal_rows_per_s": GOAL_ROWS_PER_S, "goal_met": rows_per_s >= GOAL_ROWS_PER_S,
        "goal_met_warm": None if warm_rows_per_s is None else warm_rows_per_s >= GOAL_ROWS_PER_S,
        "metrics": [
            metric("generator_rows_per_s", rows_per_s, "THROUGHPUT", "rows/s"),
            metric("simpy_events_per_s", events_per_s, "THROUGHPUT", "events/s"),
        ] + warm,
        "ratios": {"simpy_share_of_time": simpy_seconds / run["seconds"],
                   "rows_per_simpy_event": rows_per_event,
                   "rows_per_s_over_goal": rows_per_s / GOAL_ROWS_PER_S,
                   "warm_rows_per_s_over_goal": None if warm_rows_per_s is None
                   else warm_rows_per_s / GOAL_ROWS_PER_S},
        "versions": versions(), "hardware": hardware(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny size, for the test suite")
    parser.add_argument("--scenario", default=None,
                        help=f"scenario (default {QUICK}); others run at their own size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--passes", type=int, default=3,
                        help="passes over the epochs: the first is the figure, the best of the"
                             " others the warm figure (default 3)")
    parser.add_argument("--out", default=None, help="write the JSON report here too")
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error(f"--passes(={args.passes}) must be >= 1")
    malloc_policy.keep_freed_memory()  # as xpay does (xpay/malloc_policy.py)
    size = SMOKE if args.smoke else REAL
    if args.scenario is not None:
        size = GeneratorSize(scenario=args.scenario, size=Resize())
    report = run_benchmark(size, args.seed, args.passes)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
