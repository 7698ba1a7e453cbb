"""The Ray actor that hosts one shard's state (sim.shard_state.ShardState) and its kernels.

It holds no ledger logic of its own: every call forwards to the shard state, so the
in-process engine and the Ray engine run the same code. One synchronous actor per shard and a
single submitter keep each shard's calls in order. ``call_arena`` is the same call with its
bulk arrays passed through shared-memory arenas (actors.transport) instead of the object
store, for actors on the driver's node.

Every mutating call carries a sequence number and goes through sim.durability.DurableShard:
logged before it is applied (with a data dir), applied once, a repeat answered from cache, an
older call refused. Ray restarts a killed actor (max_restarts=-1 when there is a data dir);
its constructor, run again with the same arguments, reloads the newest snapshot and replays
the log, and the coordinator re-sends what it had in flight (actors.ray_hosts).
"""

from __future__ import annotations

import collections
import gc
import os
import threading
import time

import ray

from actors.faults import DEATH_NOTE, FAULT_MARKER_PREFIX, SELF_KILLS_FILE, STARTS_FILE
from actors.transport import Arena, ArenaReader, pack, serve_line, unpack
from sim.durability import Durability, DurableShard
from sim.shard_state import ShardState
from sim.warmup import warm_up
from sim.wire import READ, SEQUENCED_CALLS, SHARD_CALLS, ShardReply

KILLED_EXIT_STATUS = 137


class ArenaLoopback:
    """In-process hosts whose arguments make a round trip through an arena, as in call_arena."""

    def __init__(self, hosts):
        self.hosts = hosts
        self.shard_count = hosts.shard_count
        self.concurrent = hosts.concurrent
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


def _die_at(wanted: str | None, folder):
    """The fault hook of one call: this process exits at the named point (fault injection),
    leaving the time of death for its next incarnation to report (recovery time). Each
    planned kill fires once: a marker in the data folder stops it firing again when the call
    is sent again after the restart."""
    if wanted is None or folder is None:
        return None

    def fault(point: str, seq: int, method: str) -> None:
        if point == wanted:
            marker = folder / f"{FAULT_MARKER_PREFIX}{seq}-{point}"
            if marker.exists():
                return
            marker.write_text("fired\n")
            if folder is not None:
                (folder / DEATH_NOTE).write_text(f"{time.time():.6f}\n")
                _bump(folder / SELF_KILLS_FILE)
            os._exit(KILLED_EXIT_STATUS)
    return fault


def _count(path) -> int:
    """A counter in one of our own files (one integer), 0 when absent."""
    try:
        return int(path.read_text().strip()) if path.exists() else 0
    except ValueError:
        return 0


def _bump(path) -> int:
    count = _count(path) + 1
    path.write_text(f"{count}\n")
    return count


def _count_start(folder) -> int:
    """This incarnation's number (1 for the first process to host the shard in this run), so
    the driver counts every restart, even two in a row it saw as one."""
    return 1 if folder is None else _bump(folder / STARTS_FILE)


def _read_death_note(folder) -> float | None:
    """The time of a fault-injected death of the previous incarnation (our own file: one
    decimal number), removed once read."""
    if folder is None or not (folder / DEATH_NOTE).exists():
        return None
    path = folder / DEATH_NOTE
    try:
        return float(path.read_text().strip())
    except ValueError:
        return None
    finally:
        path.unlink()


@ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
class ShardActor:
    def __init__(self, durability: Durability, *args):
        started = time.perf_counter()
        warm_up(wrap_hosts=ArenaLoopback)  # compile what the arena-passed calls will need
        self.durable = DurableShard(ShardState(*args), durability)  # recovers from its files, if any
        self.state = self.durable.state
        self.died_at = _read_death_note(self.durable.folder)
        self.starts = _count_start(self.durable.folder)
        self.reader = ArenaReader()
        self.writer = Arena(f"s{self.state.shard_index}-out")
        self.seconds = collections.defaultdict(float)
        self.calls = threading.Lock()  # Ray's thread or the call line's: one call at a time
        self.start_seconds = time.perf_counter() - started
        gc.freeze()  # see sim.engine.Engine.run: no full collection walks the start-up heap

    def reset(self, durability: Durability, *args) -> bool:
        """A fresh shard state on this actor (a new run reusing a warm process)."""
        self.durable.close()
        self.state.close()  # its id log's file now, not at the next garbage collection
        self.durable = DurableShard(ShardState(*args), durability)
        self.state = self.durable.state
        return True

    def ready(self) -> dict:
        stats = self.durable.stats
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "node_ip": ray.util.get_node_ip_address(), "seq": self.durable.seq,
                "recovered": stats.recovered, "replayed": stats.replayed, "snapshot_seq": stats.snapshot_seq,
                "recovery_seconds": stats.recovery_seconds, "start_seconds": self.start_seconds, "previous_died_at": self.died_at,
                "starts": self.starts,
                "self_kills": 0 if self.durable.folder is None else _count(self.durable.folder / SELF_KILLS_FILE)}

    def _apply(self, method: str, seq: int | None, args: tuple, die_at: str | None) -> ShardReply:
        if method not in SHARD_CALLS:
            calls = ", ".join(sorted(SHARD_CALLS))
            raise ValueError(f"{method!r} is not a shard call (those are {calls})")
        if method not in SEQUENCED_CALLS:
            answer = getattr(self.state, method)(*args)
            return ShardReply(READ, self.durable.seq, os.getpid(), answer)
        self.durable.fault = _die_at(die_at, self.durable.folder)
        try:
            outcome, result = self.durable.apply(seq, method, args)
        finally:
            self.durable.fault = None
        return ShardReply(outcome, self.durable.seq, os.getpid(), result)

    def call(self, method: str, seq: int | None, die_at: str | None, *args):
        with self.calls:
            return self._apply(method, seq, args, die_at)

    def open_line(self, address: str, authkey: bytes) -> bool:
        """Listen for the driver's call line at address (actors.transport); its calls are
        call_arena's."""
        serve_line(address, authkey, self.call_arena)
        return True

    def call_arena(self, message: bytes) -> bytes:
        """call() with its arguments in this shard's input arena; message: the packed
        (method, seq, die_at, arena path, encoded arguments); the answer goes back the same
        way, packed (arena path, encoded answer)."""
        with self.calls:
            return self._call_arena(message)

    def _call_arena(self, message: bytes) -> bytes:
        t0 = time.perf_counter()
        method, seq, die_at, path, encoded_args = unpack(message)
        args = self.reader.read(path, encoded_args, copy=False)
        t1 = time.perf_counter()
        answer = self._apply(method, seq, args, die_at)
        del args
        t2 = time.perf_counter()
        out = pack(*self.writer.write(answer))
        t3 = time.perf_counter()
        self.seconds["decode"] += t1 - t0
        self.seconds[method] += t2 - t1
        self.seconds["encode"] += t3 - t2
        return out

    def timings(self) -> dict:
        """Seconds spent per phase since start: decode, each method, encode."""
        return dict(self.seconds)

    def durability_stats(self) -> dict:
        from dataclasses import asdict

        return asdict(self.durable.stats)

    def close(self) -> None:
        self.durable.close()
        self.reader.close()
        self.writer.close()
