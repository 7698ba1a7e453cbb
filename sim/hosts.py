"""Where shard states live: in this process (LocalHosts) or in Ray actors (RayHosts).

The coordinator only submits a method name with one argument tuple per shard and later
collects the per-shard results in shard order; both hosts keep per-shard call order (one
submitter, synchronous actors).
"""

from __future__ import annotations

from typing import Any, Protocol

from sim.shard_state import ShardState
from sim.wire import SEQUENCED_CALLS, check_accepted


class ShardHosts(Protocol):
    shard_count: int
    concurrent: bool  # shards work while the driver does (separate processes)

    def submit(self, method: str, args_per_shard: list[tuple]) -> Any: ...

    def collect(self, handle: Any) -> list: ...

    def close(self) -> None: ...


class LocalHosts:
    """Every shard in this process, called one after another: one core's worth of engine."""

    concurrent = False

    def __init__(self, shard_states: list[ShardState]):
        self.states = shard_states
        self.shard_count = len(shard_states)

    def submit(self, method: str, args_per_shard: list[tuple]) -> list:
        return [getattr(state, method)(*args) for state, args in zip(self.states, args_per_shard)]

    def collect(self, handle: list) -> list:
        return handle

    def close(self) -> None:
        self.states = []


class SimulatedCrash(Exception):
    """Raised by an in-process fault hook: the shard 'dies' at that point (tests)."""


class DurableLocalHosts:
    """Every shard in this process behind sim.durability.DurableShard: sequence numbers, a
    write-ahead log and snapshots, with crashes simulated in-process (a fault hook raising
    SimulatedCrash drops the shard object; a new one recovers from its files and the call is
    sent again). The Ray actors do the same with real process kills; this is the fast test
    bed for the recovery logic."""

    concurrent = False

    def __init__(self, make_state, shard_count: int, durability, fault=None):
        """make_state(s): a fresh ShardState for shard s (the constructor Ray would re-run)."""
        from sim.durability import DurableShard, prepare_data_dir

        prepare_data_dir(durability, shard_count, fresh=True)
        self._make = lambda s: DurableShard(make_state(s), durability, fault)
        self.shards = [self._make(s) for s in range(shard_count)]
        self.shard_count = shard_count
        self.seq = 0
        self.crashes = 0

    @property
    def states(self):
        return [d.state for d in self.shards]

    def submit(self, method: str, args_per_shard: list[tuple]) -> list:
        if method not in SEQUENCED_CALLS:
            return [getattr(d.state, method)(*args) for d, args in zip(self.shards, args_per_shard)]
        self.seq += 1
        results = []
        for s, args in enumerate(args_per_shard):
            while True:
                try:
                    outcome, result = self.shards[s].apply(self.seq, method, args)
                    break
                except SimulatedCrash:
                    self.crashes += 1
                    self.shards[s].close()
                    self.shards[s] = self._make(s)
            check_accepted(s, self.seq, outcome)
            results.append(result)
        return results

    def collect(self, handle: list) -> list:
        return handle

    def close(self) -> None:
        for d in self.shards:
            d.close()
        self.shards = []
