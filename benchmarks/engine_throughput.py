"""Engine throughput benchmark: Ray shards vs one core in-process vs one actor call per transfer.

On the same rows of the plain-transfer workload (funded Zipf-skewed P2P, LEDGER_SPEC.md
epochs) it measures, side by side in one process:

- ``ray``: the sharded engine on K Ray actors (the product);
- ``in_process``: the engine's own kernels with every shard in this process, K=1 (one core);
- ``serial_numba``: the fused single-process numba ledger (sim.serial), epoch mode;
- ``naive_actor``: one Ray actor call per transfer on a slice (the anti-pattern DESIGN.md
  warns about), extrapolated to rows/s from the slice.

Every variant's statuses are checked equal to the in-process engine's (and balances too),
and the result is data: a JSON list of typed metrics, plus a hash of what was computed.

    python -m benchmarks.engine_throughput            # real size: 4M accounts, 16M transfers
    python -m benchmarks.engine_throughput --smoke    # seconds; runs in the test suite
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from sim.engine import Engine, table_hint, local_hosts, split_epochs
from xpay.report import hardware, result_digest, versions
from workloads.plain import plain_transfer_workload


@dataclass(frozen=True)
class BenchSize:
    accounts: int
    transfers: int
    rows_per_epoch: int
    naive_slice: int


REAL = BenchSize(accounts=4_000_000, transfers=16_000_000, rows_per_epoch=200_000, naive_slice=20_000)
SMOKE = BenchSize(accounts=20_000, transfers=80_000, rows_per_epoch=10_000, naive_slice=500)
ZIPF_EXPONENT = 1.2
WINDOW_EPOCHS = 100


def metric(name: str, value: float, kind: str, unit: str) -> dict:
    """A typed metric (Ray release perf_metrics style)."""
    return {"perf_metric_name": name, "perf_metric_value": value, "perf_metric_type": kind, "unit": unit}


def run_in_process(accounts, transfers, shards: int = 1):
    hosts = local_hosts(accounts, shards, WINDOW_EPOCHS, table_hint(transfers, WINDOW_EPOCHS, shards))
    return Engine(accounts, hosts, WINDOW_EPOCHS).run(split_epochs(transfers))


def run_ray(accounts, transfers, shards: int):
    from actors.ray_hosts import RayHosts

    started = time.perf_counter()
    hosts = RayHosts(accounts, shards, WINDOW_EPOCHS, table_hint(transfers, WINDOW_EPOCHS, shards))
    startup = time.perf_counter() - started
    try:
        return Engine(accounts, hosts, WINDOW_EPOCHS).run(split_epochs(transfers)), startup, hosts.transport
    finally:
        hosts.close()


def run_serial_numba(accounts, transfers):
    from sim.serial import run_serial

    started = time.perf_counter()
    result = run_serial(accounts, transfers, strict_serial=False, window_epochs=WINDOW_EPOCHS)
    return result, time.perf_counter() - started


def run_naive_actor_calls(accounts, transfers, slice_rows: int) -> float:
    """Rows/s of one Ray actor call per transfer (balance check and update in the actor)."""
    import ray

    @ray.remote(num_cpus=0.01)
    class NaiveLedger:
        def __init__(self, ids, funding):
            self.balance = dict(zip(ids.tolist(), funding.tolist()))

        def transfer(self, debit, credit, amount):
            if self.balance.get(debit, 0) < amount:
                return 21
            self.balance[debit] -= amount
            self.balance[credit] = self.balance.get(credit, 0) + amount
            return 0

    ledger = NaiveLedger.remote(accounts.id, np.full(len(accounts), 10**12, np.int64))
    rows = transfers.slice(len(transfers) - slice_rows, len(transfers))
    debit, credit, amount = rows.debit_account.tolist(), rows.credit_account.tolist(), rows.amount.tolist()
    ray.get(ledger.transfer.remote(debit[0], credit[0], 0))
    started = time.perf_counter()
    for d, c, a in zip(debit, credit, amount):
        ray.get(ledger.transfer.remote(d, c, a))
    seconds = time.perf_counter() - started
    ray.kill(ledger)
    return slice_rows / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny size, for the test suite")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the JSON report here too")
    parser.add_argument("--write-workload", default=None, metavar="DIR",
                        help="only write the workload (accounts.parquet, workload.parquet) to DIR, for xpay replay")
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else REAL
    if args.write_workload:
        write_workload(size, args.seed, args.write_workload)
        return 0
    report = run_benchmark(size, args.shards, args.seed)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0 if report["equal_results"] else 1


def write_workload(size: BenchSize, seed: int, folder: str) -> None:
    from pathlib import Path

    from sim import files

    accounts, transfers = plain_transfer_workload(
        size.accounts, size.transfers, size.rows_per_epoch, ZIPF_EXPONENT, np.random.default_rng(seed))
    Path(folder).mkdir(parents=True, exist_ok=True)
    files.write_accounts(Path(folder) / "accounts.parquet", accounts)
    files.write_workload(Path(folder) / "workload.parquet", transfers)
    _say(f"wrote {len(accounts):,} accounts and {len(transfers):,} rows to {folder}")


def run_benchmark(size: BenchSize, shards: int, seed: int) -> dict:
    from actors.ray_hosts import start_ray
    from sim.warmup import warm_up

    _say(f"generating {size.accounts:,} accounts, {size.transfers:,} transfers")
    accounts, transfers = plain_transfer_workload(
        size.accounts, size.transfers, size.rows_per_epoch, ZIPF_EXPONENT, np.random.default_rng(seed))
    warm_up()
    _say("in-process engine (K=1, one core)")
    local = run_in_process(accounts, transfers, 1)
    _say("numba serial ledger (epoch mode)")
    serial, serial_seconds = run_serial_numba(accounts, transfers)
    start_ray()
    _say(f"Ray engine (K={shards})")
    distributed, startup, transport = run_ray(accounts, transfers, shards)
    _say(f"naive: one actor call per transfer, {size.naive_slice:,} rows")
    naive_rows_per_s = run_naive_actor_calls(accounts, transfers, size.naive_slice)
    rows = len(transfers)
    rates = {
        "ray": rows / distributed.metrics.engine_seconds,
        "in_process": rows / local.metrics.engine_seconds,
        "serial_numba": rows / serial_seconds,
        "naive_actor": naive_rows_per_s,
    }
    equal = bool(np.array_equal(distributed.status, local.status) and np.array_equal(serial.status, local.status)
                 and distributed.balances.equals(local.balances) and serial.balances.equals(local.balances))
    return {
        "benchmark": "engine_throughput",
        "size": size.__dict__, "shards": shards, "seed": seed, "zipf_exponent": ZIPF_EXPONENT,
        "rows": rows, "transport": transport, "ray_startup_seconds": startup,
        "equal_results": equal, "result_sha256": result_digest(local.status, local.balances),
        "committed": int(local.metrics.committed),
        "metrics": [metric(f"{name}_rows_per_s", value, "THROUGHPUT", "rows/s") for name, value in rates.items()]
        + [metric("ray_epoch_latency_p50_ms", float(np.percentile(distributed.metrics.epoch_latency_ms, 50)),
                  "LATENCY", "ms"),
           metric("ray_epoch_latency_p99_ms", float(np.percentile(distributed.metrics.epoch_latency_ms, 99)),
                  "LATENCY", "ms")],
        "ratios": {
            "ray_over_in_process": rates["ray"] / rates["in_process"],
            "ray_over_serial_numba": rates["ray"] / rates["serial_numba"],
            "ray_over_naive_actor": rates["ray"] / rates["naive_actor"],
        },
        "engine_bytes_per_account": distributed.metrics.bytes_per_account,
        "versions": versions(), "hardware": hardware(),
    }


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
