"""The Ray actor that hosts one shard's state (sim.shard_state.ShardState) and its kernels.

It holds no ledger logic of its own: every call forwards to the shard state, so the
in-process engine and the Ray engine run the same code. One synchronous actor per shard and a
single submitter keep each shard's calls in order. ``call_arena`` is the same call with its
bulk arrays passed through shared-memory arenas (actors.transport) instead of the object
store, for actors on the driver's node.
"""

from __future__ import annotations

import collections
import time

import ray

from actors.transport import Arena, ArenaReader
from sim.shard_state import ShardState
from sim.warmup import warm_up

SHARD_METHODS = frozenset({"begin_epoch", "evaluate", "finish", "final_state"})


class ArenaLoopback:
    """In-process hosts whose arguments make a round trip through an arena, as in call_arena."""

    def __init__(self, hosts):
        self.hosts = hosts
        self.shard_count = hosts.shard_count
        self.writer = Arena("warmup")
        self.reader = ArenaReader()

    def submit(self, method: str, args_per_shard: list[tuple]) -> list:
        results = []
        for state, args in zip(self.hosts.states, args_per_shard):
            path, encoded = self.writer.write(tuple(args))
            results.append(getattr(state, method)(*self.reader.read(path, encoded, copy=False)))
        return results

    def collect(self, handle: list) -> list:
        return handle

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


@ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
class ShardActor:
    def __init__(self, *args):
        warm_up(wrap_hosts=ArenaLoopback)  # compile what the arena-passed calls will need
        self.state = ShardState(*args)
        self.reader = ArenaReader()
        self.writer = Arena(f"s{self.state.shard_index}-out")
        self.seconds = collections.defaultdict(float)

    def reset(self, *args) -> bool:
        """A fresh shard state on this actor (a new run reusing a warm process)."""
        self.state = ShardState(*args)
        return True

    def ready(self) -> dict:
        return {"pid": __import__("os").getpid(), "node": ray.get_runtime_context().get_node_id()}

    def call(self, method: str, *args):
        assert method in SHARD_METHODS, method
        return getattr(self.state, method)(*args)

    def call_arena(self, method: str, path: str, encoded_args: tuple):
        assert method in SHARD_METHODS, method
        t0 = time.perf_counter()
        args = self.reader.read(path, encoded_args, copy=False)
        t1 = time.perf_counter()
        result = getattr(self.state, method)(*args)
        del args
        t2 = time.perf_counter()
        out = self.writer.write(result)
        t3 = time.perf_counter()
        self.seconds["decode"] += t1 - t0
        self.seconds[method] += t2 - t1
        self.seconds["encode"] += t3 - t2
        return out

    def timings(self) -> dict:
        """Seconds spent per phase since start: decode, each method, encode."""
        return dict(self.seconds)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()
