"""`xpay plan calibrate`: the capacity model's parameters, fitted to measured runs.

Input: run folders (an `xpay sweep` folder's runs, or `xpay run`/`xpay replay` outputs) with
their epochs.parquet, which records per epoch the driver's CPU time and phases and, per
shard, the CPU time, the wall time inside its calls and the rows it was sent. Fitted, by
least squares over the steady-state epochs of every run:

- the driver's CPU per epoch: d0 + d1 x rows, split over its steps by the phases' shares;
- each shard's CPU per epoch: s0 + s1 x rows sent to it, split likewise;
- each shard's blocked time (wall inside its calls minus CPU: waits that hold no core), from
  the runs whose shards and driver fit the machine's cores (no contention in it);
- the fixed cost of one call round trip, c0 + c1 x shards, as what the measured epochs take
  beyond the model with no call cost (model.simulate at that calibration);
- the jitter: the spread of each measured epoch's wall time around the model's.

Stored as JSON with the hardware, versions and runs it came from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sim.engine import LOOK_AHEAD_ROWS_MIN
from sim.errors import XpayError
from xpay.runner import json_default

WARM_UP_EPOCHS = 2  # left out of every fit: kernels, caches and the first plan
JITTER_QUANTILES = 41
DRIVER_SHARES = {"combine": ("audit", "pre_status", "route_evaluate"), "plan": ("plan_next",),
                 "finish": ("look_ahead", "resolve", "route_commit", "record")}
SHARD_SHARES = {"begin": ("commit", "open"), "evaluate": ("evaluate",), "lookup": ("lookup",)}


class CalibrationError(XpayError):
    """The runs or file given cannot calibrate the model (named run and reason): exit 2."""

    exit_status = 2


@dataclass
class Calibration:
    cores: int
    # Costs are linear in an epoch's features, each coefficient >= 0:
    driver_cpu_s: tuple  # per epoch, per row, per two-phase row, per shard
    driver_shares: dict  # step -> fraction of the driver's CPU
    shard_cpu_s: tuple  # per epoch, per row sent, per two-phase row sent, per row x log2(rows)
    shard_blocked_s: tuple  # as shard_cpu_s (fitted where there was no contention)
    shard_shares: dict  # step -> fraction of a shard's time
    call_s: tuple = (0.0, 0.0, 0.0)  # one round trip: per call, per shard, per epoch row
    jitter_quantiles: list = field(default_factory=lambda: [1.0, 1.0])
    look_ahead_rows_min: int = LOOK_AHEAD_ROWS_MIN
    accounts: list = field(default_factory=list)  # the calibration runs' account counts
    rows_per_epoch: list = field(default_factory=list)  # their mean rows per epoch (min, max)
    runs: list = field(default_factory=list)
    hardware: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    fit_error: dict = field(default_factory=dict)
    usl: list = field(default_factory=list)  # Universal Scalability Law fits, a cross-check

    # --- what the model asks ------------------------------------------------------------------
    def driver_step(self, step: str, rows: int, two_phase: int, shards: int) -> float:
        d = self.driver_cpu_s
        return (d[0] + d[1] * rows + d[2] * two_phase + d[3] * shards) * self.driver_shares[step]

    def shard_step(self, step: str, rows_sent: int, two_phase_sent: float,
                   epoch_rows: int) -> tuple[float, float]:
        share = self.shard_shares[step]
        share_two_phase = two_phase_sent / rows_sent if rows_sent else 0.0
        features = _shard_features([rows_sent], share_two_phase, [epoch_rows])[0]
        cpu = float(np.dot(self.shard_cpu_s, features))
        blocked = float(np.dot(self.shard_blocked_s, features))
        return cpu * share, blocked * share

    def call_overhead_s(self, shards: int, rows: int) -> float:
        return max(self.call_s[0] + self.call_s[1] * shards + self.call_s[2] * rows, 0.0)

    def jitter(self, rng: np.random.Generator, epochs: int) -> np.ndarray:
        """A factor per epoch drawn from the calibration's residual distribution (mean 1)."""
        q = np.asarray(self.jitter_quantiles, np.float64)
        return np.interp(rng.random(epochs), np.linspace(0, 1, len(q)), q)

    # --- files --------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1, default=json_default) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CalibrationError(f"{path}: not a calibration file ({error})") from None
        missing = {f for f in cls.__dataclass_fields__ if f not in data} - {
            "call_s", "jitter_quantiles", "look_ahead_rows_min", "accounts", "rows_per_epoch",
            "runs", "hardware", "versions", "fit_error", "usl"}
        if missing:
            raise CalibrationError(f"{path}: not a calibration file (no {', '.join(sorted(missing))})")
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("driver_cpu_s", "shard_cpu_s", "shard_blocked_s", "call_s"):
            if key in data:
                data[key] = tuple(float(v) for v in data[key])
        return cls(**data)


# --- reading runs ------------------------------------------------------------------------------
@dataclass
class MeasuredRun:
    folder: Path
    summary: dict
    all_epochs: pd.DataFrame  # epochs.parquet, every epoch

    @property
    def epochs(self) -> pd.DataFrame:
        """The steady-state epochs (the warm-up left out): what calibration fits."""
        return self.all_epochs.iloc[WARM_UP_EPOCHS:].reset_index(drop=True)

    @property
    def shards(self) -> int:
        return int(self.summary["shards"])


def read_run(folder: Path) -> MeasuredRun:
    folder = Path(folder)
    try:
        summary = json.loads((folder / "summary.json").read_text())
        epochs = pd.read_parquet(folder / "epochs.parquet")
    except (OSError, ValueError) as error:
        raise CalibrationError(f"{folder}: not a run folder ({error})") from None
    if not summary.get("completed", True) or "shards" not in summary:
        raise CalibrationError(f"{folder}: the run did not complete")
    k = int(summary["shards"])
    needed = ["driver_cpu_s", "two_phase_rows"] + [f"shard_cpu_s_{s}" for s in range(k)] + [f"shard_rows_{s}" for s in range(k)]
    absent = [c for c in needed if c not in epochs.columns]
    if absent:
        raise CalibrationError(f"{folder}: epochs.parquet has no {absent[0]} (a run of an older"
                               " xpay, or --in-process); rerun it with this version")
    if len(epochs) <= WARM_UP_EPOCHS + 1:
        raise CalibrationError(f"{folder}: {len(epochs)} epochs; calibration needs more than"
                               f" {WARM_UP_EPOCHS + 1}")
    return MeasuredRun(folder, summary, epochs)


def run_folders(paths: list[Path]) -> list[Path]:
    """Run folders from paths that are run folders or sweep folders (their runs/ inside)."""
    out = []
    for path in map(Path, paths):
        if (path / "summary.json").is_file():
            out.append(path)
        elif (path / "runs").is_dir():
            out.extend(sorted(p for p in (path / "runs").iterdir() if (p / "summary.json").is_file()))
        else:
            raise CalibrationError(f"{path}: neither a run folder nor a sweep folder")
    if not out:
        raise CalibrationError("no run folders given")
    return out


# --- fitting -------------------------------------------------------------------------------------
def nonnegative_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0 (a negative cost is not physical): features
    whose coefficient comes out negative are dropped and the rest refitted."""
    keep = np.ones(x.shape[1], bool)
    while True:
        coefficients = np.zeros(x.shape[1])
        if keep.any():
            coefficients[keep] = np.linalg.lstsq(x[:, keep], y, rcond=None)[0]
        if (coefficients >= 0).all():
            return coefficients
        keep &= coefficients > 0


def _shares(frames: list[pd.DataFrame], groups: dict, prefix: str, shard_count=None) -> dict:
    totals = {}
    for step, phases in groups.items():
        total = 0.0
        for frame in frames:
            for phase in phases:
                if shard_count is None:
                    total += frame[f"{prefix}_{phase}_s"].sum()
                else:
                    total += sum(frame[f"{prefix}_{phase}_s_{s}"].sum() for s in range(shard_count(frame)))
        totals[step] = total
    whole = sum(totals.values()) or 1.0
    return {step: value / whole for step, value in totals.items()}


def _shard_features(rows_sent, two_phase_share, epoch_rows) -> np.ndarray:
    """A shard's cost features in an epoch: a fixed part, rows sent, two-phase rows sent, and
    rows sent x log2(epoch rows) (bigger epochs touch more distinct accounts: more cache misses)."""
    rows_sent = np.asarray(rows_sent, np.float64)
    return np.column_stack([np.ones(len(rows_sent)), rows_sent, rows_sent * two_phase_share,
                            rows_sent * np.log2(np.maximum(np.asarray(epoch_rows, np.float64), 2.0))])


def fit(folders: list[Path], cores: int | None = None) -> Calibration:
    runs = [read_run(f) for f in run_folders(folders)]
    hardware = runs[0].summary.get("hardware", {})
    cores = cores or int(hardware.get("cores") or hardware.get("cpu_count") or 2)
    driver_x, driver_y, shard_x, shard_y, blocked_x, blocked_y = [], [], [], [], [], []
    for r in runs:
        e, k = r.epochs, r.shards
        rows = e["rows"].to_numpy(np.float64)
        two_phase = e["two_phase_rows"].to_numpy(np.float64)
        driver_x.append(np.column_stack([np.ones(len(e)), rows, two_phase, np.full(len(e), k)]))
        driver_y.append(e["driver_cpu_s"].to_numpy())
        share = two_phase / np.maximum(rows, 1)
        for s in range(k):
            t = e[f"shard_rows_{s}"].to_numpy(np.float64)
            cpu = e[f"shard_cpu_s_{s}"].to_numpy()
            shard_x.append(_shard_features(t, share, rows))
            shard_y.append(cpu)
            if k + 1 <= cores:  # the shards and the driver each had a core: no contention in it
                blocked_x.append(_shard_features(t, share, rows))
                blocked_y.append(np.maximum(e[f"shard_busy_s_{s}"].to_numpy() - cpu, 0.0))
    if not blocked_x:
        raise CalibrationError("no run had a core for each shard and the driver (shards + 1 <="
                               f" {cores} cores): include runs with fewer shards, so that the time"
                               " shards wait without using a core can be told from contention")
    frames = [r.epochs for r in runs]
    # Step shares of a shard's time from epochs that looked up ahead (lookup is its own step
    # only there; in smaller epochs begin_epoch makes the look-ups and the model adds both).
    looked_ahead = [f[f["rows"] >= LOOK_AHEAD_ROWS_MIN] for f in frames]
    looked_ahead = [f for f in looked_ahead if len(f)] or frames
    every_rows = np.concatenate([f["rows"].to_numpy() for f in frames])
    cal = Calibration(
        cores=cores,
        driver_cpu_s=tuple(nonnegative_fit(np.concatenate(driver_x), np.concatenate(driver_y))),
        driver_shares=_shares(frames, DRIVER_SHARES, "driver"),
        shard_cpu_s=tuple(nonnegative_fit(np.concatenate(shard_x), np.concatenate(shard_y))),
        shard_blocked_s=tuple(nonnegative_fit(np.concatenate(blocked_x), np.concatenate(blocked_y))),
        shard_shares=_shares(looked_ahead, SHARD_SHARES, "shard", shard_count=_shards_of),
        accounts=sorted({int(r.summary.get("accounts", 0)) for r in runs}),
        rows_per_epoch=[float(every_rows.min()), float(every_rows.max())],
        runs=[str(r.folder) for r in runs],
        hardware=hardware, versions=runs[0].summary.get("versions", {}),
    )
    cal.driver_cpu_s = tuple(float(v) for v in cal.driver_cpu_s)
    cal.shard_cpu_s = tuple(float(v) for v in cal.shard_cpu_s)
    cal.shard_blocked_s = tuple(float(v) for v in cal.shard_blocked_s)
    _fit_calls_and_jitter(cal, runs)
    cal.usl = usl_fits(runs)
    return cal


def usl(shards: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    """Gunther's Universal Scalability Law: throughput at N shards."""
    n = np.asarray(shards, np.float64)
    return lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


def fit_usl(shards: np.ndarray, throughput: np.ndarray) -> dict:
    """lambda, sigma (contention), kappa (coherency) >= 0 by least squares: a grid over sigma
    and kappa, lambda in closed form for each."""
    n, x = np.asarray(shards, np.float64), np.asarray(throughput, np.float64)
    best = None
    grid = np.concatenate([[0.0], np.logspace(-4, 1, 120)])
    for sigma in grid:
        for kappa in grid:
            shape = n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
            lam = float(shape @ x / (shape @ shape))
            error = float(np.sum((lam * shape - x) ** 2))
            if best is None or error < best[0]:
                best = (error, lam, sigma, kappa)
    _, lam, sigma, kappa = best
    fitted = usl(n, lam, sigma, kappa)
    return {"lambda_rows_per_s": lam, "sigma": float(sigma), "kappa": float(kappa),
            "max_relative_error": float(np.max(np.abs(fitted / x - 1.0))),
            "peak_shards": float(np.sqrt((1.0 - sigma) / kappa)) if kappa > 0 and sigma < 1 else None}


def usl_fits(runs: list[MeasuredRun]) -> list[dict]:
    """A USL fit per group of runs that differ only in shard count (same workload and epoch
    length: same rows), over their reported rows/s; groups with fewer than 3 shard counts skipped."""
    groups: dict = {}
    for r in runs:
        key = (int(r.summary.get("rows", 0)), int(r.summary.get("epochs", 0)))
        groups.setdefault(key, []).append(r)
    out = []
    for (rows, epochs), members in sorted(groups.items()):
        shards = np.array([m.shards for m in members])
        if len(set(shards.tolist())) < 3:
            continue
        throughput = np.array([float(m.summary["rows_per_s"]) for m in members])
        out.append({"rows": rows, "epochs": epochs, "shards": shards.tolist(),
                    "rows_per_s": throughput.tolist(), **fit_usl(shards, throughput)})
    return out


def _shards_of(frame: pd.DataFrame) -> int:
    return sum(1 for c in frame.columns if c.startswith("shard_cpu_s_"))


def measured_shape(run: MeasuredRun):
    """The run's steady-state epochs as the model's input (rows and rows sent per shard)."""
    return shape_of_epochs(run.epochs, run.shards)


def shape_of_epochs(epochs: pd.DataFrame, shards: int):
    """A Shape from epochs.parquet's columns: what each shard was sent, as measured."""
    from xpay.plan.shape import Shape

    touches = np.stack([epochs[f"shard_rows_{s}"].to_numpy() for s in range(shards)], axis=1)
    return Shape(epochs["rows"].to_numpy().astype(np.int64), touches.astype(np.int64),
                 epochs["two_phase_rows"].to_numpy().astype(np.int64),
                 epochs["sim_start_us"].to_numpy() / 1e6, epochs["sim_end_us"].to_numpy() / 1e6)


def _measured_seconds(run: MeasuredRun) -> tuple[float, np.ndarray]:
    """Steady-state engine seconds and each epoch's wall time (final to final)."""
    final = run.epochs["final_s"].to_numpy()
    walls = np.diff(final)
    return float(final[-1] - final[0]), walls


def _fit_calls_and_jitter(cal: Calibration, runs: list[MeasuredRun]) -> None:
    """What each measured epoch took beyond the model without call costs, as a linear
    function of shards and rows, spread over its three round trips; then the residual spread."""
    from xpay.plan.model import Cluster, simulate

    cal.call_s = (0.0, 0.0, 0.0)
    features, residual = [], []
    for r in runs:
        _, walls = _measured_seconds(r)
        modelled = simulate(cal, measured_shape(r), Cluster(r.shards), jitter=False)
        rows = r.epochs["rows"].to_numpy()[1:]
        features.append(np.column_stack([np.ones(len(walls)), np.full(len(walls), r.shards), rows]))
        residual.append((walls - np.diff(modelled.epoch_final_s)) / 3.0)
    x, y = np.concatenate(features), np.concatenate(residual)
    cal.call_s = tuple(float(c) for c in nonnegative_fit(x.astype(np.float64), y))
    ratios, errors = [], {}
    for r in runs:
        seconds, walls = _measured_seconds(r)
        modelled = simulate(cal, measured_shape(r), Cluster(r.shards), jitter=False)
        predicted_walls = np.diff(modelled.epoch_final_s)
        ratios.append(walls / np.maximum(predicted_walls, 1e-9))
        errors[str(r.folder)] = float(predicted_walls.sum() / seconds - 1.0)
    pooled = np.concatenate(ratios)
    pooled = pooled[np.isfinite(pooled) & (pooled > 0)]
    if len(pooled):
        pooled = pooled / pooled.mean()
        cal.jitter_quantiles = [float(v) for v in np.quantile(pooled, np.linspace(0, 1, JITTER_QUANTILES))]
    cal.fit_error = {"epoch_time_relative_error_by_run": errors,
                     "max_abs": float(max(abs(v) for v in errors.values()))}
