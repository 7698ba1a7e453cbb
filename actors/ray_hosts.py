"""Shards as Ray actors: session start-up on this box (or joining a cluster) and the hosts.

A local session has no dashboard, keeps Ray's token authentication on (its default since
2.59; a run refuses RAY_AUTH_MODE=disabled) and is given explicit CPU and object-store sizes.
It asks for 127.0.0.1, but Ray 2.60 swaps a loopback node address for the machine's own and
its GCS and raylet listen on every interface: token authentication is what guards them. ``--address`` or
``RAY_ADDRESS`` joins an existing cluster instead; nothing is started then.
"""

from __future__ import annotations

import os

import numpy as np
import ray

from actors.transport import Arena, ArenaReader, arenas_available
from sim.columns import Accounts
from sim.engine import check_shard_count
from sim.hashtable import shard_of
from sim.routing import as_bits
from sim.shard_state import TableHint
from sim.warmup import warm_up

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
    return {"address": "local", "local": True,
            "node_ip": ray._private.worker.global_worker.node.node_ip_address, "auth": "token"}


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


class RayHosts:
    """One ShardActor per shard; calls submitted to all shards at once, collected together.

    Bulk arrays go through shared-memory arenas for actors on the driver's node
    (actors.transport), through the object store otherwise.
    """

    def __init__(self, accounts: Accounts, shard_count: int, window_epochs: int,
                 hint: TableHint = TableHint(), use_arenas: bool = True, reuse: list | None = None):
        """reuse: live ShardActor handles to reset and use (at least shard_count; not killed)."""
        from actors.shard_actor import ShardActor

        check_shard_count(shard_count)
        self.shard_count = shard_count
        self.owned = reuse is None
        ledger_values = np.unique(accounts.ledger)
        shard = shard_of(as_bits(accounts.id), shard_count)
        per_shard = []
        for s in range(shard_count):
            mine = shard == s
            per_shard.append((s, shard_count, accounts.id[mine], accounts.ledger[mine], accounts.flags[mine],
                              ledger_values, window_epochs, hint))
        if reuse is None:
            warm_up()  # compile once here, so the actors load the kernels from numba's cache
            cpus = _shard_cpus(shard_count)
            self.actors = [ShardActor.options(num_cpus=cpus).remote(*args) for args in per_shard]
        else:
            assert len(reuse) >= shard_count, "not enough actors to reuse"
            self.actors = list(reuse[:shard_count])
            ray.get([a.reset.remote(*args) for a, args in zip(self.actors, per_shard)])
        info = _wait_ready(self.actors)
        self.pids = [i["pid"] for i in info]
        here = ray.get_runtime_context().get_node_id()
        local = all(i["node"] == here for i in info)
        self.transport = "arena" if use_arenas and local and arenas_available() else "object_store"
        self.writers = [Arena(f"s{s}-in") for s in range(shard_count)]
        self.readers = [ArenaReader() for _ in range(shard_count)]

    def submit(self, method: str, args_per_shard: list[tuple]) -> list:
        if self.transport == "object_store":
            return [a.call.remote(method, *args) for a, args in zip(self.actors, args_per_shard)]
        handles = []
        for actor, writer, args in zip(self.actors, self.writers, args_per_shard):
            path, encoded = writer.write(tuple(args))
            handles.append(actor.call_arena.remote(method, path, encoded))
        return handles

    def collect(self, handle: list) -> list:
        results = ray.get(handle)
        if self.transport == "object_store":
            return results
        return [reader.read(path, encoded, copy=True) for reader, (path, encoded) in zip(self.readers, results)]

    def close(self) -> None:
        if self.actors:
            ray.get([a.close.remote() for a in self.actors])
        for actor in self.actors if self.owned else []:
            ray.kill(actor)
        for arena in self.writers:
            arena.close()
        for reader in self.readers:
            reader.close()
        self.actors = []


ACTOR_START_TIMEOUT_S = 300


def _shard_cpus(shard_count: int) -> float:
    """Logical CPUs per shard actor: 1, or a fair share when shards outnumber the CPUs (the
    engine deliberately runs K actors on fewer cores; they take turns). One share is left
    over so a run never waits on CPUs that another small actor holds; actors that wait for
    a killed run's CPUs to come back start once they do (see _wait_ready)."""
    total = ray.cluster_resources().get("CPU", 0.0)
    if total <= 0:
        raise RuntimeError("the Ray cluster has no CPUs to place shard actors on")
    return min(float(SHARD_CPUS), total / (shard_count + 1))


def _wait_ready(actors: list) -> list:
    handles = [a.ready.remote() for a in actors]
    done, waiting = ray.wait(handles, num_returns=len(handles), timeout=ACTOR_START_TIMEOUT_S)
    if waiting:
        raise RuntimeError(f"{len(waiting)} of {len(actors)} shard actors did not start within"
                           f" {ACTOR_START_TIMEOUT_S} s (check the cluster's free CPUs and memory)")
    return ray.get(handles)
