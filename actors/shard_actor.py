"""The Ray actor that hosts one shard's state (sim.shard_state.ShardState) and its kernels.

It holds no logic of its own: every method forwards to the shard state, so the in-process
engine and the Ray engine run the same code. One synchronous actor per shard and a single
submitter keep each shard's calls in order.
"""

from __future__ import annotations

import ray

from sim.shard_state import ShardState


@ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
class ShardActor:
    def __init__(self, *args):
        self.state = ShardState(*args)

    def ready(self) -> bool:
        return True

    def begin_epoch(self, *args):
        return self.state.begin_epoch(*args)

    def evaluate(self, *args):
        return self.state.evaluate(*args)

    def finish(self, *args):
        return self.state.finish(*args)

    def final_state(self):
        return self.state.final_state()
