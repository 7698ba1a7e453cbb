"""``xpay sweep``: a grid of runs (shards x size x epoch length x seeds, with repeats), one Ray
session for all of them, and the statistics a capacity planner calibrates from.

Each cell of the grid is one configuration; each (seed, repeat) of a cell is one run. The
workload of a (size, epoch length, seed) is generated once and replayed at every shard count
(the same rows, so shard counts compare like for like). Before the first recorded run, one
warm-up run (the first cell, first seed) is made and discarded: it pays for Ray's worker
start-up and the kernels' first load, which would otherwise inflate the first cell.

Written to the sweep folder:

- ``sweep.parquet``: one row per run (the grid coordinates, seed, repeat, and the run's
  figures: rows, rows_per_s, engine and start-up seconds, latencies, divergence, the result
  hash and its run folder);
- ``cells.parquet``: one row per cell: for each figure its mean, standard deviation, run
  count and the half-width of a 95% confidence interval of the mean (Student's t);
- ``sweep.json``: the grid, the cells and versions/hardware; ``plots/throughput.png``.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

# Student's t, two-sided 95% (0.975 quantile), for 1..30 degrees of freedom.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
NORMAL_975 = 1.959964
FIGURES = ("rows_per_s", "engine_seconds", "startup_seconds", "batch_latency_ms_p50",
           "batch_latency_ms_p99", "payment_latency_ms_p50", "payment_latency_ms_p99",
           "strict_serial_divergence")
GRID_KEYS = ("shards", "users", "scale", "epoch_seconds")


def t_975(degrees_of_freedom: int) -> float:
    """The 0.975 quantile of Student's t: a table to 30 degrees of freedom, then the
    Cornish-Fisher expansion about the normal to 1/df**2 (within 0.01% past 30)."""
    if degrees_of_freedom < 1:
        return math.nan
    if degrees_of_freedom <= len(T_975):
        return T_975[degrees_of_freedom - 1]
    z2 = NORMAL_975 * NORMAL_975
    df = float(degrees_of_freedom)
    return NORMAL_975 * (1 + (z2 + 1) / (4 * df) + (5 * z2 * z2 + 16 * z2 + 3) / (96 * df * df))


@dataclass(frozen=True)
class Grid:
    """The sweep's axes; None in `users`/`scale`/`epoch_seconds` keeps the scenario's own."""

    scenario: str = "quick"
    shards: tuple = (1, 2, 4)
    users: tuple = (None,)
    scale: tuple = (None,)
    epoch_seconds: tuple = (None,)
    seeds: tuple = (1,)
    repeats: int = 1
    rate: float | None = None
    in_process: bool = False
    warm_up: bool = True
    options: dict = field(default_factory=dict)  # more RunOptions fields, the same in every run

    def __post_init__(self):
        for name in ("shards", "users", "scale", "epoch_seconds", "seeds"):
            values = getattr(self, name)
            if not isinstance(values, tuple) or not values:
                raise ValueError(f"{name}(={values!r}) must be a non-empty tuple")
        if self.repeats < 1:
            raise ValueError(f"repeats(={self.repeats}) must be >= 1")
        if any(u is not None for u in self.users) and any(s is not None for s in self.scale):
            raise ValueError("give users or scale, not both")

    def cells(self) -> list[dict]:
        """Every configuration, shards varying fastest (one workload serves several cells)."""
        out = []
        for users, scale, epoch_seconds, shards in itertools.product(
                self.users, self.scale, self.epoch_seconds, self.shards):
            out.append({"shards": shards, "users": users, "scale": scale, "epoch_seconds": epoch_seconds})
        return out


def run_row(cell: dict, seed: int, repeat: int, summary: dict, folder: Path) -> dict:
    """One row of sweep.parquet from a run's summary."""
    batch = summary.get("epoch_latency_ms", {})
    payment = (summary.get("payment_latency_ms") or {}).get("all", {})
    return {
        **{k: cell[k] for k in GRID_KEYS}, "seed": seed, "repeat": repeat,
        "rows": summary["rows"], "epochs": summary["epochs"], "accounts": summary["accounts"],
        "rows_per_s": summary["rows_per_s"], "engine_seconds": summary["engine_seconds"],
        "startup_seconds": summary.get("startup_seconds"),
        "batch_latency_ms_p50": batch.get("p50"), "batch_latency_ms_p99": batch.get("p99"),
        "payment_latency_ms_p50": payment.get("p50"), "payment_latency_ms_p99": payment.get("p99"),
        "strict_serial_divergence": summary.get("strict_serial_divergence"),
        "invariants_held": all(summary["invariants"].values()),
        "result_sha256": summary["result_sha256"], "run_dir": str(folder),
    }


def cell_statistics(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell: mean, sd, n and the 95% CI half-width of each figure (NaN where n < 2)."""
    keys = list(GRID_KEYS)
    grouped = runs.groupby(keys, sort=False, dropna=False)  # None (the scenario's own) is a key
    rows = []
    for cell, frame in grouped:
        row = dict(zip(keys, cell))
        row["runs"] = len(frame)
        for figure in FIGURES:
            values = pd.to_numeric(frame[figure], errors="coerce").dropna().to_numpy(float)
            count = len(values)
            mean = float(values.mean()) if count else math.nan
            sd = float(values.std(ddof=1)) if count > 1 else math.nan
            row[f"{figure}_mean"] = mean
            row[f"{figure}_sd"] = sd
            row[f"{figure}_ci95"] = t_975(count - 1) * sd / math.sqrt(count) if count > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def plot_throughput(cells: pd.DataFrame, path: Path) -> None:
    """Throughput against shard count, one line per (size, epoch length), 95% CI bars."""
    from xpay.plots import FIGURE_SIZE, plt

    figure, axis = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
    for (users, scale, epoch_seconds), frame in cells.groupby(["users", "scale", "epoch_seconds"],
                                                              sort=False, dropna=False):
        frame = frame.sort_values("shards")
        label = f"users {users}, scale {scale}, epoch {epoch_seconds} s"
        axis.errorbar(frame["shards"], frame["rows_per_s_mean"],
                      yerr=frame["rows_per_s_ci95"].fillna(0.0), marker="o", capsize=4, label=label)
    axis.set_xlabel("shards")
    axis.set_ylabel("rows per second (mean, 95% CI)")
    axis.set_title("Throughput against shard count")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_sweep(out: Path, grid: Grid, runs: pd.DataFrame, extra: dict) -> pd.DataFrame:
    """sweep.parquet, cells.parquet, sweep.json and the plot; returns the cell statistics."""
    cells = cell_statistics(runs)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_parquet(out / "sweep.parquet", index=False)
    cells.to_parquet(out / "cells.parquet", index=False)
    plot_throughput(cells, out / "plots" / "throughput.png")
    document = {"grid": asdict(grid), "cells": json.loads(cells.to_json(orient="records")), **extra}
    (out / "sweep.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    return cells


RunOne = Callable[[dict, int, Path], tuple[dict, Path]]


def run_grid(grid: Grid, out: Path, run_one: RunOne, on_run: Callable[[int, int], None] | None = None
             ) -> pd.DataFrame:
    """Every run of the grid through `run_one(cell, seed, folder) -> (summary, folder)`;
    the warm-up run first (discarded). Returns sweep.parquet's rows."""
    cells = grid.cells()
    if grid.warm_up:
        import shutil

        run_one(cells[0], grid.seeds[0], out / "warm-up")
        shutil.rmtree(out / "warm-up")  # discarded: it paid for start-up and the kernels' load
    rows = []
    total = len(cells) * len(grid.seeds) * grid.repeats
    for number, (cell, seed, repeat) in enumerate(itertools.product(
            cells, grid.seeds, range(grid.repeats))):
        name = "-".join(f"{k}{cell[k]}" for k in GRID_KEYS if cell[k] is not None)
        summary, folder = run_one(cell, seed, out / "runs" / f"{name}-seed{seed}-r{repeat}")
        rows.append(run_row(cell, seed, repeat, summary, folder))
        if on_run is not None:
            on_run(number + 1, total)
    return pd.DataFrame(rows)


@dataclass
class Sweep:
    """A finished sweep: one row per run (`runs`), per-cell statistics (`cells`), its folder."""

    folder: Path
    runs: pd.DataFrame
    cells: pd.DataFrame

    def __repr__(self) -> str:
        return f"Sweep({str(self.folder)!r}, {len(self.runs)} runs in {len(self.cells)} cells)"


class _Workloads:
    """Each (users, scale, epoch_seconds, seed) generated once, written under the sweep folder
    (so every run folder can name its inputs) and kept while its cells run."""

    def __init__(self, grid: Grid, folder: Path):
        self.grid, self.folder, self.cache = grid, folder, {}

    def get(self, cell: dict, seed: int):
        from workloads.scenario import Resize
        from xpay.app import scenario_workload, write_workload

        key = (cell["users"], cell["scale"], cell["epoch_seconds"], seed)
        if key not in self.cache:
            if len(self.cache) >= len(self.grid.seeds):
                self.cache.pop(next(iter(self.cache)))
            size = Resize(users=cell["users"], scale=cell["scale"], epoch_seconds=cell["epoch_seconds"])
            source, accounts, transfers, _ = scenario_workload(self.grid.scenario, seed, size)
            name = "-".join(f"{k}{v}" for k, v in zip(("users", "scale", "epoch"), key[:3]) if v is not None)
            where = self.folder / "workloads" / f"{name or 'scenario'}-seed{seed}"
            write_workload(where, accounts, transfers, source, self.grid.scenario, seed)
            self.cache[key] = (accounts, transfers, where)
        return self.cache[key]


def execute(grid: Grid, out: Path, progress: bool | None = None) -> Sweep:
    """Run the grid (one Ray session for all runs) and write the sweep's files."""
    from xpay import progress as shown
    from xpay.report import hardware, versions
    from xpay.runner import RunOptions, replay

    workloads = _Workloads(grid, out)
    visible = shown.show(progress)

    def run_one(cell: dict, seed: int, folder: Path) -> tuple[dict, Path]:
        accounts, transfers, inputs = workloads.get(cell, seed)
        options = RunOptions(shards=cell["shards"], rate=grid.rate, in_process=grid.in_process,
                             progress=False, **grid.options)
        configuration = {"command": "sweep", "scenario": grid.scenario, "seed": seed,
                         "accounts_path": str((inputs / "accounts.parquet").resolve()),
                         "workload_path": str((inputs / "workload.parquet").resolve())}
        return replay(accounts, transfers, folder, options, 0.0, configuration), folder

    total = len(grid.cells()) * len(grid.seeds) * grid.repeats
    with shown.bar(total=total, unit="run", desc="sweep", disable=not visible) as bar:
        runs = run_grid(grid, out, run_one, on_run=lambda done, _: bar.update(1))
    cells = write_sweep(out, grid, runs, {"versions": versions(), "hardware": hardware()})
    return Sweep(folder=out, runs=runs, cells=cells)
