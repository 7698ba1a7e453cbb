"""Shards as Ray actors: session start-up on this box (or joining a cluster) and the hosts.

A local session is a new Ray of its own (``address="local"``: a cluster already running on
the machine is not joined), with explicit CPU and object-store sizes, no dashboard UI, and
token authentication on: xpay sets RAY_AUTH_MODE=token itself and refuses any other value in
the environment unless the run is started with ``--unauthenticated``; the summary reports the
mode Ray actually runs with. Its node address stays 127.0.0.1, so GCS, raylet, workers, the
runtime-env agent and the autoscaler monitor listen on loopback only (see _loopback_only). Ray
2.60 still starts its API server (dashboard.py, non-dashboard modules only) and the dashboard
agent (the raylet refuses an empty agent command); neither listens beyond loopback.
``--address`` or ``RAY_ADDRESS`` joins an existing cluster instead, after checking within
seconds that the address accepts a connection; nothing is started then.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from multiprocessing.connection import AuthenticationError

import numpy as np
import ray
from ray.exceptions import RayActorError

from actors.faults import ACTOR_POINTS, DELAY_SECONDS, FaultPlan
from actors.transport import (
    Arena,
    ArenaReader,
    CallLines,
    LineLost,
    arenas_available,
    pack,
    remove_orphan_arenas,
    unpack,
)
from sim.durability import Durability, prepare_data_dir
from sim.columns import Accounts
from sim.engine import check_shard_count
from sim.errors import XpayError
from sim.hashtable import shard_of
from sim.routing import as_bits
from sim.shard_state import TableHint
from sim.warmup import warm_up
from sim.wire import APPLIED, DUPLICATE, SEQUENCED_CALLS, STALE, ShardReply, check_accepted

ON_LINE = "on the call line"  # a handle: the answer comes back on the shard's call line
OBJECT_STORE_BYTES_DEFAULT = 2 * 1024**3
# Shard actors spread over the cluster's nodes (Ray's SPREAD scheduling strategy: best effort,
# one node fills only when the others have no room); on one machine all land on it.
PLACEMENT = "SPREAD"
SHARD_CPUS = 1
AUTH_MODE_ENV = "RAY_AUTH_MODE"
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's name; "0": loopback node address
LOOPBACK = "127.0.0.1"
ADDRESS_CONNECT_TIMEOUT_S = 5.0  # a cluster address must accept a connection within this


class RayStartRefused(XpayError):
    """The Ray session cannot be started as asked (a refused setting: exit 2)."""

    exit_status = 2


class ClusterUnreachable(XpayError):
    """--address or RAY_ADDRESS names a cluster that does not answer (exit 1)."""


def cluster_address(address: str | None) -> str | None:
    """The cluster to join: --address, else $RAY_ADDRESS (blank means none), else None."""
    chosen = address if address is not None else os.environ.get("RAY_ADDRESS", "")
    return chosen.strip() or None


def check_cluster_address(address: str | None) -> None:
    """Fail in seconds, before any work, when a host:port cluster address accepts no connection
    (Ray itself waits minutes). "auto" and ray:// addresses are left to Ray."""
    if address is None or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnreachable(f"Ray cluster address {address!r} is not HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), ADDRESS_CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        raise ClusterUnreachable(
            f"no Ray cluster at {address} ({error.strerror or error}); check --address or"
            " RAY_ADDRESS, or leave both unset for a local Ray") from None


def check_ray_settings(address: str | None, authenticated: bool = True) -> None:
    """What start_ray would refuse, checked before any work: the authentication setting in
    the environment and a cluster address that answers."""
    _auth_mode_wanted(authenticated)
    check_cluster_address(cluster_address(address))


def _auth_mode_wanted(authenticated: bool) -> str:
    """The RAY_AUTH_MODE this run sets: token unless xpay was told --unauthenticated; any other
    value in the environment is refused rather than silently switching authentication off."""
    found = os.environ.get(AUTH_MODE_ENV)
    if authenticated and found is not None and found != "token":
        raise RayStartRefused(
            f"xpay keeps Ray's token authentication on unless you pass --unauthenticated;"
            f" {AUTH_MODE_ENV}={found!r} would switch it off (unset it or set it to token)")
    return "token" if authenticated else "disabled"


def _set_auth_mode(mode: str) -> None:
    """RAY_AUTH_MODE for this process and the ones Ray starts; Ray's cached configuration is
    re-read, as Ray itself does when it switches token mode on."""
    from ray._raylet import Config

    os.environ[AUTH_MODE_ENV] = mode
    Config.initialize("")


def _auth_mode_running() -> str:
    from ray._raylet import AuthenticationMode, get_authentication_mode

    return "token" if get_authentication_mode() == AuthenticationMode.TOKEN else "disabled"


def start_ray(address: str | None = None, num_cpus: int | None = None,
              object_store_bytes: int = OBJECT_STORE_BYTES_DEFAULT,
              authenticated: bool = True) -> dict:
    """Start (or join) Ray once per process; returns a description for the run summary.

    Without an address (nor RAY_ADDRESS) a new local Ray starts even when another cluster
    runs on this machine; its processes listen on loopback only (see the module docstring)."""
    address = cluster_address(address)
    if ray.is_initialized():
        return {"address": "already initialised", "local": address is None,
                "auth": _auth_mode_running()}
    _set_auth_mode(_auth_mode_wanted(authenticated))
    if address:
        check_cluster_address(address)
        if _is_loopback(address):
            _loopback_only()  # else Ray swaps 127.0.0.1 for this machine's routable address
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
        info = {"address": address, "local": False}
    else:
        _loopback_only()
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 object_store_memory=object_store_bytes, _node_ip_address=LOOPBACK,
                 log_to_driver=True, configure_logging=True, logging_level="warning")
        info = {"address": "local", "local": True,
                "node_ip": ray._private.worker.global_worker.node.node_ip_address}
    info["auth"] = _auth_mode_running()
    if authenticated and info["auth"] != "token":
        ray.shutdown()
        raise RayStartRefused(f"Ray runs with authentication {info['auth']!r}, not token")
    return info


def _is_loopback(address: str) -> bool:
    """A HOST:PORT address whose host is 127.0.0.0/8, ::1 or localhost."""
    host = address.rpartition(":")[0].strip("[]") if "://" not in address else ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _loopback_only() -> None:
    """Make a local Ray keep 127.0.0.1 as its node address, so that every server binds there.

    Ray 2.60 swaps a loopback _node_ip_address for the machine's routable one unless
    ray_constants.ENABLE_RAY_CLUSTER is false (services.resolve_ip_for_localhost and
    get_node_ip_address); its gRPC servers, runtime-env agent and autoscaler monitor then bind
    the node address instead of every interface. The environment variable carries the same
    setting to the processes Ray starts (read when they import ray)."""
    from ray._private import ray_constants

    os.environ[SINGLE_NODE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


class ShardLost(RuntimeError):
    """A shard actor died and cannot be brought back (no data dir, or it keeps dying)."""


RESTART_TIMEOUT_S = 300  # a restarted shard actor must answer within this


class RayHosts:
    concurrent = True
    """One ShardActor per shard; calls submitted to all shards at once, collected together.

    Bulk arrays go through shared-memory arenas for actors on the driver's node
    (actors.transport), through the object store otherwise; calls to the actors on the
    driver's node go down call lines (actors.transport), the others as Ray actor calls.
    Mutating calls carry sequence numbers (1, 2, ...); with a data dir a shard that dies is restarted by Ray, recovers from
    its snapshot and log, and is sent the call again (see recover()). A FaultPlan injects
    kills, delays, duplicates and stale batches at seeded points (actors.faults).
    """

    def __init__(self, accounts: Accounts, shard_count: int, window_epochs: int,
                 hint: TableHint = TableHint(), use_arenas: bool = True, reuse: list | None = None,
                 durability: Durability = Durability(), faults: FaultPlan | None = None,
                 fresh: bool = True):
        """reuse: live ShardActor handles to reset and use (at least shard_count; not killed).
        fresh: False resumes from the shards' files (xpay run --resume): the data dir is kept."""
        from actors.shard_actor import ShardActor

        check_shard_count(shard_count)
        self.shard_count = shard_count
        self.owned = reuse is None
        self.durability = durability
        self.faults = faults or FaultPlan()
        self.report = FaultReport()
        prepare_data_dir(durability, shard_count, fresh=fresh)
        remove_orphan_arenas()
        ledger_values = np.unique(accounts.ledger)
        shard = shard_of(as_bits(accounts.id), shard_count)
        per_shard = []
        for s in range(shard_count):
            mine = shard == s
            per_shard.append((durability, s, shard_count, accounts.id[mine], accounts.ledger[mine],
                              accounts.flags[mine], ledger_values, window_epochs, hint))
        restarts = -1 if durability.data_dir is not None else 0
        if reuse is None:
            warm_up()  # compile once here, so the actors load the kernels from numba's cache
            cpus = _shard_cpus(shard_count)
            self.actors = [ShardActor.options(num_cpus=cpus, max_restarts=restarts,
                                              scheduling_strategy=PLACEMENT).remote(*args)
                           for args in per_shard]
        else:
            assert len(reuse) >= shard_count, "not enough actors to reuse"
            assert durability.data_dir is None, "reused actors cannot be restarted from a data dir"
            self.actors = list(reuse[:shard_count])
            ray.get([a.reset.remote(*args) for a, args in zip(self.actors, per_shard)])
        info = _wait_ready(self.actors)
        self.pids = [i["pid"] for i in info]
        self.starts = [i["starts"] for i in info]
        seqs = {i["seq"] for i in info}
        if len(seqs) != 1:
            raise RuntimeError(f"the shards recovered to different calls: {sorted(seqs)}")
        self.seq = seqs.pop()  # 0 for a fresh run; the resumed call for --resume
        self.here = ray.get_runtime_context().get_node_id()
        self.use_arenas = use_arenas and arenas_available()
        self.nodes = [i["node"] for i in info]
        self.node_ips = [i["node_ip"] for i in info]
        self.writers = [Arena(f"s{s}-in") for s in range(shard_count)]
        self.readers = [ArenaReader() for _ in range(shard_count)]
        self._history = []  # the last two answered calls: (method, seq, args_per_shard)
        self._down_since = {}  # shard -> time.time() of its kill by the driver
        self.lines = CallLines(shard_count) if self.use_arenas else None
        for s in range(shard_count):
            self._open_line(s)

    # --- placement ----------------------------------------------------------------------------
    def _via_arena(self, s: int) -> bool:
        """Shard s shares the driver's node (and its /dev/shm): bulk arrays go through arenas."""
        return self.use_arenas and self.nodes[s] == self.here

    @property
    def transport(self) -> str:
        """"arena", "object_store", or "mixed" when only some shards share the driver's node."""
        kinds = {"arena" if self._via_arena(s) else "object_store" for s in range(self.shard_count)}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def _open_line(self, s: int) -> None:
        """A call line to shard s when it shares the driver's node (actors.transport). If it
        cannot be opened (the actor died again while restarting, say), shard s's calls go as
        Ray calls, which recover it as before."""
        if self.lines is None or not self._via_arena(s):
            return
        try:
            self.lines.open(s, lambda address, key: ray.get(self.actors[s].open_line.remote(address, key)))
        except (RayActorError, OSError, EOFError, AuthenticationError):
            self.lines.drop(s)

    @property
    def calls(self) -> str:
        """How calls reach the shards: "line" (actors.transport call lines), "ray" (actor
        calls) or "mixed" (lines to the shards on the driver's node)."""
        kinds = {"line" if self.lines is not None and self.lines.up(s) else "ray"
                 for s in range(self.shard_count)}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def placement(self) -> dict:
        """Where each shard runs (for summary.json): Ray node id and address, and its transport."""
        return {"strategy": PLACEMENT, "driver_node": self.here,
                "nodes": len(set(self.nodes)),
                "shards": [{"shard": s, "node": self.nodes[s], "node_ip": self.node_ips[s],
                            "pid": self.pids[s],
                            "transport": "arena" if self._via_arena(s) else "object_store"}
                           for s in range(self.shard_count)]}

    # --- sending and receiving ----------------------------------------------------------------
    def submit(self, method: str, args_per_shard: list[tuple]):
        seq = None
        if method in SEQUENCED_CALLS:
            self.seq += 1
            seq = self.seq
        order = sorted(range(self.shard_count), key=lambda s: (s, seq) in self.faults.delays)
        handles = [None] * self.shard_count
        for s in order:
            if (s, seq) in self.faults.delays:
                time.sleep(DELAY_SECONDS)  # the other shards already have theirs
                self.report.delays += 1
            point = self.faults.kills.get((s, seq)) if seq is not None else None
            die_at = point if point in ACTOR_POINTS else None
            if point == "during":  # kill it while it works on this call, not while it restarts
                self._until_alive(s, lambda s=s: self.actors[s].ready.remote(), None, raw=True)
            handles[s] = self._send(s, method, seq, args_per_shard[s], die_at)
            if point is not None:
                self.report.kills.append({"shard": s, "seq": seq, "point": point})
            if point == "during":
                self._kill(s)
        return (method, seq, args_per_shard, handles, time.perf_counter())

    def _send(self, s: int, method: str, seq, args: tuple, die_at=None):
        actor = self.actors[s]
        if not self._via_arena(s):
            return actor.call.remote(method, seq, die_at, *args)
        path, encoded = self.writers[s].write(tuple(args))
        message = pack(method, seq, die_at, path, encoded)
        if self.lines is not None and self.lines.up(s):
            try:
                self.lines.send(s, message)
                return ON_LINE
            except LineLost:
                pass  # the line is dropped: a Ray call, which a dead actor answers with an error
        return actor.call_arena.remote(message)

    def _receive(self, s: int, ref) -> ShardReply:
        answer = self.lines.receive(s) if ref is ON_LINE else ray.get(ref)
        if not isinstance(answer, ShardReply):  # packed (arena path, encoded): through its arena
            path, encoded = unpack(answer)
            answer = self.readers[s].read(path, encoded, copy=True)
        return answer

    def _kill(self, s: int) -> None:
        """Kill shard s's actor process now; Ray restarts it (fault injection)."""
        self.report.driver_kills += 1
        self._down_since.setdefault(s, time.time())
        ray.kill(self.actors[s], no_restart=False)

    def collect(self, handle) -> list:
        method, seq, args_per_shard, handles, submitted = handle
        results = []
        for s, ref in enumerate(handles):
            try:
                answer = self._receive(s, ref)
            except (RayActorError, LineLost) as error:
                answer = self.recover(s, method, seq, args_per_shard[s], error)
            if answer.pid != self.pids[s]:
                self._restarted(s, answer.pid, method, seq)
            self._check(s, seq, answer)
            results.append(answer.answer)
        for s in range(self.shard_count):
            if seq is not None and (s, seq) in self.faults.duplicates:
                self._offer_duplicate(s, method, seq, args_per_shard[s])
            if seq is not None and self.faults.kills.get((s, seq)) == "between":
                self._kill(s)
        if seq is not None:
            self._history = (self._history + [(method, seq, args_per_shard)])[-2:]
        return results

    def _check(self, s: int, seq, answer: ShardReply) -> None:
        check_accepted(s, seq, answer.outcome)
        if answer.outcome == DUPLICATE:
            self.report.resent_answered_from_cache += 1

    # --- recovery ------------------------------------------------------------------------------
    def recover(self, s: int, method: str, seq, args: tuple,
                error: Exception | None = None) -> ShardReply:
        """Shard s died with a call in flight: Ray restarts it (its constructor reloads the
        newest snapshot and replays its log), then the call is sent again; its sequence number
        makes that safe whether or not the dead incarnation had logged or applied it."""
        if self.durability.data_dir is None:
            raise ShardLost(f"shard {s} died ({type(error).__name__}) and there is no --data-dir to"
                            " recover it from; run with --data-dir DIR for durable shards")
        point = self.faults.kills.get((s, seq)) if seq is not None else None
        die_at = point if point in ACTOR_POINTS else None  # fires once: the shard marks it fired
        return self._until_alive(s, lambda: self._send(s, method, seq, args, die_at), error)

    def _until_alive(self, s: int, make_ref, error: Exception | None = None, raw: bool = False):
        """Send (make_ref()) and receive until shard s answers: a restarting actor refuses
        calls for a while ("The actor is restarting"), so retry with backoff up to
        RESTART_TIMEOUT_S. Safe because every mutating call carries its sequence number."""
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        wait = 0.05
        while True:
            try:
                return ray.get(make_ref()) if raw else self._receive(s, make_ref())
            except (RayActorError, LineLost) as again:
                error = again
                if getattr(again, "actor_init_failed", False):
                    raise ShardLost(f"shard {s} could not start again: {again}") from None
            if time.monotonic() > deadline:
                raise ShardLost(f"shard {s} did not come back within {RESTART_TIMEOUT_S} s: {error}")
            time.sleep(wait)
            wait = min(2 * wait, 1.0)

    def _restarted(self, s: int, pid: int, method: str, seq) -> None:
        """A new incarnation of shard s answered: record the recovery (from the kill, or from
        the failed call that revealed it, to this answer) and offer it a stale batch if asked."""
        info = self._until_alive(s, lambda: self.actors[s].ready.remote(), None, raw=True)
        remove_orphan_arenas()  # the dead incarnation's output arena
        down_since = self._down_since.pop(s, None)
        if info["previous_died_at"] is not None:
            down_since = info["previous_died_at"]  # it killed itself (a fault point) at that time
        self.pids[s] = pid
        self.nodes[s], self.node_ips[s] = info["node"], info["node_ip"]  # Ray may place it elsewhere
        self._open_line(s)  # the dead incarnation's line is gone
        restarts = max(info["starts"] - self.starts[s], 1)  # two deaths in a row show as one answer
        self.starts[s] = info["starts"]
        self.report.recoveries.append({
            "shard": s, "seq": seq, "method": method, "restarts": restarts,
            "seconds": time.time() - down_since if down_since is not None else None,
            "replayed": info["replayed"], "snapshot_seq": info["snapshot_seq"],
            "actor_start_seconds": info["start_seconds"], "log_recovery_seconds": info["recovery_seconds"]})
        if self.report.stale_offered < self.faults.stale_after_restart and len(self._history) == 2:
            self._offer_stale(s)

    def _offer_duplicate(self, s: int, method: str, seq: int, args: tuple) -> None:
        self.report.duplicates_offered += 1
        try:
            answer = self._receive(s, self._send(s, method, seq, args))
        except (RayActorError, LineLost):
            return  # it died in between (a planned kill); recovery covers it on the next call
        if answer.outcome == APPLIED:
            self.report.duplicates_applied += 1

    def _offer_stale(self, s: int) -> None:
        """Offer shard s the call before the last one it answered: it must refuse it."""
        method, seq, args_per_shard = self._history[0]
        self.report.stale_offered += 1
        answer = self._until_alive(s, lambda: self._send(s, method, seq, args_per_shard[s]))
        if answer.outcome != STALE:
            self.report.stale_applied += 1

    def count_faults(self) -> None:
        """Ask every shard how many times it was started and killed itself (its own counters,
        kept in its data folder), so the report counts kills that happened and restarts."""
        if self.durability.data_dir is None:
            return
        infos = [self._until_alive(s, lambda s=s: self.actors[s].ready.remote(), None, raw=True)
                 for s in range(self.shard_count)]
        self.report.self_kills = sum(i["self_kills"] for i in infos)
        self.report.restarts = sum(i["starts"] - 1 for i in infos)

    def durability_stats(self) -> list[dict]:
        return ray.get([a.durability_stats.remote() for a in self.actors])

    def close(self) -> None:
        if self.lines is not None:
            self.lines.close()
            self.lines = None
        if self.actors:
            try:
                ray.get([a.close.remote() for a in self.actors])
            except RayActorError:
                pass
        for actor in self.actors if self.owned else []:
            ray.kill(actor)
        for arena in self.writers:
            arena.close()
        for reader in self.readers:
            reader.close()
        self.actors = []
        remove_orphan_arenas()  # those of killed incarnations (they could not unlink theirs)


@dataclass
class FaultReport:
    """What a run's faults did: the numbers the bank test reports."""

    kills: list = field(default_factory=list)  # {"shard", "seq", "point"} as planned and sent
    driver_kills: int = 0  # ray.kill calls made (during / between)
    self_kills: int = 0  # actor-point kills that happened (count_faults)
    restarts: int = 0  # actor processes started after the first, all shards (count_faults)
    recoveries: list = field(default_factory=list)
    delays: int = 0
    duplicates_offered: int = 0
    duplicates_applied: int = 0  # must stay 0
    stale_offered: int = 0
    stale_applied: int = 0  # must stay 0
    resent_answered_from_cache: int = 0  # re-sent calls the restarted shard had already logged

    def summary(self) -> dict:
        seconds = sorted(r["seconds"] for r in self.recoveries if r["seconds"] is not None)
        return {
            "kills_planned": len(self.kills), "kills": self.driver_kills + self.self_kills,
            "recoveries": self.restarts, "recovery_events": len(self.recoveries),
            "recovery_seconds_p50": float(np.percentile(seconds, 50)) if seconds else None,
            "recovery_seconds_p99": float(np.percentile(seconds, 99)) if seconds else None,
            "recovery_seconds_max": seconds[-1] if seconds else None,
            "delays": self.delays, "duplicates_offered": self.duplicates_offered,
            "duplicates_applied": self.duplicates_applied, "stale_offered": self.stale_offered,
            "stale_applied": self.stale_applied, "resent_answered_from_cache": self.resent_answered_from_cache,
        }


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
