"""Predictions, validation against measured runs, and the smallest cluster for a load.

    predict   one workload on one cluster: rows/s, payment latency, utilisations
    validate  predictions for measured run folders the calibration never saw, side by side
    plan      the smallest (shards, nodes) that carries a peak with a p99 target and fits memory
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.errors import XpayError
from xpay.plan.calibration import Calibration, CalibrationError, read_run, run_folders, shape_of_epochs
from xpay.plan.model import Cluster, Prediction, simulate
from xpay.plan.shape import Shape, shape_of, uniform_shape

DEFAULT_CALIBRATION = Path(__file__).with_name("calibration-2core.json")
# Shard memory, measured by the engine (summary.json bytes_per_account) and by the shard's
# tables (sim.shard_state): 25.5 bytes an account (26 here), 30 bytes a transfer id in the window
# (summary.json engine_bytes_per_windowed_id; the ids' fields wait on disk, 48 bytes each).
BYTES_PER_ACCOUNT = 26
BYTES_PER_WINDOWED_ID = 30
HEADROOM = 0.7  # plan for this fraction of predicted capacity (30% headroom)


def load_calibration(path: Path | None) -> Calibration:
    return Calibration.load(path or DEFAULT_CALIBRATION)


def predict(calibration: Calibration, shape: Shape, cluster: Cluster, rate: float | None = None,
            seed: int = 0) -> Prediction:
    return simulate(calibration, shape, cluster, rate=rate, rng=np.random.default_rng(seed))


def workload_shape(workload: str, shards: int, seed: int = 1, resize=None) -> tuple[Shape, int]:
    """(shape, accounts) of a workload file (workload.parquet, validated as xpay replay does;
    its accounts.parquet beside it is counted) or of a scenario (name or TOML, resized)."""
    path = Path(workload)
    if path.suffix == ".parquet" or path.is_file():
        from sim import files

        accounts_path = path.with_name("accounts.parquet")
        accounts = files.read_accounts(accounts_path).id.size if accounts_path.is_file() else 0
        return shape_of(files.read_workload(path), shards), int(accounts)
    from workloads.base import materialize
    from workloads.registry import build_workload

    accounts, transfers = materialize(build_workload(workload, seed, resize))
    return shape_of(transfers, shards), len(accounts)


# --- validation --------------------------------------------------------------------------------
def validate(calibration: Calibration, folders: list[Path]) -> pd.DataFrame:
    """One row per measured run: its configuration, the rows/s it reported (summary.json) and
    the model's for the same epochs on the same cluster (offered at its rate, for open-loop
    runs), and payment latency p99 measured and predicted (open-loop runs)."""
    calibrated = {str(Path(r).resolve()) for r in calibration.runs}
    rows = []
    for folder in run_folders(folders):
        run = read_run(folder)
        shape = shape_of_epochs(run.all_epochs, run.shards)  # open-loop latency counts every payment
        rate = run.summary.get("offered_rows_per_s")
        prediction = predict(calibration, shape, Cluster(run.shards), rate=float(rate) if rate else None)
        measured = float(run.summary["rows_per_s"])
        row = {"run": f"{Path(folder).parent.parent.name}/{Path(folder).name}"
               if Path(folder).parent.name == "runs" else Path(folder).name,
               "shards": run.shards, "epochs": len(shape.rows),
               "rows_per_epoch": float(shape.rows.mean()),
               "two_phase_share": float(shape.two_phase.sum() / max(shape.rows.sum(), 1)),
               "rate": float(rate) if rate else None,
               "in_calibration": str(Path(folder).resolve()) in calibrated,
               "measured_rows_per_s": measured, "predicted_rows_per_s": prediction.rows_per_s,
               "throughput_error": prediction.rows_per_s / measured - 1.0}
        payment = ((run.summary.get("payment_latency_ms") or {}).get("all") or {})
        if rate and payment.get("p99") is not None:
            row.update(measured_p99_ms=float(payment["p99"]), predicted_p99_ms=prediction.latency_ms_p99,
                       p99_error=prediction.latency_ms_p99 / float(payment["p99"]) - 1.0)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_validation(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for seen, marker in ((False, "o"), (True, "x")):
        part = table[table["in_calibration"] == seen]
        axes[0].scatter(part["measured_rows_per_s"], part["predicted_rows_per_s"], marker=marker,
                        label="in calibration" if seen else "not in calibration")
    top = float(np.nanmax(table[["measured_rows_per_s", "predicted_rows_per_s"]].to_numpy())) * 1.1
    axes[0].plot([0, top], [0, top], color="gray", lw=0.8)
    axes[0].fill_between([0, top], [0, top * 0.9], [0, top * 1.1], color="gray", alpha=0.15, label="±10%")
    axes[0].set_xlabel("measured rows/s")
    axes[0].set_ylabel("predicted rows/s")
    axes[0].legend(fontsize=8)
    axes[0].set_title("throughput")
    lat = table.dropna(subset=["measured_p99_ms"]) if "measured_p99_ms" in table else table.iloc[0:0]
    if len(lat):
        axes[1].scatter(lat["measured_p99_ms"], lat["predicted_p99_ms"])
        top = float(np.nanmax(lat[["measured_p99_ms", "predicted_p99_ms"]].to_numpy())) * 1.1
        axes[1].plot([0, top], [0, top], color="gray", lw=0.8)
        axes[1].fill_between([0, top], [0, top * 0.8], [0, top * 1.2], color="gray", alpha=0.15, label="±20%")
        axes[1].legend(fontsize=8)
    axes[1].set_xlabel("measured payment p99, ms")
    axes[1].set_ylabel("predicted payment p99, ms")
    axes[1].set_title("open-loop latency")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- plans ---------------------------------------------------------------------------------------
@dataclass
class PlanAsk:
    accounts: int
    peak_rows_per_s: float
    p99_ms: float
    rows_per_epoch: int
    window_epochs: int
    imbalance: float = 1.0  # busiest shard over the mean (from the workload's keys)
    two_phase_share: float = 0.0  # rows that are pending, post or void
    node_cores: int = 16
    node_memory_gb: float = 64.0
    max_shards: int = 1024


def plan(calibration: Calibration, ask: PlanAsk, seed: int = 0) -> dict:
    """The smallest cluster (fewest nodes, then shards) whose predicted capacity times HEADROOM
    carries the peak with the p99 target met at the peak, and whose shards fit in memory."""
    memory_per_node = ask.node_memory_gb * 1e9 * 0.8  # the rest: OS, Ray, object store
    ids_in_window = ask.rows_per_epoch * ask.window_epochs
    state_bytes = ask.accounts * BYTES_PER_ACCOUNT + ids_in_window * BYTES_PER_WINDOWED_ID
    tried = []
    shards, best, falling = 1, None, 0
    while shards <= ask.max_shards and falling < 3:
        nodes = max(math.ceil(shards / max(ask.node_cores - 1, 1)), math.ceil(state_bytes / memory_per_node))
        cluster = Cluster(shards, nodes=nodes, node_cores=ask.node_cores)
        shape = uniform_shape(ask.rows_per_epoch, 40, shards, ask.imbalance, two_phase_share=ask.two_phase_share)
        closed = predict(calibration, shape, cluster, seed=seed)
        capacity = closed.rows_per_s
        row = {"shards": shards, "nodes": nodes, "capacity_rows_per_s": capacity,
               "memory_gb_per_node": state_bytes / nodes / 1e9,
               "driver_utilisation": closed.driver_utilisation}
        if best is None or capacity > best["capacity_rows_per_s"]:
            best, falling = row, 0
        elif capacity < 0.8 * best["capacity_rows_per_s"]:
            falling += 1  # past the peak of capacity against shards: more will not help
        if capacity * HEADROOM >= ask.peak_rows_per_s:
            open_loop = predict(calibration, uniform_shape(ask.rows_per_epoch, 200, shards, ask.imbalance,
                                                           two_phase_share=ask.two_phase_share),
                                cluster, rate=ask.peak_rows_per_s, seed=seed)
            row.update(p99_ms=open_loop.latency_ms_p99, driver_utilisation=open_loop.driver_utilisation,
                       shard_utilisation_max=max(open_loop.shard_utilisation))
            tried.append(row)
            if open_loop.latency_ms_p99 <= ask.p99_ms:
                return {"answer": row, "tried": tried, "state_bytes": state_bytes,
                        "bottleneck": _bottleneck(open_loop), "envelope": envelope(calibration, ask)}
        else:
            tried.append(row)
        shards = shards * 2 if capacity * HEADROOM < ask.peak_rows_per_s / 4 else shards + max(1, shards // 4)
    return {"answer": None, "tried": tried, "state_bytes": state_bytes, "envelope": envelope(calibration, ask),
            "why": f"no cluster meets {ask.peak_rows_per_s:,.0f} rows/s with p99 <= {ask.p99_ms:g} ms and"
                   f" {1 - HEADROOM:.0%} headroom: predicted capacity peaks at"
                   f" {best['capacity_rows_per_s']:,.0f} rows/s with {best['shards']} shard(s) (driver busy"
                   f" {best['driver_utilisation']:.0%} there) and falls with more, since every shard adds"
                   " fixed driver work and a round trip to each epoch; one driver plans every epoch"}


def hot_accounts(transfers, top: int = 5) -> list[dict]:
    """The accounts on the most rows (either side), with their share of all account sides."""
    sides = np.concatenate([transfers.debit_account, transfers.credit_account])
    keys, counts = np.unique(sides, return_counts=True)
    order = np.argsort(counts)[::-1][:top]
    return [{"account": int(keys[i]), "rows": int(counts[i]), "share_of_sides": float(counts[i] / len(sides))}
            for i in order]


def _bottleneck(prediction: Prediction) -> str:
    """Which server saturates first as the load grows: the busiest of driver and shards."""
    hottest = int(np.argmax(prediction.shard_utilisation))
    shard = prediction.shard_utilisation[hottest]
    if prediction.driver_utilisation >= shard:
        return (f"the driver (busy {prediction.driver_utilisation:.0%} of the time at the peak, busiest"
                f" shard {shard:.0%}): it plans, routes and resolves every row, so shards added past it"
                " do not help")
    return (f"shard {hottest} (busy {shard:.0%} of the time at the peak, driver"
            f" {prediction.driver_utilisation:.0%}): the shard holding the hottest accounts")


def envelope(calibration: Calibration, ask: PlanAsk, shards_list=(1, 2, 4, 8, 16, 32)) -> list[dict]:
    """Predicted capacity per shard count for the ask's epochs, in the style of Ray's
    scalability envelope (dimension, quantity, hardware), with and without the hot shard."""
    out = []
    for shards in shards_list:
        nodes = math.ceil(shards / max(ask.node_cores - 1, 1))
        cluster = Cluster(shards, nodes=nodes, node_cores=ask.node_cores)
        skewed = predict(calibration, uniform_shape(ask.rows_per_epoch, 40, shards, ask.imbalance,
                                                    two_phase_share=ask.two_phase_share), cluster)
        even = predict(calibration, uniform_shape(ask.rows_per_epoch, 40, shards, 1.0,
                                                  two_phase_share=ask.two_phase_share), cluster)
        out.append({"dimension": "shards", "quantity": shards,
                    "hardware": f"{nodes} node(s) x {ask.node_cores} cores",
                    "rows_per_s": skewed.rows_per_s, "rows_per_s_hot_account_split": even.rows_per_s,
                    "driver_utilisation": skewed.driver_utilisation,
                    "busiest_shard_utilisation": max(skewed.shard_utilisation)})
    return out


def check_in_range(calibration: Calibration, accounts: int | None) -> list[str]:
    """Warnings where a prediction leaves what the calibration measured."""
    warnings = []
    if accounts and calibration.accounts:
        low, high = min(calibration.accounts), max(calibration.accounts)
        if not (low / 4 <= accounts <= high * 4):
            warnings.append(f"{accounts:,} accounts is outside the calibrated {low:,}-{high:,}: the"
                            " per-row costs there (cache misses grow with the tables) are extrapolated")
    return warnings


class PlanRefused(XpayError):
    """A plan's request cannot be read (exit 2)."""

    exit_status = 2


def peak_rate(text: str, mean_rate: float) -> float:
    """"15x" (a multiple of the mean rate) or rows a second."""
    try:
        return float(text[:-1]) * mean_rate if str(text).endswith("x") else float(text)
    except ValueError:
        raise PlanRefused(f"--peak {text!r}: give a multiple of the mean rate (15x) or rows a second") from None


def plan_scenario(calibration: Calibration, scenario: str, peak: str = "15x", p99_ms: float = 100.0,
                  epoch_ms: float = 20.0, window_epochs: int = 100, node_cores: int = 16,
                  node_memory_gb: float = 64.0, imbalance: float | None = None,
                  slice_users: int = 100_000) -> dict:
    """The smallest cluster for a scenario's peak: its accounts and mean rate from the scenario
    (traffic rows over its days, funding left out), the key distribution (hot shard, hot
    accounts, two-phase share) from a one-day slice of slice_users users."""
    from workloads.base import materialize
    from workloads.registry import build_workload
    from workloads.scenario import Resize

    source = build_workload(scenario, 1)
    model_seconds = source.scenario.time.days * 86400.0
    mean_rate = (source.expected_row_count() - getattr(source, "funding_row_count", 0)) / model_seconds
    peak_rows_per_s = peak_rate(peak, mean_rate)
    slice_users = min(slice_users, source.scenario.population.users)
    _, sliced = materialize(build_workload(scenario, 1, Resize(users=slice_users, days=1)))
    shape = shape_of(sliced, 16)
    imbalance = imbalance if imbalance is not None else shape.imbalance()
    two_phase_share = float(shape.two_phase.sum() / max(shape.rows.sum(), 1))
    rows_per_epoch = max(int(peak_rows_per_s * epoch_ms / 1000.0), 1)
    ask = PlanAsk(accounts=int(source.account_count), peak_rows_per_s=peak_rows_per_s, p99_ms=p99_ms,
                  rows_per_epoch=rows_per_epoch, window_epochs=window_epochs, imbalance=imbalance,
                  two_phase_share=two_phase_share, node_cores=node_cores, node_memory_gb=node_memory_gb)
    answer = plan(calibration, ask)
    return {"scenario": scenario, "accounts": ask.accounts, "mean_rows_per_s": mean_rate,
            "peak_rows_per_s": peak_rows_per_s, "p99_ms_target": p99_ms, "rows_per_epoch": rows_per_epoch,
            "shard_imbalance": imbalance, "two_phase_share": two_phase_share, "slice_users": slice_users,
            "hot_accounts_in_a_slice": hot_accounts(sliced), "node_cores": node_cores,
            "node_memory_gb": node_memory_gb, **answer,
            "warnings": check_in_range(calibration, ask.accounts),
            "assumptions": [
                f"the calibration of a {calibration.hardware.get('cores', '?')}-core machine"
                f" ({len(calibration.runs)} runs); per-row costs as measured there",
                f"headroom: plan for {HEADROOM:.0%} of predicted capacity",
                f"shard memory {BYTES_PER_ACCOUNT} B an account and {BYTES_PER_WINDOWED_ID} B a"
                " windowed id (measured); 80% of a node's memory for shards",
                "network between nodes assumed: 100 us round trip, 10 Gbit/s (not measured here)",
                f"hot shard: the busiest of 16 shards gets {imbalance:.2f}x the mean rows"]}


__all__ = ["PlanRefused", "peak_rate", "plan_scenario", "CalibrationError", "PlanAsk", "DEFAULT_CALIBRATION", "load_calibration", "predict",
           "validate", "plan", "envelope", "workload_shape", "plot_validation", "check_in_range"]
