"""Shards as Ray actors: session start-up on this box (or joining a cluster) and the hosts.

A local session binds to 127.0.0.1, has no dashboard, keeps Ray's token authentication on
(its default since 2.59) and is given explicit CPU and object-store sizes. ``--address`` or
``RAY_ADDRESS`` joins an existing cluster instead; nothing is started then.
"""

from __future__ import annotations

import os

import numpy as np
import ray

from sim.columns import Accounts
from sim.engine import check_shard_count
from sim.hashtable import shard_of
from sim.routing import as_bits

OBJECT_STORE_BYTES_DEFAULT = 2 * 1024**3
SHARD_CPUS = 1


def start_ray(address: str | None = None, num_cpus: int | None = None,
              object_store_bytes: int = OBJECT_STORE_BYTES_DEFAULT) -> dict:
    """Start (or join) Ray once per process; returns a description for the run summary."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return {"address": "already initialised", "local": address is None}
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        raise RuntimeError("RAY_AUTH_MODE=disabled: xpay keeps Ray's token authentication on")
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
        return {"address": address, "local": False}
    ray.init(
        num_cpus=num_cpus or os.cpu_count(),
        include_dashboard=False,
        object_store_memory=object_store_bytes,
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
        configure_logging=True,
        logging_level="warning",
    )
    return {"address": "local", "local": True, "node_ip": "127.0.0.1"}


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


class RayHosts:
    """One ShardActor per shard; calls submitted to all shards at once, collected together."""

    def __init__(self, accounts: Accounts, shard_count: int, window_epochs: int):
        from actors.shard_actor import ShardActor

        check_shard_count(shard_count)
        self.shard_count = shard_count
        ledger_values = np.unique(accounts.ledger)
        shard = shard_of(as_bits(accounts.id), shard_count)
        cpus = _shard_cpus(shard_count)
        self.actors = []
        for s in range(shard_count):
            mine = shard == s
            self.actors.append(ShardActor.options(num_cpus=cpus).remote(
                s, shard_count, accounts.id[mine], accounts.ledger[mine], accounts.flags[mine],
                ledger_values, window_epochs))
        ray.get([a.ready.remote() for a in self.actors])

    def submit(self, method: str, args_per_shard: list[tuple]) -> list:
        return [getattr(actor, method).remote(*args) for actor, args in zip(self.actors, args_per_shard)]

    def collect(self, handle: list) -> list:
        return ray.get(handle)

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _shard_cpus(shard_count: int) -> float:
    """Logical CPUs per shard actor: 1, or a fair share when shards outnumber the CPUs."""
    total = ray.cluster_resources().get("CPU", 1.0)
    return min(float(SHARD_CPUS), total / shard_count)
