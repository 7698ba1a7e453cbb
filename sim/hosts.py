"""Where shard states live: in this process (LocalHosts) or in Ray actors (RayHosts).

The coordinator only submits a method name with one argument tuple per shard and later
collects the per-shard results in shard order; both hosts keep per-shard call order (one
submitter, synchronous actors).
"""

from __future__ import annotations

from typing import Any, Protocol

from sim.shard_state import ShardState


class ShardHosts(Protocol):
    shard_count: int

    def submit(self, method: str, args_per_shard: list[tuple]) -> Any: ...

    def collect(self, handle: Any) -> list: ...

    def close(self) -> None: ...


class LocalHosts:
    """Every shard in this process, called one after another: one core's worth of engine."""

    def __init__(self, shard_states: list[ShardState]):
        self.states = shard_states
        self.shard_count = len(shard_states)

    def submit(self, method: str, args_per_shard: list[tuple]) -> list:
        return [getattr(state, method)(*args) for state, args in zip(self.states, args_per_shard)]

    def collect(self, handle: list) -> list:
        return handle

    def close(self) -> None:
        self.states = []
