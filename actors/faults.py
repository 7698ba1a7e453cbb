"""Seeded fault plans for the shard actors: kills, delayed, duplicated and stale batches.

A plan is drawn from ``numpy.random.default_rng(fault_seed)`` before the run, over the run's
calls (two per epoch plus the final commit, numbered from 1 like the shards' sequence
numbers), so a seed reproduces the same faults at the same points. Kill points:

- ``received``, ``logged``, ``committed``, ``applied``: the actor kills its own process
  (``os._exit``) at that point of handling the call: before writing it to its log, after
  logging it, after applying the previous epoch's commit (begin_epoch calls only), after
  applying it but before answering;
- ``during``: the driver kills the actor (``ray.kill``, restart allowed) just after sending
  it the call, wherever it is then;
- ``between``: the driver kills the actor after it answered the call, before the next one.

Other faults: ``delay`` holds one shard's batch back for DELAY_SECONDS while the others run;
``duplicate`` sends a shard the batch it just answered once more (it must answer from its
cache, not apply it again); ``stale`` offers a shard that has just been restarted the batch
before the one it is on (it must refuse it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.durability import HOST_RECORD_NAMES, HOST_RECORD_PREFIX

ACTOR_POINTS = ("received", "logged", "committed", "applied")
DRIVER_POINTS = ("during", "between")
KILL_POINTS = ACTOR_POINTS + DRIVER_POINTS
DELAY_SECONDS = 0.05

# Fault bookkeeping in a shard's data folder (actors.shard_actor), next to the ledger's files:
# DEATH_NOTE, the time of a fault-injected kill, for the next incarnation to report; STARTS_FILE,
# how many processes have hosted the shard; SELF_KILLS_FILE, how many fault-injected kills
# happened inside the actor; FAULT_MARKER_PREFIX + "seq-point", a planned kill that fired.
STARTS_FILE, SELF_KILLS_FILE, DEATH_NOTE = HOST_RECORD_NAMES
FAULT_MARKER_PREFIX = HOST_RECORD_PREFIX


def clear_fault_records(folder: Path) -> None:
    """A resumed run counts its own restarts and fires its own planned kills."""
    for path in Path(folder).iterdir():
        counters = path.name in (STARTS_FILE, SELF_KILLS_FILE, DEATH_NOTE)
        if counters or path.name.startswith(FAULT_MARKER_PREFIX):
            path.unlink()


@dataclass
class FaultPlan:
    kills: dict = field(default_factory=dict)  # (shard, seq) -> point
    delays: set = field(default_factory=set)  # (shard, seq)
    duplicates: set = field(default_factory=set)  # (shard, seq)
    stale_after_restart: int = 0  # restarted shards to offer an old batch to
    seed: int | None = None

    @property
    def empty(self) -> bool:
        return not (self.kills or self.delays or self.duplicates or self.stale_after_restart)

    @classmethod
    def draw(cls, seed: int, shard_count: int, calls: int, kills: int = 0, delays: int = 0,
             duplicates: int = 0, stale: int = 0) -> "FaultPlan":
        """kills at distinct (shard, call) points of calls 1..calls-1 (the last call, the
        final commit, is left alone so every kill is followed by a call that finds it)."""
        rng = np.random.default_rng(seed)
        plan = cls(seed=seed, stale_after_restart=int(stale))
        slots = max(calls - 1, 0) * shard_count
        if kills > slots:
            raise ValueError(f"--kill-shards {kills}: this run has only {slots} (shard, call) points to kill at")
        chosen = rng.choice(slots, size=kills, replace=False) if kills else []
        for flat in sorted(int(c) for c in chosen):
            shard, seq = flat % shard_count, flat // shard_count + 1
            points = [p for p in KILL_POINTS if p != "committed" or (seq % 2 == 1 and seq > 1)]
            plan.kills[(shard, seq)] = points[int(rng.integers(len(points)))]
        points = shard_count * max(calls, 1)
        for count, target in ((delays, plan.delays), (duplicates, plan.duplicates)):
            if count > points:
                raise ValueError(f"{count} faults of one kind: this run has only {points} (shard, call) points")
            for flat in rng.choice(points, size=int(count), replace=False) if count else []:
                target.add((int(flat) % shard_count, int(flat) // shard_count + 1))
        return plan

    def describe(self) -> dict:
        points = {}
        for point in self.kills.values():
            points[point] = points.get(point, 0) + 1
        return {"seed": self.seed, "kills": len(self.kills), "kill_points": points,
                "delays": len(self.delays), "duplicates": len(self.duplicates),
                "stale_after_restart": self.stale_after_restart}
