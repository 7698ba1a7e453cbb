"""The engine's clock: open-loop release of epochs, and what happened to each epoch, when.

`Pacer` maps simulated time onto wall time so that a workload is offered at a chosen rate
(``--rate R``: R rows a second of wall time on average over the run). A payment arrives at
the wall instant its ``sim_time_us`` maps to; an epoch is released when its last row has
arrived, never earlier (the driver does not even plan it before then). A payment's latency
runs from its own scheduled arrival to the instant its epoch's statuses are final on the
driver (chains resolved, and journaled when the run is durable): if the engine falls behind,
epochs are released late and the backlog shows as latency, so there is no coordinated
omission (the YCSB/wrk2 rule). The effects are applied on the shards with the next call
(`commit_s` in the timeline).

`EpochTimeline` records, per epoch, the simulated start and end, the wall instants (release,
start, statuses final, effects committed on the shards; seconds since the engine started),
rows, committed rows, the status counts, the rows per business code, each shard's busy time
(measured inside the shard, around its two calls), and (with a pacer)
the payment latency histograms per business code. It becomes ``epochs.parquet`` and
``latency.parquet``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sim.constants import CODE_NAMES, STATUS_COUNT, STATUS_NAMES
from sim.latency import KindHistograms

# The per-epoch breakdown (epochs.parquet): the driver's phases, in the order they run, and
# each shard's. `begin_wait`/`evaluate_wait` are the driver waiting on the shards' answers
# (their work, transport, and any queueing for a core); `plan` is this epoch's planning,
# which ran while the shards evaluated the epoch before (`plan_next` of that epoch).
DRIVER_PHASES = ("plan", "ahead_wait", "begin_wait", "audit", "pre_status", "route_evaluate",
                 "plan_next", "evaluate_wait", "look_ahead", "resolve", "route_commit", "record")
SHARD_PHASES = ("commit", "open", "evaluate", "lookup")  # lookup: lookup_ahead, before begin
CODE_COLUMNS = max(CODE_NAMES) + 1  # rows per business code: codes of the contract; others apart
MICROSECONDS_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class Pacer:
    """Simulated microseconds to wall seconds: wall = origin + (sim - sim_origin) / speed."""

    sim_origin_us: int
    sim_us_per_wall_s: float

    @classmethod
    def for_rate(cls, rate_rows_per_s: float, rows: int, first_sim_us: int, last_sim_us: int):
        """A pacer offering `rows` spread over [first, last] sim time at `rate` rows/s."""
        if not rate_rows_per_s > 0:
            raise ValueError(f"rate(={rate_rows_per_s}) must be > 0 rows per second")
        span_us = int(last_sim_us) - int(first_sim_us)
        if span_us <= 0 or rows <= 1:
            raise ValueError("an offered rate needs a workload whose rows span simulated time"
                             f" (sim_time_us from {first_sim_us} to {last_sim_us}, {rows} rows)")
        wall_s = rows / rate_rows_per_s
        return cls(int(first_sim_us), span_us / wall_s)

    def offset_s(self, sim_us) -> np.ndarray | float:
        """Seconds after the run's start at which simulated time `sim_us` is due."""
        return (np.asarray(sim_us, np.float64) - self.sim_origin_us) / self.sim_us_per_wall_s


@dataclass
class EpochTimeline:
    """Per epoch: simulated span, wall instants, counts; payment latency with a pacer."""

    pacer: Pacer | None = None
    started: float = 0.0  # time.perf_counter() at the engine's start
    columns: dict = field(default_factory=lambda: {name: [] for name in (
        "epoch", "sim_start_us", "sim_end_us", "rows", "committed", "release_s", "start_s",
        "final_s", "commit_s")})
    status_counts: list = field(default_factory=list)
    code_counts: list = field(default_factory=list)
    busy_s: list = field(default_factory=list)  # per epoch: each shard's own time in its calls
    shard_cpu_s: list = field(default_factory=list)  # per epoch: each shard's CPU time in them
    shard_touches: list = field(default_factory=list)  # per epoch: rows sent to each shard
    two_phase_rows: list = field(default_factory=list)  # per epoch: pending, post and void rows
    shard_phases: list = field(default_factory=list)  # per epoch: [shard][commit, open, evaluate]
    driver_phases: list = field(default_factory=list)  # per epoch: {phase: driver seconds}
    latency: KindHistograms = field(default_factory=KindHistograms)

    def start(self) -> None:
        self.started = time.perf_counter()

    def now_s(self) -> float:
        return time.perf_counter() - self.started

    def due_s(self, sim_time_us: np.ndarray) -> float:
        """When an epoch with these rows is due (its last row's arrival); 0 without a pacer."""
        if self.pacer is None or len(sim_time_us) == 0:
            return 0.0
        return float(self.pacer.offset_s(sim_time_us[-1]))

    def wait_until_due(self, sim_time_us: np.ndarray) -> float:
        """Sleep until the epoch is due; returns its release instant (seconds since start)."""
        due = self.due_s(sim_time_us)
        if self.pacer is None:
            return self.now_s()
        delay = due - self.now_s()
        if delay > 0:
            time.sleep(delay)
        return due

    def released(self, epoch: int, sim_time_us: np.ndarray, release_s: float) -> None:
        c = self.columns
        c["epoch"].append(int(epoch))
        c["sim_start_us"].append(int(sim_time_us[0]))
        c["sim_end_us"].append(int(sim_time_us[-1]))
        c["rows"].append(len(sim_time_us))
        c["release_s"].append(release_s)
        c["start_s"].append(self.now_s())

    def final(self, status: np.ndarray, codes: np.ndarray, sim_time_us: np.ndarray,
              committed: int) -> None:
        """The epoch's statuses are final: counts, and each payment's latency under a pacer."""
        final_s = self.now_s()
        self.columns["final_s"].append(final_s)
        self.columns["committed"].append(int(committed))
        self.columns["commit_s"].append(float("nan"))
        self.status_counts.append(np.bincount(status, minlength=STATUS_COUNT)[:STATUS_COUNT])
        self.code_counts.append(np.bincount(np.minimum(codes, CODE_COLUMNS), minlength=CODE_COLUMNS + 1))
        if self.pacer is not None:
            latency_s = final_s - self.pacer.offset_s(sim_time_us)
            latency_us = np.maximum(np.rint(latency_s * MICROSECONDS_PER_SECOND), 0).astype(np.int64)
            self.latency.record(codes, latency_us)

    def shard_busy(self, seconds_per_shard: list[float],
                   phases_per_shard: list[tuple[float, ...]] | None = None,
                   cpu_per_shard: list[float] | None = None,
                   touches_per_shard: list[int] | None = None,
                   two_phase_rows: int | None = None) -> None:
        """Each shard's time inside this epoch's calls (measured in the shard), and how it
        splits (SHARD_PHASES): the previous epoch's commit, the rest of begin_epoch, evaluate,
        and the account look-ups made ahead (0 when begin_epoch made them); the CPU time of
        those calls (less than the wall time when shards outnumber cores) and the rows each
        shard was sent (ids checked plus account sides looked up); and the epoch's rows of
        two-phase kinds (pending, post, void: they cost more than plain transfers)."""
        self.busy_s.append([float(s) for s in seconds_per_shard])
        if phases_per_shard is not None:
            self.shard_phases.append([[float(v) for v in p] for p in phases_per_shard])
        if cpu_per_shard is not None:
            self.shard_cpu_s.append([float(s) for s in cpu_per_shard])
        if touches_per_shard is not None:
            self.shard_touches.append([int(t) for t in touches_per_shard])
        if two_phase_rows is not None:
            self.two_phase_rows.append(int(two_phase_rows))

    def driver(self, phases: dict[str, float]) -> None:
        """The driver's own time in this epoch, by phase (DRIVER_PHASES), in seconds."""
        self.driver_phases.append(phases)

    def committed(self, index: int) -> None:
        """The shards acknowledged the effects of the epoch recorded `index`-th."""
        self.columns["commit_s"][index] = self.now_s()

    def table(self) -> dict[str, np.ndarray]:
        """epochs.parquet's columns: the fixed ones, status_<name>, code_<name>, code_other."""
        out = {name: np.asarray(values) for name, values in self.columns.items()}
        statuses = np.array(self.status_counts, np.int64).reshape(-1, STATUS_COUNT)
        for code, name in enumerate(STATUS_NAMES):
            out[f"status_{name}"] = statuses[:, code]
        codes = np.array(self.code_counts, np.int64).reshape(-1, CODE_COLUMNS + 1)
        for code in range(CODE_COLUMNS):
            out[f"code_{CODE_NAMES.get(code, code)}"] = codes[:, code]
        out["code_other"] = codes[:, CODE_COLUMNS]
        if self.shard_phases and len(self.shard_phases) == len(out["epoch"]):
            phases = np.array(self.shard_phases, np.float64)  # [epoch, shard, phase]
            for shard in range(phases.shape[1]):
                for p, name in enumerate(SHARD_PHASES):
                    out[f"shard_{name}_s_{shard}"] = phases[:, shard, p]
        for name, values, dtype in (("shard_busy_s", self.busy_s, np.float64),
                                    ("shard_cpu_s", self.shard_cpu_s, np.float64),
                                    ("shard_rows", self.shard_touches, np.int64)):
            if values and len(values) == len(out["epoch"]):
                table = np.array(values, dtype)
                for shard in range(table.shape[1]):
                    out[f"{name}_{shard}"] = table[:, shard]
        if self.two_phase_rows and len(self.two_phase_rows) == len(out["epoch"]):
            out["two_phase_rows"] = np.array(self.two_phase_rows, np.int64)
        if self.driver_phases and len(self.driver_phases) == len(out["epoch"]):
            for name in DRIVER_PHASES:
                out[f"driver_{name}_s"] = np.array([d.get(name, 0.0) for d in self.driver_phases])
            out["driver_cpu_s"] = np.array([d.get("cpu", 0.0) for d in self.driver_phases])
        return out
