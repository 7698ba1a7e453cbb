"""A discrete-event model of the engine on a cluster, in SimPy: what `xpay plan` predicts with.

What is modelled, per epoch, as the engine runs it (sim/engine.py, steady state):

    1. the driver finishes the previous epoch (resolve, commit routing, record) while the
       shards look up this epoch's accounts ahead (epochs of LOOK_AHEAD_ROWS_MIN rows or more)
    2. begin_epoch: every shard commits the previous epoch and opens this one; the driver waits
    3. the driver combines the answers and routes the checks (alone)
    4. evaluate: every shard checks funds and pending transfers while the driver plans the
       next epoch

Every step ends at a barrier (the driver collects every shard's answer) and each call costs
a fixed round trip. Each job has CPU work, run on its node's cores by processor sharing
(round robin in short quanta: a node with fewer cores than jobs slows them all), and
blocked time that holds no core. Shards sit on nodes round robin (Ray's SPREAD); the driver
runs on node 0 and competes with the shards there. A shard on another node pays the
network's round trip and its batch's bytes over the link on every call.

The work of each step is the calibration's linear fit in the epoch's rows (driver) or the
rows sent to the shard (shards: ids checked plus account sides looked up, from the workload's
own keys, so a hot shard is modelled as the slowest server at every barrier). Jitter: each
epoch's times are scaled by a factor drawn from the calibration's residuals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy

from xpay.plan.calibration import Calibration
from xpay.plan.shape import Shape

QUANTUM_S = 0.0005  # processor-sharing slice; shorter changes results by < 1%, costs events
LATENCY_POINTS = 32  # payments sampled per epoch, spread over its arrival span
BYTES_PER_ROW_SENT = 48  # batch bytes per row a shard is sent and answers (ids, keys, statuses)


@dataclass
class Cluster:
    """Shards on nodes: `nodes` machines of `node_cores` cores each; the driver on node 0."""

    shards: int
    nodes: int = 1
    node_cores: int | None = None  # None: the calibration machine's cores
    network_rtt_s: float = 100e-6  # assumed between nodes (not measured here: one machine)
    network_bytes_per_s: float = 1.25e9  # assumed 10 Gbit/s

    def node_of_shard(self, shard: int) -> int:
        return shard % self.nodes


@dataclass
class Prediction:
    rows_per_s: float
    engine_seconds: float
    rows: int
    epochs: int
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    offered_rows_per_s: float | None = None
    epoch_wall_ms_mean: float = 0.0
    driver_utilisation: float = 0.0
    shard_utilisation: list = field(default_factory=list)  # share of time inside a call
    shard_cpu_utilisation: list = field(default_factory=list)  # share of time on a core
    node_utilisation: list = field(default_factory=list)
    epoch_final_s: np.ndarray | None = None  # model seconds each epoch ended (not in as_dict)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "epoch_final_s"}


class _Node:
    def __init__(self, env: simpy.Environment, cores: int):
        self.cores = simpy.Resource(env, capacity=cores)
        self.busy_s = 0.0


def _job(env, node: _Node, cpu_s: float, blocked_s: float, account: list, index: int,
         occupied: list | None = None):
    """CPU work on the node's cores by round robin, then blocked time on no core; account
    gets the CPU seconds, occupied (if given) the whole time from start to end."""
    began = env.now
    remaining = cpu_s
    quantum = max(QUANTUM_S, cpu_s / 64)
    while remaining > 1e-12:
        with node.cores.request() as slot:
            yield slot
            step = min(quantum, remaining)
            yield env.timeout(step)
            remaining -= step
            node.busy_s += step
            account[index] += step
    if blocked_s > 0:
        yield env.timeout(blocked_s)
    if occupied is not None:
        occupied[index] += env.now - began


def simulate(calibration: Calibration, shape: Shape, cluster: Cluster,
             rate: float | None = None, rng: np.random.Generator | None = None,
             jitter: bool = True) -> Prediction:
    """Run the model over the shape's epochs; rate (rows a second, open loop) or closed loop."""
    if shape.shards != cluster.shards:
        raise ValueError(f"the workload shape is for {shape.shards} shards, the cluster has {cluster.shards}")
    rng = rng if rng is not None else np.random.default_rng(0)
    cal = calibration
    env = simpy.Environment()
    cores = cluster.node_cores or cal.cores
    nodes = [_Node(env, cores) for _ in range(cluster.nodes)]
    k = cluster.shards
    epochs = len(shape.rows)
    factors = cal.jitter(rng, epochs) if jitter else np.ones(epochs)
    shard_busy = [0.0] * k  # CPU seconds
    shard_occupied = [0.0] * k  # seconds inside its calls (CPU, waiting for a core, blocked)
    driver_busy = [0.0]
    release, final = _release_times(shape, rate), np.zeros(epochs)
    remote = [cluster.node_of_shard(s) != 0 for s in range(k)]

    def network(s: int, rows: int) -> float:
        if not remote[s]:
            return 0.0
        return cluster.network_rtt_s + rows * BYTES_PER_ROW_SENT / cluster.network_bytes_per_s

    def shards_step(i: int, share: str):
        jobs = []
        two_phase_share = shape.two_phase[i] / max(int(shape.rows[i]), 1)
        for s in range(k):
            t = int(shape.touches[i, s])
            cpu, blocked = cal.shard_step(share, t, t * two_phase_share, int(shape.rows[i]))
            jobs.append(env.process(_job(env, nodes[cluster.node_of_shard(s)], cpu * factors[i],
                                         blocked * factors[i] + network(s, t), shard_busy, s,
                                         shard_occupied)))
        return jobs

    def driver_step(i: int, share: str):
        cpu = cal.driver_step(share, int(shape.rows[i]), int(shape.two_phase[i]), k)
        return env.process(_job(env, nodes[0], cpu * factors[i], 0.0, driver_busy, 0))

    def engine():
        started = None
        for i in range(epochs):
            if env.now < release[i]:
                yield env.timeout(release[i] - env.now)
            if started is None:
                started = env.now
                yield driver_step(i, "plan")  # the first epoch is planned on the path
            ahead = int(shape.rows[i]) >= cal.look_ahead_rows_min
            step1 = [driver_step(i - 1, "finish")] if i else []
            if ahead:
                step1 += shards_step(i, "lookup")
            if step1:
                yield simpy.AllOf(env, step1)
                if i:
                    final[i - 1] = env.now
            overhead = cal.call_overhead_s(k, int(shape.rows[i])) * factors[i]
            yield env.timeout(overhead)
            yield simpy.AllOf(env, shards_step(i, "begin") + (shards_step(i, "lookup") if not ahead else []))
            yield env.timeout(overhead)
            yield driver_step(i, "combine")
            nxt = [driver_step(i + 1, "plan")] if i + 1 < epochs else []
            yield simpy.AllOf(env, shards_step(i, "evaluate") + nxt)
            yield env.timeout(overhead)
        yield driver_step(epochs - 1, "finish")
        final[epochs - 1] = env.now
        yield env.timeout(cal.call_overhead_s(k, 0))  # the last commit
        return started

    process = env.process(engine())
    env.run()
    started = process.value if process.value is not None else 0.0
    seconds = max(env.now - started, 1e-12)
    rows = int(shape.rows.sum())
    out = Prediction(rows_per_s=rows / seconds, engine_seconds=seconds, rows=rows, epochs=epochs,
                     offered_rows_per_s=rate,
                     epoch_wall_ms_mean=float(np.mean(np.diff(final))) * 1e3 if epochs > 1 else seconds * 1e3,
                     driver_utilisation=driver_busy[0] / seconds,
                     shard_utilisation=[b / seconds for b in shard_occupied],
                     shard_cpu_utilisation=[b / seconds for b in shard_busy],
                     node_utilisation=[n.busy_s / seconds / cores for n in nodes],
                     epoch_final_s=final)
    if rate is not None:
        latency = _payment_latency(shape, rate, release, final)
        out.latency_ms_p50, out.latency_ms_p99 = (float(np.percentile(latency, q)) * 1e3 for q in (50, 99))
    return out


def _wall_of(shape: Shape, rate: float):
    """sim seconds -> wall seconds as sim.timeline.Pacer.for_rate maps them: the run's sim
    span stretched over rows / rate wall seconds; None when the shape has no sim times."""
    if shape.sim_start_s is None or shape.sim_end_s is None:
        return None
    first, last = float(shape.sim_start_s[0]), float(shape.sim_end_s[-1])
    wall = float(shape.rows.sum()) / rate
    scale = wall / (last - first) if last > first else 0.0
    return lambda sim_s: (np.asarray(sim_s, np.float64) - first) * scale


def _release_times(shape: Shape, rate: float | None) -> np.ndarray:
    """Wall second each epoch is released: its last row's arrival at `rate` (0 closed loop)."""
    if rate is None:
        return np.zeros(len(shape.rows))
    wall = _wall_of(shape, rate)
    return wall(shape.sim_end_s) if wall is not None else np.cumsum(shape.rows) / rate


def _payment_latency(shape: Shape, rate: float, release: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Latencies of LATENCY_POINTS payments per epoch spread over its arrival span, each
    standing for rows / LATENCY_POINTS rows; returns 2000 quantiles of the weighted whole."""
    fractions = (np.arange(LATENCY_POINTS) + 0.5) / LATENCY_POINTS
    wall = _wall_of(shape, rate)
    if wall is not None:
        sim = shape.sim_start_s[:, None] + (shape.sim_end_s - shape.sim_start_s)[:, None] * fractions[None, :]
        arrival = wall(sim)
    else:
        spans = shape.rows / rate
        arrival = release[:, None] - spans[:, None] * (1.0 - fractions[None, :])
    latency = final[:, None] - arrival
    weights = np.repeat(shape.rows / LATENCY_POINTS, LATENCY_POINTS)
    order = np.argsort(latency.ravel())
    cumulative = np.cumsum(weights[order]) / weights.sum()
    values = latency.ravel()[order]
    picks = np.minimum(np.searchsorted(cumulative, np.linspace(0.0005, 0.9995, 2000)), len(values) - 1)
    return values[picks]
