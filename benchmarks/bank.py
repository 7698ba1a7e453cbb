"""The bank test: seeds x shard counts with shard actors killed at random points.

Jepsen's bank test checks that money is conserved while nodes die; TigerBeetle's VOPR replays
seeded crashes against an auditor. Here, for every (seed, shard count):

1. the workload is the product's scenario model: ``quick`` resized small (``users`` users, one
   day in ``epochs`` traffic epochs; its full mix: funding, Zipf P2P, tips, card holds that are
   captured or voided, refunds, fees, payouts, cash, crypto trades and settlements, bad rows
   and retries), from ``seed``;
2. the fault-free result comes from the engine with every shard in this process;
3. the same rows run on K durable Ray shard actors (write-ahead log + snapshots in a fresh data
   dir) under a seeded fault plan: ``--kills`` kills at random (shard, call, point), plus
   delayed, duplicated and stale batches. Every invariant is checked at every epoch boundary
   (a violation stops the run);
4. the statuses and balances are compared with the fault-free run.

It reports, per run: kills injected, recoveries, rows lost or changed (must be 0), accounts
whose balances differ (must be 0), duplicate and stale batches applied (must be 0), recovery
time p50/p99, as a table on stdout and as Parquet (``bank.parquet``, one row per run) plus
``bank.json`` beside it.

    python -m benchmarks.bank                          # 5 seeds x K in {2,3,4}, 8 kills each
    python -m benchmarks.bank --seeds 2 --shards 3 --kills 4 --out runs/bank-small
    python -m benchmarks.bank --smoke                  # seconds; runs in the test suite
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.engine import Engine, local_hosts, split_epochs, table_hint
from xpay.report import hardware, versions

WINDOW_EPOCHS = 16


@dataclass(frozen=True)
class BankSize:
    seeds: tuple
    shard_counts: tuple
    kills: int
    delays: int
    duplicates: int
    stale: int
    users: int
    epochs: int
    snapshot_every_epochs: int


FULL = BankSize(seeds=(1, 2, 3, 4, 5), shard_counts=(2, 3, 4), kills=8, delays=2, duplicates=2, stale=2,
                users=20_000, epochs=40, snapshot_every_epochs=4)
SMOKE = BankSize(seeds=(1,), shard_counts=(2,), kills=3, delays=1, duplicates=1, stale=1,
                 users=500, epochs=8, snapshot_every_epochs=2)


def workload(seed: int, size: BankSize):
    from workloads.base import materialize
    from workloads.registry import build_workload

    from workloads.scenario import Resize

    source = build_workload("quick", seed, Resize(users=size.users, epochs=size.epochs))
    return materialize(source)


def fault_free(accounts, transfers, shards: int):
    hosts = local_hosts(accounts, shards, WINDOW_EPOCHS, table_hint(transfers, WINDOW_EPOCHS, shards))
    return Engine(accounts, hosts, WINDOW_EPOCHS, stop_on_violation=True).run(split_epochs(transfers))


def faulty(accounts, transfers, shards: int, seed: int, size: BankSize, data_dir: Path):
    from actors.faults import FaultPlan
    from actors.ray_hosts import RayHosts
    from sim.durability import Durability

    calls = 2 * len(transfers.epoch_bounds()) + 1
    plan = FaultPlan.draw(seed * 1000 + shards, shards, calls, size.kills, size.delays, size.duplicates,
                          size.stale)
    durability = Durability(str(data_dir), "off", 2 * size.snapshot_every_epochs)
    hosts = RayHosts(accounts, shards, WINDOW_EPOCHS, table_hint(transfers, WINDOW_EPOCHS, shards),
                     durability=durability, faults=plan)
    try:
        started = time.perf_counter()
        result = Engine(accounts, hosts, WINDOW_EPOCHS, stop_on_violation=True).run(split_epochs(transfers))
        seconds = time.perf_counter() - started
        hosts.count_faults()
        return result, hosts.report, plan, seconds
    finally:
        hosts.close()


def bank_run(seed: int, shards: int, size: BankSize, accounts, transfers, expected, data_root: Path) -> dict:
    data_dir = data_root / f"seed{seed}-k{shards}"
    result, report, plan, seconds = faulty(accounts, transfers, shards, seed, size, data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    differ = result.status != expected.status
    accounts_differing = _accounts_differing(result.balances, expected.balances)
    summary = report.summary()
    return {
        "seed": seed, "shards": shards, "rows": len(transfers), "epochs": result.metrics.epochs,
        "kills_planned": summary["kills_planned"], "kills": summary["kills"], "kill_points": json.dumps(plan.describe()["kill_points"], sort_keys=True),
        "recoveries": summary["recoveries"],
        "rows_lost_or_changed": int(np.count_nonzero(differ)),
        "accounts_differing": accounts_differing,
        "duplicates_offered": summary["duplicates_offered"], "duplicates_applied": summary["duplicates_applied"],
        "stale_offered": summary["stale_offered"], "stale_applied": summary["stale_applied"],
        "delays": summary["delays"],
        "boundaries_checked": result.metrics.boundaries_checked,
        "invariant_violations": len(result.metrics.invariant_violations),
        "recovery_p50_s": summary["recovery_seconds_p50"], "recovery_p99_s": summary["recovery_seconds_p99"],
        "recovery_max_s": summary["recovery_seconds_max"],
        "recovery_seconds": [r["seconds"] for r in report.recoveries],
        "run_seconds": seconds,
    }


def _accounts_differing(a, b) -> int:
    names = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    differ = np.zeros(len(a.id), bool)
    differ |= a.id != b.id
    for name in names:
        differ |= getattr(a, name) != getattr(b, name)
    return int(np.count_nonzero(differ))


def run_bank(size: BankSize, out: Path | None, progress=print) -> dict:
    from actors.ray_hosts import start_ray

    start_ray()
    rows = []
    data_root = Path(tempfile.mkdtemp(prefix="xpay-bank-"))
    try:
        for seed in size.seeds:
            accounts, transfers = workload(seed, size)
            for shards in size.shard_counts:
                expected = fault_free(accounts, transfers, shards)
                row = bank_run(seed, shards, size, accounts, transfers, expected, data_root)
                rows.append(row)
                progress(_line(row))
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
    all_seconds = sorted(s for row in rows for s in row["recovery_seconds"] if s is not None)
    totals = {
        "runs": len(rows), "kills_planned": sum(r["kills_planned"] for r in rows),
        "kills": sum(r["kills"] for r in rows), "recoveries": sum(r["recoveries"] for r in rows),
        "rows_lost_or_changed": sum(r["rows_lost_or_changed"] for r in rows),
        "accounts_differing": sum(r["accounts_differing"] for r in rows),
        "duplicates_applied": sum(r["duplicates_applied"] for r in rows),
        "stale_applied": sum(r["stale_applied"] for r in rows),
        "invariant_violations": sum(r["invariant_violations"] for r in rows),
        "recovery_p50_s": float(np.percentile(all_seconds, 50)) if all_seconds else None,
        "recovery_p99_s": float(np.percentile(all_seconds, 99)) if all_seconds else None,
    }
    totals["passed"] = (totals["rows_lost_or_changed"] == 0 and totals["accounts_differing"] == 0
                        and totals["duplicates_applied"] == 0 and totals["stale_applied"] == 0
                        and totals["invariant_violations"] == 0 and totals["kills"] == totals["recoveries"])
    report = {"size": size.__dict__, "runs": rows, "totals": totals, "versions": versions(),
              "hardware": hardware(), "window_epochs": WINDOW_EPOCHS}
    if out is not None:
        _write(out, report)
    return report


def _line(row: dict) -> str:
    p50, p99 = row["recovery_p50_s"], row["recovery_p99_s"]
    times = "n/a" if p50 is None else f"{p50:.2f} / {p99:.2f} s"
    return (f"seed {row['seed']:>3}  K={row['shards']}  rows {row['rows']:>8,}  kills {row['kills']:>2}"
            f"  recovered {row['recoveries']:>2}  lost {row['rows_lost_or_changed']}"
            f"  balances differ {row['accounts_differing']}  dup applied {row['duplicates_applied']}"
            f"/{row['duplicates_offered']}  stale applied {row['stale_applied']}/{row['stale_offered']}"
            f"  boundaries {row['boundaries_checked']}  recovery p50/p99 {times}")


def _write(out: Path, report: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(report["runs"])
    pq.write_table(table, out / "bank.parquet")
    (out / "bank.json").write_text(json.dumps(report, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the test suite's size (seconds)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 1..N (default 5)")
    parser.add_argument("--shards", type=int, nargs="+", default=None, help="shard counts (default 2 3 4)")
    parser.add_argument("--kills", type=int, default=None, help="kills per run (default 8)")
    parser.add_argument("--out", type=Path, default=Path("runs/bank"), help="folder for bank.parquet/json")
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    changes = {}
    if args.seeds is not None:
        changes["seeds"] = tuple(range(1, args.seeds + 1))
    if args.shards is not None:
        changes["shard_counts"] = tuple(args.shards)
    if args.kills is not None:
        changes["kills"] = args.kills
    size = BankSize(**{**size.__dict__, **changes})
    print(f"bank test: seeds {list(size.seeds)} x shards {list(size.shard_counts)}, {size.kills} kills,"
          f" {size.delays} delayed, {size.duplicates} duplicated, {size.stale} stale batches per run;"
          f" {size.users:,} users, one day in {size.epochs} traffic epochs", file=sys.stderr)
    report = run_bank(size, args.out, progress=lambda line: print(line, flush=True))
    t = report["totals"]
    print(f"total: {t['runs']} runs, {t['kills']} kills, {t['recoveries']} recoveries, rows lost"
          f" {t['rows_lost_or_changed']}, balances differing {t['accounts_differing']}, duplicates applied"
          f" {t['duplicates_applied']}, stale applied {t['stale_applied']}, invariant violations"
          f" {t['invariant_violations']}, recovery p50 {t['recovery_p50_s']} s p99 {t['recovery_p99_s']} s"
          f" -> {'PASSED' if t['passed'] else 'FAILED'}; {args.out}/bank.parquet")
    return 0 if t["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
