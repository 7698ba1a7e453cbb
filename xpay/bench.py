"""``xpay bench``: the engine against its peers on the same rows, and where an epoch's time goes.

One workload (funded Zipf P2P, `workloads.plain`) is generated once and every variant runs on
exactly its rows, side by side in one process and one Ray session:

- ``engine_ray``: the product, K shards on Ray actors; ``engine_in_process``: the same kernels,
  one shard, no Ray (one core); ``serial_numba``: the fused single-process ledger (epoch mode);
- the peers of `xpay.peers` (the bare kernel, a Python dict, SQLite, DuckDB, PostgreSQL);
- ``ray_call_per_transfer``: one Ray actor call per transfer, on a slice (the anti-pattern).

Every engine variant's statuses and balances are checked equal to the in-process engine's; each
peer is checked against the serial ledger of its own semantics (`xpay.peers`). Written to the
output folder:

- ``bench.parquet``: one row per variant (rows, seconds, rows_per_s, semantics, equal, note);
- ``bench.json``: typed metrics (name, value, THROUGHPUT/LATENCY, unit), the configuration, the
  hash of the final balances, versions and hardware;
- ``breakdown.parquet``: the Ray engine's epochs with the driver's phases and each shard's
  (`sim.timeline.DRIVER_PHASES`), and ``plots/peers.png``, ``plots/breakdown.png``;
- with ``--curves``: ``curves.parquet`` and ``plots/curve_*.png``: throughput against shard
  count, epoch size, skew and account count, and payment latency against offered load.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from sim.engine import Engine, local_hosts, split_epochs, table_hint
from sim.timeline import DRIVER_PHASES, SHARD_PHASES, Pacer
from workloads.plain import plain_transfer_workload
from xpay.report import hardware, result_digest, versions
from xpay.runner import json_default


@dataclass(frozen=True)
class BenchSize:
    accounts: int
    transfers: int
    rows_per_epoch: int
    naive_slice: int  # rows of the one-call-per-transfer variant
    peer_slice: int  # rows of the slow peers (Python, SQL per transaction)


REAL = BenchSize(accounts=4_000_000, transfers=16_000_000, rows_per_epoch=200_000,
                 naive_slice=20_000, peer_slice=400_000)
SMOKE = BenchSize(accounts=20_000, transfers=80_000, rows_per_epoch=10_000, naive_slice=500,
                  peer_slice=20_000)
SIZES = {"real": REAL, "smoke": SMOKE}
ZIPF_EXPONENT = 1.2
WINDOW_EPOCHS = 100

# --curves: each axis is a list of values; the others stay at the size's own.
CURVES_REAL = {"shards": [1, 2, 4, 8], "rows_per_epoch": [10_000, 50_000, 200_000, 1_000_000],
               "zipf_exponent": [0.0, 0.8, 1.1, 1.2], "accounts": [1_000_000, 4_000_000, 16_000_000],
               "load": [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5]}
CURVES_SMOKE = {"shards": [1, 2], "rows_per_epoch": [2_000, 10_000], "zipf_exponent": [0.0, 1.2],
                "accounts": [10_000, 20_000], "load": [0.5, 1.5]}
CURVE_TRANSFERS_REAL = 4_000_000  # rows of each curve point at real size (the axis runs are many)


def metric(name: str, value: float, kind: str, unit: str) -> dict:
    """A typed metric (Ray release perf_metrics style)."""
    return {"perf_metric_name": name, "perf_metric_value": value, "perf_metric_type": kind, "unit": unit}


@dataclass
class Variant:
    name: str
    rows: int
    seconds: float
    semantics: str
    equal: bool | None
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def run_in_process(accounts, transfers, shards: int = 1, window: int = WINDOW_EPOCHS):
    hosts = local_hosts(accounts, shards, window, table_hint(transfers, window, shards))
    return Engine(accounts, hosts, window).run(split_epochs(transfers))


def run_ray(accounts, transfers, shards: int, window: int = WINDOW_EPOCHS, pacer: Pacer | None = None):
    """(result, start-up seconds, transport): K Ray actors, closed loop unless a pacer."""
    from actors.ray_hosts import RayHosts

    started = time.perf_counter()
    hosts = RayHosts(accounts, shards, window, table_hint(transfers, window, shards))
    startup = time.perf_counter() - started
    try:
        result = Engine(accounts, hosts, window).run(split_epochs(transfers), pacer=pacer)
        return result, startup, hosts.transport
    finally:
        hosts.close()


def run_serial_numba(accounts, transfers):
    from sim.serial import run_serial

    started = time.perf_counter()
    result = run_serial(accounts, transfers, strict_serial=False, window_epochs=WINDOW_EPOCHS)
    return result, time.perf_counter() - started


def run_ray_call_per_transfer(accounts, transfers, slice_rows: int) -> float:
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


def breakdown_table(timeline_table: dict) -> pd.DataFrame:
    """The per-epoch breakdown of a run: driver phases and each shard's, in seconds."""
    frame = pd.DataFrame(timeline_table)
    keep = ["epoch", "rows", "release_s", "start_s", "final_s"]
    keep += [c for c in frame.columns if c.startswith(("driver_", "shard_"))]
    return frame[[c for c in keep if c in frame.columns]]


def breakdown_summary(breakdown: pd.DataFrame) -> dict:
    """Mean milliseconds per epoch of each phase (steady state: the first quarter of epochs
    is left out), the epoch's wall time, and each shard phase's mean and slowest shard."""
    steady = breakdown.iloc[len(breakdown) // 4:] if len(breakdown) >= 4 else breakdown
    out = {"epochs": int(len(steady)), "rows_per_epoch": float(steady["rows"].mean())}
    wall = steady["final_s"].diff().dropna()
    out["epoch_wall_ms"] = float(wall.mean() * 1000) if len(wall) else float("nan")
    for name in DRIVER_PHASES:
        column = f"driver_{name}_s"
        if column in steady:
            out[f"driver_{name}_ms"] = float(steady[column].mean() * 1000)
    for name in SHARD_PHASES:
        columns = [c for c in steady.columns if c.startswith(f"shard_{name}_s_")]
        if columns:
            out[f"shard_{name}_ms_mean"] = float(steady[columns].mean(axis=1).mean() * 1000)
            out[f"shard_{name}_ms_max"] = float(steady[columns].max(axis=1).mean() * 1000)
    return out


def run_bench(size: BenchSize, shards: int, seed: int, out_dir: Path | None = None,
              peers: list[str] | None = None, curves: bool = False, smoke: bool = False) -> dict:
    """Every variant on the same rows; returns the report (also written under out_dir)."""
    from actors.ray_hosts import start_ray
    from sim.warmup import warm_up

    say(f"generating {size.accounts:,} accounts, {size.transfers:,} transfers")
    accounts, transfers = plain_transfer_workload(
        size.accounts, size.transfers, size.rows_per_epoch, ZIPF_EXPONENT, np.random.default_rng(seed))
    rows = len(transfers)
    warm_up()
    say("engine in process (one shard, one core)")
    local = run_in_process(accounts, transfers, 1)
    say("fused numba serial ledger (epoch mode)")
    serial, serial_seconds = run_serial_numba(accounts, transfers)
    start_ray()
    say(f"engine on Ray ({shards} shards)")
    distributed, startup, transport = run_ray(accounts, transfers, shards)
    say(f"one Ray call per transfer, {size.naive_slice:,} rows")
    naive_rows_per_s = run_ray_call_per_transfer(accounts, transfers, size.naive_slice)
    same = lambda r: bool(np.array_equal(r.status, local.status) and r.balances.equals(local.balances))  # noqa: E731
    variants = [
        Variant(f"engine_ray_{shards}_shards", rows, distributed.metrics.engine_seconds, "epoch", same(distributed)),
        Variant("engine_in_process", rows, local.metrics.engine_seconds, "epoch", True,
                "the reference the other engine variants are compared with"),
        Variant("serial_numba", rows, serial_seconds, "epoch", same(serial)),
        Variant("ray_call_per_transfer", size.naive_slice, size.naive_slice / naive_rows_per_s,
                "strict_serial", None, f"a slice of {size.naive_slice:,} rows; results not compared"),
    ]
    variants += _peer_variants(accounts, transfers, size, peers)
    breakdown = breakdown_table(distributed.metrics.timeline.table())
    report = {
        "benchmark": "xpay bench", "size": asdict(size), "shards": shards, "seed": seed,
        "zipf_exponent": ZIPF_EXPONENT, "window_epochs": WINDOW_EPOCHS, "rows": rows,
        "transport": transport, "ray_startup_seconds": startup,
        "equal_results": all(v.equal is not False for v in variants),
        "result_sha256": result_digest(local.status, local.balances),
        "committed": int(local.metrics.committed),
        "variants": [dict(asdict(v), rows_per_s=v.rows_per_s) for v in variants],
        "metrics": [metric(f"{v.name}_rows_per_s", v.rows_per_s, "THROUGHPUT", "rows/s")
                    for v in variants if v.seconds > 0]
        + [metric("engine_ray_epoch_latency_p50_ms",
                  float(np.percentile(distributed.metrics.epoch_latency_ms, 50)), "LATENCY", "ms"),
           metric("engine_ray_epoch_latency_p99_ms",
                  float(np.percentile(distributed.metrics.epoch_latency_ms, 99)), "LATENCY", "ms")],
        "ratios": _ratios(variants, shards),
        "breakdown_ms": breakdown_summary(breakdown),
        "engine_bytes_per_account": distributed.metrics.bytes_per_account,
        "engine_bytes_per_windowed_id": distributed.metrics.bytes_per_windowed_id,
        "versions": versions(), "hardware": hardware(),
    }
    if curves:
        report["curves"] = run_curves(size, shards, seed, smoke, out_dir)
    if out_dir is not None:
        write_outputs(out_dir, report, variants, breakdown)
    return report


def _peer_variants(accounts, transfers, size: BenchSize, names: list[str] | None) -> list[Variant]:
    if names == []:
        return []
    from xpay import peers

    chosen = list(peers.PEERS) if names is None else names
    say(f"peers: {', '.join(chosen)}")
    out = []
    funding = size.accounts  # the workload's first rows fund each user once (workloads.plain)
    for result in peers.run_peers(accounts, transfers, chosen, setup_rows=funding,
                                  slice_rows=size.peer_slice, progress=say):
        out.append(Variant(result.name, result.rows, result.seconds or 0.0, result.semantics,
                           result.equal, result.note))
    return out


def _ratios(variants: list[Variant], shards: int) -> dict:
    rates = {v.name: v.rows_per_s for v in variants if v.seconds > 0}
    engine = rates[f"engine_ray_{shards}_shards"]
    return {f"engine_over_{name}": engine / rate for name, rate in rates.items()
            if not name.startswith("engine_ray") and rate > 0}


def write_workload(size: BenchSize, seed: int, folder: Path) -> None:
    """The benchmark's accounts and rows as files, for `xpay replay`."""
    from sim import files

    accounts, transfers = plain_transfer_workload(
        size.accounts, size.transfers, size.rows_per_epoch, ZIPF_EXPONENT, np.random.default_rng(seed))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files.write_accounts(folder / "accounts.parquet", accounts)
    files.write_workload(folder / "workload.parquet", transfers)
    say(f"wrote {len(accounts):,} accounts and {len(transfers):,} rows to {folder}")


# --- curves ---------------------------------------------------------------------------------

def run_curves(size: BenchSize, shards: int, seed: int, smoke: bool, out_dir: Path | None) -> list[dict]:
    """Throughput of the Ray engine along each axis (the others at the size's values), and
    payment latency against offered load as fractions of the measured capacity."""
    axes = CURVES_SMOKE if smoke else CURVES_REAL
    base = size if smoke else replace(size, transfers=CURVE_TRANSFERS_REAL)
    points = []

    def point(axis: str, value, accounts_n: int, rows_per_epoch: int, zipf: float, k: int) -> dict:
        accounts, transfers = plain_transfer_workload(accounts_n, base.transfers, rows_per_epoch, zipf,
                                                      np.random.default_rng(seed))
        result, _, _ = run_ray(accounts, transfers, k)
        row = {"axis": axis, "value": float(value), "shards": k, "accounts": accounts_n,
               "rows_per_epoch": rows_per_epoch, "zipf_exponent": zipf, "rows": len(transfers),
               "rows_per_s": len(transfers) / result.metrics.engine_seconds,
               "offered_rows_per_s": float("nan"), "payment_latency_ms_p50": float("nan"),
               "payment_latency_ms_p99": float("nan")}
        say(f"curve {axis}={value}: {row['rows_per_s']:,.0f} rows/s")
        return row

    for k in axes["shards"]:
        points.append(point("shards", k, base.accounts, base.rows_per_epoch, ZIPF_EXPONENT, k))
    for m in axes["rows_per_epoch"]:
        points.append(point("rows_per_epoch", m, base.accounts, m, ZIPF_EXPONENT, shards))
    for z in axes["zipf_exponent"]:
        points.append(point("zipf_exponent", z, base.accounts, base.rows_per_epoch, z, shards))
    for a in axes["accounts"]:
        points.append(point("accounts", a, a, base.rows_per_epoch, ZIPF_EXPONENT, shards))
    points += latency_curve(base, shards, seed, axes["load"])
    return points


def latency_curve(size: BenchSize, shards: int, seed: int, loads: list[float]) -> list[dict]:
    """Open-loop payment latency at fractions of the closed-loop capacity (sim.timeline.Pacer):
    the P2P rows only (funding epochs are set-up), offered at load x capacity."""
    accounts, transfers = plain_transfer_workload(size.accounts, size.transfers, size.rows_per_epoch,
                                                  ZIPF_EXPONENT, np.random.default_rng(seed))
    closed, _, _ = run_ray(accounts, transfers, shards)
    capacity = len(transfers) / closed.metrics.engine_seconds
    out = []
    for load in loads:
        rate = load * capacity
        pacer = Pacer.for_rate(rate, len(transfers), int(transfers.sim_time_us[0]),
                               int(transfers.sim_time_us[-1]))
        result, _, _ = run_ray(accounts, transfers, shards, pacer=pacer)
        latency = result.metrics.timeline.latency.overall.summary_ms()
        out.append({"axis": "load", "value": float(load), "shards": shards, "accounts": size.accounts,
                    "rows_per_epoch": size.rows_per_epoch, "zipf_exponent": ZIPF_EXPONENT,
                    "rows": len(transfers), "rows_per_s": len(transfers) / result.metrics.engine_seconds,
                    "offered_rows_per_s": rate, "payment_latency_ms_p50": latency["p50"],
                    "payment_latency_ms_p99": latency["p99"]})
        say(f"curve load={load:.2f} ({rate:,.0f} rows/s offered): p99 {latency['p99']} ms")
    return out


# --- outputs --------------------------------------------------------------------------------

def write_outputs(out_dir: Path, report: dict, variants: list[Variant], breakdown: pd.DataFrame) -> None:
    from xpay import bench_plots

    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([dict(asdict(v), rows_per_s=v.rows_per_s) for v in variants])
    table.to_parquet(out_dir / "bench.parquet", index=False)
    breakdown.to_parquet(out_dir / "breakdown.parquet", index=False)
    if report.get("curves"):
        pd.DataFrame(report["curves"]).to_parquet(out_dir / "curves.parquet", index=False)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2, default=json_default) + "\n")
    bench_plots.peers(table, out_dir / "plots" / "peers.png")
    bench_plots.breakdown(report["breakdown_ms"], out_dir / "plots" / "breakdown.png")
    if report.get("curves"):
        bench_plots.curves(pd.DataFrame(report["curves"]), out_dir / "plots")


def format_table(report: dict) -> str:
    """The variants as a ratio table: rows/s and the engine's multiple of each."""
    shards = report["shards"]
    engine = next(v for v in report["variants"] if v["name"] == f"engine_ray_{shards}_shards")
    lines = [f"{'variant':<28} {'rows/s':>14} {'engine x':>9}  equal  note"]
    for v in sorted(report["variants"], key=lambda v: -(v["rows_per_s"] or 0)):
        rate = v["rows_per_s"]
        ratio = engine["rows_per_s"] / rate if rate and rate == rate else float("nan")
        equal = {True: "yes", False: "NO", None: "-"}[v["equal"]]
        lines.append(f"{v['name']:<28} {rate:>14,.0f} {ratio:>9.2f}  {equal:<5}  {v['note']}")
    b = report["breakdown_ms"]
    lines.append("")
    lines.append(f"per epoch of {b['rows_per_epoch']:,.0f} rows (steady state, ms): wall {b['epoch_wall_ms']:.2f}")
    for name in DRIVER_PHASES:
        if f"driver_{name}_ms" in b:
            lines.append(f"  driver {name:<16} {b[f'driver_{name}_ms']:8.2f}")
    for name in SHARD_PHASES:
        if f"shard_{name}_ms_mean" in b:
            lines.append(f"  shard  {name:<16} {b[f'shard_{name}_ms_mean']:8.2f} mean"
                         f" {b[f'shard_{name}_ms_max']:8.2f} slowest")
    return "\n".join(lines)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
