"""The figures of ``xpay bench`` (xpay.bench), drawn from its tables and saved as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # noqa: E402 -- before pyplot, so no display is ever needed

import matplotlib.pyplot as plt
import pandas as pd

from sim.timeline import DRIVER_PHASES, SHARD_PHASES

FIGURE_SIZE = (8.0, 4.0)
CURVE_AXES = {"shards": "shards", "rows_per_epoch": "rows per epoch",
              "zipf_exponent": "Zipf exponent (0 = uniform)", "accounts": "accounts"}


def _save(figure, path: Path) -> None:
    figure.savefig(path, dpi=110)
    plt.close(figure)


def peers(table: pd.DataFrame, path: Path) -> None:
    """Rows/s of every variant, log scale, fastest first; unequal results marked."""
    shown = table[table["seconds"] > 0].sort_values("rows_per_s")
    figure, axis = plt.subplots(figsize=(8.0, 0.35 * len(shown) + 1.5), layout="constrained")
    labels = [f"{n}{'' if e is not False else ' (results differ)'}"
              for n, e in zip(shown["name"], shown["equal"])]
    colours = ["tab:blue" if n.startswith("engine") else "tab:gray" for n in shown["name"]]
    axis.barh(labels, shown["rows_per_s"], color=colours)
    axis.set_xscale("log")
    axis.set_xlabel("rows per second (log)")
    axis.set_title("the engine and its peers on the same rows")
    axis.grid(True, axis="x", alpha=0.3)
    _save(figure, path)


def breakdown(summary: dict, path: Path) -> None:
    """One stacked bar of the driver's phases and one of the slowest shard's, ms per epoch."""
    figure, axis = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
    palette = iter(plt.get_cmap("tab20").colors)  # 11 driver phases: tab10 would repeat one
    left = 0.0
    for name in DRIVER_PHASES:
        value = summary.get(f"driver_{name}_ms")
        if value is None or name == "plan":  # plan runs inside the previous epoch's plan_next
            continue
        axis.barh("driver", value, left=left, label=name, color=next(palette))
        left += value
    left = 0.0
    for name in SHARD_PHASES:
        value = summary.get(f"shard_{name}_ms_max")
        if value is None:
            continue
        axis.barh("slowest shard", value, left=left, label=f"shard {name}", hatch="//",
                  color=next(palette))
        left += value
    axis.set_xlabel(f"ms per epoch of {summary['rows_per_epoch']:,.0f} rows"
                    f" (epoch wall {summary['epoch_wall_ms']:.1f} ms)")
    axis.set_title("where an epoch's time goes")
    axis.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    _save(figure, path)


def curves(points: pd.DataFrame, folder: Path) -> None:
    """plots/curve_<axis>.png for each throughput axis, and curve_latency.png."""
    for axis_name, label in CURVE_AXES.items():
        rows = points[points["axis"] == axis_name]
        if rows.empty:
            continue
        figure, axis = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
        axis.plot(rows["value"], rows["rows_per_s"], marker="o")
        if axis_name in ("rows_per_epoch", "accounts"):
            axis.set_xscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("rows per second")
        axis.set_ylim(bottom=0)
        axis.set_title(f"engine throughput against {label}")
        axis.grid(True, alpha=0.3)
        _save(figure, folder / f"curve_{axis_name}.png")
    load = points[points["axis"] == "load"]
    if not load.empty:
        figure, axis = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
        axis.plot(load["offered_rows_per_s"], load["payment_latency_ms_p50"], marker="o", label="p50")
        axis.plot(load["offered_rows_per_s"], load["payment_latency_ms_p99"], marker="o", label="p99")
        axis.set_xlabel("offered rows per second (open loop)")
        axis.set_ylabel("payment latency, ms")
        axis.set_yscale("log")
        axis.set_title("throughput-latency: 10% to 150% of capacity")
        axis.legend()
        axis.grid(True, alpha=0.3)
        _save(figure, folder / "curve_latency.png")
