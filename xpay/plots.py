"""The figures of a run's report, each drawn from the run folder's files alone.

Every function takes a `xpay.runs.Run` and returns a matplotlib Figure, or raises
`PlotUnavailable` naming the file or figure the run lacks (an older run folder, a closed-loop
run without payment latency, a replay without a scenario): the report then lists the plot as
missing and why, instead of drawing an empty axis. matplotlib runs on its Agg backend (no
display needed).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # noqa: E402 -- before pyplot, so no display is ever needed

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from xpay.runs import Run

FIGURE_SIZE = (8.0, 4.0)
SECONDS_PER_HOUR = 3_600.0


class PlotUnavailable(Exception):
    """This run has not got what the figure needs; the message says what is missing."""


def _figure(title: str):
    figure, axis = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    return figure, axis


def _table(run: Run, method: str) -> pd.DataFrame:
    try:
        return getattr(run, method)()
    except FileNotFoundError as error:
        raise PlotUnavailable(str(error)) from None


def throughput_over_time(run: Run):
    """Rows per second of wall time, epoch by epoch: an epoch's rows over the time from the
    previous epoch's final statuses to its own (the first epoch: from its start)."""
    epochs = _table(run, "epochs")
    figure, axis = _figure("Throughput over time")
    wall_s = epochs["final_s"].to_numpy()
    seconds = np.diff(np.concatenate([[epochs["start_s"].iloc[0]], wall_s]))
    rate = np.divide(epochs["rows"].to_numpy(), seconds, out=np.zeros(len(seconds)),
                     where=seconds > 0)
    axis.step(wall_s, rate, where="pre", label="rows/s")
    if "offered_rows_per_s" in run.summary and run.summary["offered_rows_per_s"]:
        axis.axhline(run.summary["offered_rows_per_s"], color="grey", linestyle="--",
                     label="offered")
    axis.set_xlabel("wall time since the engine started (s)")
    axis.set_ylabel("rows per second")
    axis.legend()
    return figure


def latency_cdf(run: Run):
    """Payment latency (arrival to commit) CDF, overall and per business code."""
    buckets = _table(run, "latency")
    figure, axis = _figure(f"{run.summary.get('latency_kind', 'latency').capitalize()} CDF by kind")
    axis.set_prop_cycle(color=plt.get_cmap("tab20").colors)  # 16 kinds and "all": no repeats
    for kind, group in buckets.groupby("kind", observed=True, sort=False):
        counts = group["count"].to_numpy()
        if counts.sum() == 0:
            continue
        share = np.cumsum(counts) / counts.sum()
        axis.plot(group["high_ms"].to_numpy(), share, label=f"{kind} ({int(counts.sum()):,})",
                  linewidth=2.5 if kind == "all" else 1.2)
    axis.set_xscale("log")
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("share of payments at or below")
    axis.legend(fontsize="small", ncol=2)
    return figure


def status_mix_by_kind(run: Run):
    """Rows per business code and status as a heat map with counts (rare failures visible)."""
    try:
        workload = run.workload()
    except FileNotFoundError as error:
        raise PlotUnavailable(str(error)) from None
    results = _table(run, "results")
    table = pd.crosstab(workload["code"], results["status"])
    table = table.loc[table.sum(axis=1) > 0, table.sum(axis=0) > 0]
    height = max(FIGURE_SIZE[1], 0.45 * len(table) + 1.5)
    figure, axis = plt.subplots(figsize=(FIGURE_SIZE[0] + 2, height), layout="constrained")
    axis.set_title("Status mix by payment kind (rows)")
    counts = table.to_numpy()
    image = axis.imshow(np.log10(counts + 1), aspect="auto", cmap="Blues")
    axis.set_xticks(range(len(table.columns)), [str(c) for c in table.columns], rotation=35,
                    ha="right", fontsize="small")
    axis.set_yticks(range(len(table.index)), [str(k) for k in table.index], fontsize="small")
    dark = np.log10(counts + 1) > 0.6 * np.log10(counts.max() + 1)
    for (row, column), count in np.ndenumerate(counts):
        if count:
            axis.text(column, row, f"{count:,}", ha="center", va="center", fontsize="x-small",
                      color="white" if dark[row, column] else "black")
    figure.colorbar(image, ax=axis, label="log10(rows + 1)")
    return figure


def arrivals_against_curve(run: Run, expected_share: np.ndarray | None):
    """Rows per model hour of day against the scenario's rate curve (shares of the day)."""
    hourly = run.summary.get("configuration", {}).get("workload_hourly")
    if hourly is None:
        raise PlotUnavailable("no hourly arrival counts in summary.json (a replay without a"
                              " scenario, or an older run)")
    rows = np.asarray(hourly, dtype=float)
    figure, axis = _figure("Arrivals by model hour against the scenario's curve")
    hours = np.arange(24)
    axis.bar(hours, rows / max(rows.sum(), 1.0), alpha=0.6, label="realised rows")
    if expected_share is not None:
        axis.plot(hours, expected_share, color="black", marker="o", label="scenario rate curve")
    axis.set_xlabel("model hour of day")
    axis.set_ylabel("share of the day's rows")
    axis.legend()
    return figure


def shard_load(run: Run):
    """Each shard's busy time over the run (from epochs.parquet)."""
    epochs = _table(run, "epochs")
    columns = [c for c in epochs.columns if c.startswith("shard_busy_s_")]
    if not columns:
        raise PlotUnavailable("epochs.parquet has no shard busy times")
    figure, axis = _figure("Per-shard load")
    busy = epochs[columns].sum().to_numpy()
    engine = float(run.summary.get("engine_seconds") or 0.0)
    shares = busy / engine if engine > 0 else busy
    axis.bar([c.removeprefix("shard_busy_s_") for c in columns], shares)
    axis.set_xlabel("shard")
    axis.set_ylabel("busy share of engine time" if engine > 0 else "busy seconds")
    return figure


def invariant_timeline(run: Run):
    """Per ledger at every epoch boundary: posted volume, the double-entry gap, the verdicts."""
    audit = _table(run, "audit")
    figure, (volume, gap) = plt.subplots(2, 1, figsize=(FIGURE_SIZE[0], FIGURE_SIZE[1] * 1.6),
                                         sharex=True, layout="constrained")
    volume.set_title("Conservation and invariants at every epoch boundary")
    for ledger, group in audit.groupby("ledger", sort=True):
        epochs = group["epoch"].to_numpy()
        credits = [int(c) for c in group["credits_posted"]]  # exact ints; matplotlib scales them
        difference = [int(d) - int(c) for d, c in zip(group["debits_posted"], group["credits_posted"])]
        volume.plot(epochs, credits, marker=".", label=f"ledger {ledger}")
        gap.plot(epochs, difference, marker=".", label=f"ledger {ledger}")
    broken = audit[~(audit["double_entry"] & audit["overdraft"])]
    gap.scatter(broken["epoch"], np.zeros(len(broken)), color="red", marker="x", s=60,
                label=f"invariant broken ({len(broken)})", zorder=3)
    volume.set_yscale("log", nonpositive="mask")
    volume.set_ylabel("posted credits (minor units)")
    gap.set_ylabel("posted debits - credits")
    gap.set_xlabel("epoch")
    for axis in (volume, gap):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize="small", ncol=3)
    return figure
