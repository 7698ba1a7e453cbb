"""Shared fixtures: one local Ray session per test module that asks for it."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ray_session():
    from actors.ray_hosts import start_ray, stop_ray

    stop_ray()
    start_ray(num_cpus=4, object_store_bytes=512 * 1024**2)
    yield
    stop_ray()


@pytest.fixture(scope="module")
def actor_pool(ray_session):
    """Five warm shard actors, reset for each run (actor start-up is seconds on 2 cores)."""
    import ray

    from actors.shard_actor import ShardActor
    from sim.durability import Durability
    from sim.warmup import warm_up

    warm_up()
    empty = np.zeros(0, np.uint64)
    actors = [ShardActor.options(num_cpus=0.01).remote(
        Durability(), 0, 1, empty, empty.astype(np.uint32), empty.astype(np.uint16), np.zeros(0, np.uint32), 100)
        for _ in range(5)]
    ray.get([a.ready.remote() for a in actors])
    yield actors
    for actor in actors:
        ray.kill(actor)
