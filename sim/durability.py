"""A shard's durability: sequence numbers, a write-ahead log of every call, snapshots, recovery.

A shard's state is a deterministic function of the calls it has applied, in order (the epoch
rules of LEDGER_SPEC.md need nothing else: no clocks, no randomness). So:

- every mutating call carries a sequence number (1, 2, 3, ... the same on every shard, since
  the coordinator sends each call to every shard);
- ``DurableShard.apply`` logs the call before applying it (write-ahead), applies a call only
  when its number is the next one, answers a repeat of the last call from its cached result
  (a duplicate is never applied twice) and refuses an older one (a stale batch);
- every ``snapshot_every`` calls it writes the state it had before the call (four balance
  columns, sums, the idempotency window, pending records, the expiry heap) and starts a new
  log segment;
- a restarted shard loads its newest snapshot and replays the log after it: the result is the
  same state, bit for bit, and the same last result, so the coordinator can simply re-send
  whatever it had in flight.

Files under ``DATA_DIR/shard-NNN/`` (Arrow only; nothing is ever unpickled):

- ``wal-<first seq>-<tag>.arrows``: an Arrow IPC stream, one record batch per call (its
  arguments flattened into items, arrays as raw bytes with dtype and shape). A write cut
  short by a kill leaves a torn last batch, which recovery ignores (that call was never
  acknowledged, so the coordinator sends it again);
- ``snapshot-<seq>.arrow``: an Arrow IPC file of the state after call ``seq``, written to a
  temporary name, fsynced and renamed. The two newest snapshots are kept with every log
  segment after the older one, so a crashed driver can roll its shards back a call or two
  (``truncate_after``).

fsync policy: ``"off"`` leaves log writes to the page cache (they survive any process kill,
not a machine crash); ``"call"`` fsyncs each log record before the call is applied.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from sim.errors import InputRefused
from sim.shard_state import begin_epoch_steps
from sim.wire import (
    APPLIED,
    BEGIN_EPOCH,
    COMMIT_PAYLOAD_ARRAYS,
    DUPLICATE,
    SEQUENCED_CALLS,
    STALE,
    CommitPayload,
)

FSYNC_POLICIES = ("off", "call")
SNAPSHOT_EVERY_CALLS_DEFAULT = 32  # 16 epochs at two calls per epoch
SNAPSHOTS_KEPT = 2
WAL_PREFIX, WAL_SUFFIX = "wal-", ".arrows"
SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX = "snapshot-", ".arrow"

ITEM_SCHEMA = pa.schema([
    ("seq", pa.int64()),
    ("method", pa.string()),
    ("name", pa.string()),
    ("kind", pa.string()),  # none | int | array | commit
    ("dtype", pa.string()),
    ("shape", pa.list_(pa.int64())),
    ("value", pa.int64()),
    ("data", pa.large_binary()),
])



class DataDirRefused(InputRefused):
    """--data-dir names a folder xpay did not make (exit 2; nothing in it is touched)."""


class DurabilityError(RuntimeError):
    """The log or snapshots cannot give back a shard's state (a gap, a missing call)."""


@dataclass(frozen=True)
class Durability:
    """Where and how a shard keeps its log and snapshots (None data_dir: in memory only)."""

    data_dir: str | None = None
    fsync: str = "off"
    snapshot_every: int = SNAPSHOT_EVERY_CALLS_DEFAULT

    def __post_init__(self):
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync(={self.fsync!r}) must be one of {', '.join(FSYNC_POLICIES)}")
        if self.snapshot_every < 4:
            raise ValueError(f"snapshot_every(={self.snapshot_every}) must be >= 4 calls")

    def shard_dir(self, shard_index: int) -> Path | None:
        return None if self.data_dir is None else Path(self.data_dir) / f"shard-{shard_index:03d}"


# --- flattening a call's arguments into items -------------------------------------------------
def _items(value, name: str, out: list) -> None:
    if value is None:
        out.append((name, "none", "", [], 0, b""))
    elif isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: booleans are not logged")
    elif isinstance(value, (int, np.integer)):
        out.append((name, "int", "", [], int(value), b""))
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        out.append((name, "array", array.dtype.str, list(array.shape), 0, array))
    elif isinstance(value, CommitPayload):
        out.append((name, "commit", "", [], int(value.epoch), b""))
        for part in COMMIT_PAYLOAD_ARRAYS:
            _items(getattr(value, part), f"{name}.{part}", out)
    else:
        raise TypeError(f"{name}: cannot log a {type(value).__name__}")


def items_batch(seq: int, method: str, named: list[tuple[str, object]]) -> pa.RecordBatch:
    """One record batch holding every named value (arrays as raw bytes)."""
    items: list = []
    for name, value in named:
        _items(value, name, items)
    sizes = [it[5].nbytes if isinstance(it[5], np.ndarray) else 0 for it in items]
    offsets = np.zeros(len(items) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = np.empty(int(offsets[-1]), np.uint8)
    for it, start, size in zip(items, offsets[:-1], sizes):
        if size:
            data[start:start + size] = it[5].reshape(-1).view(np.uint8)
    blobs = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(items), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    n = len(items)
    return pa.record_batch([
        pa.array([seq] * n, pa.int64()), pa.array([method] * n, pa.string()),
        pa.array([it[0] for it in items], pa.string()), pa.array([it[1] for it in items], pa.string()),
        pa.array([it[2] for it in items], pa.string()), pa.array([it[3] for it in items], pa.list_(pa.int64())),
        pa.array([it[4] for it in items], pa.int64()), blobs,
    ], schema=ITEM_SCHEMA)


def batch_values(batch: pa.RecordBatch) -> tuple[int, str, list[tuple[str, object]]]:
    """(seq, method, [(name, value)]) of a batch written by items_batch; arrays come back as
    writable copies (the kernels' compiled signatures take writable arrays)."""
    if batch.num_rows == 0:
        raise DurabilityError("an empty log record")
    seqs = batch.column("seq").to_numpy()
    methods = batch.column("method").to_pylist()
    names = batch.column("name").to_pylist()
    kinds = batch.column("kind").to_pylist()
    dtypes = batch.column("dtype").to_pylist()
    shapes = batch.column("shape").to_pylist()
    values = batch.column("value").to_pylist()
    blobs = batch.column("data")
    out: list[tuple[str, object]] = []
    i = 0
    n = batch.num_rows

    def array_at(j: int) -> np.ndarray:
        raw = blobs[j].as_buffer()
        return np.frombuffer(raw, np.dtype(dtypes[j])).reshape(shapes[j]).copy()

    while i < n:
        kind = kinds[i]
        if kind == "none":
            out.append((names[i], None))
            i += 1
        elif kind == "int":
            out.append((names[i], int(values[i])))
            i += 1
        elif kind == "array":
            out.append((names[i], array_at(i)))
            i += 1
        elif kind == "commit":
            parts = {part: array_at(i + 1 + p) for p, part in enumerate(COMMIT_PAYLOAD_ARRAYS)}
            out.append((names[i], CommitPayload(int(values[i]), **parts)))
            i += 1 + len(COMMIT_PAYLOAD_ARRAYS)
        else:
            raise DurabilityError(f"log item {names[i]!r}: unknown kind {kind!r}")
    return int(seqs[0]), methods[0], out


# --- the log ---------------------------------------------------------------------------------
class WalWriter:
    """Appends call records to one new segment (an Arrow IPC stream) of a shard's log."""

    def __init__(self, folder: Path, first_seq: int, fsync: str):
        self.path = folder / f"{WAL_PREFIX}{first_seq:012d}-{uuid.uuid4().hex[:8]}{WAL_SUFFIX}"
        self.fsync = fsync
        self._sink = open(self.path, "wb")
        self._writer = pa.ipc.new_stream(self._sink, ITEM_SCHEMA)
        self.bytes = 0
        if fsync == "call":
            fsync_dir(folder)  # the new file's name is durable before any record in it

    def append(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self._sink.flush()
        if self.fsync == "call":
            os.fsync(self._sink.fileno())
        self.bytes += batch.nbytes

    def close(self) -> None:
        if self._sink is not None:
            self._writer.close()
            self._sink.close()
            self._sink = None


def _segment_first_seq(path: Path) -> int:
    return int(path.name[len(WAL_PREFIX):].split("-")[0])


def wal_segments(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{WAL_PREFIX}*{WAL_SUFFIX}"), key=lambda p: (_segment_first_seq(p), p.name))


def read_segment(path: Path):
    """Yield the complete record batches of one segment; a torn tail (a write cut short) ends it."""
    try:
        with open(path, "rb") as f:
            reader = pa.ipc.open_stream(f)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                yield batch
    except (pa.ArrowInvalid, OSError, EOFError):
        return  # torn: the rest was never acknowledged


def read_log(folder: Path, after_seq: int, segments: list[Path] | None = None):
    """Every logged call after after_seq, in order, each once; a gap is an error."""
    expected = after_seq + 1
    for path in wal_segments(folder) if segments is None else segments:
        for batch in read_segment(path):
            seq, method, named = batch_values(batch)
            if seq < expected:
                continue  # logged again by a later incarnation, or covered by the snapshot
            if seq > expected:
                raise DurabilityError(f"{folder}: the log jumps from call {expected - 1} to {seq}")
            yield seq, method, [v for _, v in named]
            expected += 1


# --- snapshots -------------------------------------------------------------------------------
def snapshot_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{SNAPSHOT_PREFIX}*{SNAPSHOT_SUFFIX}"), key=_snapshot_seq)


def _snapshot_seq(path: Path) -> int:
    return int(path.name[len(SNAPSHOT_PREFIX):-len(SNAPSHOT_SUFFIX)])


def write_snapshot(folder: Path, seq: int, named: list[tuple[str, object]], fsync: bool = True) -> Path:
    """Written to a temporary name and renamed, so a kill leaves the old snapshot or the new
    one; fsync (the "call" policy) also makes it survive a machine crash before the log it
    replaces is pruned. Under "off" the log is not fsynced either, so neither is this."""
    path = folder / f"{SNAPSHOT_PREFIX}{seq:012d}{SNAPSHOT_SUFFIX}"
    tmp = path.with_name(path.name + ".tmp")
    batch = items_batch(seq, "snapshot", named)
    with open(tmp, "wb") as sink:
        with pa.ipc.new_file(sink, ITEM_SCHEMA) as writer:
            writer.write_batch(batch)
        if fsync:
            sink.flush()
            os.fsync(sink.fileno())
    tmp.replace(path)
    if fsync:
        fsync_dir(folder)
    return path


def read_snapshot(path: Path) -> tuple[int, dict]:
    with pa.memory_map(str(path), "r") as source:
        reader = pa.ipc.open_file(source)
        if reader.num_record_batches != 1:
            raise DurabilityError(f"{path}: a snapshot holds one record batch")
        seq, _, named = batch_values(reader.get_batch(0))
    return seq, dict(named)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def truncate_after(folder: Path, seq: int) -> None:
    """Roll a shard's files back to the state after call seq (a resumed driver's last
    durable epoch): snapshots past it go, log records past it are cut. Nothing is removed
    unless the files do reach call seq. Waits for the folder's lock (a crashed run's shard
    processes may still be dying)."""
    lock = FolderLock(folder, holder="a shard process of the crashed run")
    try:
        _truncate_after(folder, seq)
    finally:
        lock.release()


def _truncate_after(folder: Path, seq: int) -> None:
    kept = [p for p in snapshot_paths(folder) if _snapshot_seq(p) <= seq]
    base = _snapshot_seq(kept[-1]) if kept else 0
    old = wal_segments(folder)
    have = base
    for call_seq, _, _ in read_log(folder, base, old):
        if call_seq > seq:
            break
        have = call_seq
    if have < seq:
        raise DurabilityError(f"{folder}: the log ends at call {have}, before call {seq}")
    writer = WalWriter(folder, base + 1, "call")
    try:
        for call_seq, method, values in read_log(folder, base, old):
            if call_seq > seq:
                break
            writer.append(items_batch(call_seq, method, [(str(i), v) for i, v in enumerate(values)]))
    finally:
        writer.close()
    for path in old:
        path.unlink()
    for path in snapshot_paths(folder):
        if _snapshot_seq(path) > seq:
            path.unlink()
    fsync_dir(folder)


# --- one process per folder ------------------------------------------------------------------
LOCK_FILE = "lock"
LOCK_WAIT_S = 120.0


class FolderLock:
    """An exclusive flock on FOLDER/lock: one process at a time keeps files in a folder (a
    restarted shard waits for its killed predecessor, whose lock goes with its process; two
    drivers cannot share a data dir)."""

    def __init__(self, folder: Path, wait_s: float = LOCK_WAIT_S, holder: str = "another process"):
        self.fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise DurabilityError(f"{folder} is in use by {holder} (waited {wait_s:.0f} s)") from None
                time.sleep(0.05)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# --- the durable shard ------------------------------------------------------------------------
@dataclass
class DurableStats:
    applied: int = 0  # calls applied by this incarnation (replayed ones excluded)
    duplicates_answered: int = 0  # repeats of the last call answered from its cached result
    stale_refused: int = 0  # older calls refused
    replayed: int = 0  # calls replayed from the log at start-up
    snapshot_seq: int = 0  # the snapshot recovery started from (0: none)
    recovery_seconds: float = 0.0
    snapshots_written: int = 0
    snapshot_seconds: float = 0.0  # on the calls' path: copying the state out
    snapshot_write_seconds: float = 0.0  # in the background: writing it and pruning the log
    wal_bytes: int = 0
    recovered: bool = False


def _no_fault(point: str, seq: int, method: str) -> None:
    """The fault point of a replayed call: replay never injects faults."""


class DurableShard:
    """A ShardState behind sequence numbers, a write-ahead log and snapshots.

    Fault points: ``fault(point, seq, method)`` is called at "received", "logged", "committed"
    (begin_epoch only, between its two steps) and "applied" of every applied call; it may
    kill the process (actors.shard_actor) or raise (tests). Without a hook nothing is called;
    either way the shard runs the same steps (``_run``), so a planned kill interrupts exactly
    the code that runs without faults. Replay at recovery runs the same steps, with no hook.
    """

    def __init__(self, state, durability: Durability = Durability(), fault=None):
        """fault(point, seq, method): called at each fault point (fault injection; may exit)."""
        self.state = state
        self.durability = durability
        self.folder = durability.shard_dir(state.shard_index)
        self.fault = fault
        self.seq = 0
        self.last_result = None
        self.stats = DurableStats()
        self.writer: WalWriter | None = None
        self.lock = None
        self._snapshotting: threading.Thread | None = None  # the snapshot being written
        self._snapshot_error: BaseException | None = None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.lock = FolderLock(self.folder, holder="another shard process")
            self._recover()

    def _recover(self) -> None:
        started = time.perf_counter()
        snapshots = snapshot_paths(self.folder)
        if snapshots:
            self.seq, arrays = read_snapshot(snapshots[-1])
            self.state.restore(arrays)
            self.stats.snapshot_seq = self.seq
            self.stats.recovered = True
        for seq, method, values in read_log(self.folder, self.seq):
            self.last_result = self._run(seq, method, tuple(values), _no_fault)
            self.seq = seq
            self.stats.replayed += 1
            self.stats.recovered = True
        self.stats.recovery_seconds = time.perf_counter() - started

    def apply(self, seq: int, method: str, args: tuple) -> tuple[str, object]:
        """(APPLIED | DUPLICATE | STALE, answer): see the module docstring."""
        if method not in SEQUENCED_CALLS:
            calls = ", ".join(SEQUENCED_CALLS)
            raise ValueError(f"{method!r} is not a sequenced call (those are {calls})")
        if seq == self.seq and self.last_result is not None:
            self.stats.duplicates_answered += 1
            return DUPLICATE, self.last_result
        if seq <= self.seq:
            self.stats.stale_refused += 1
            return STALE, None
        if seq != self.seq + 1:
            raise DurabilityError(f"shard {self.state.shard_index}: call {seq} arrived after call"
                                  f" {self.seq}; calls {self.seq + 1}..{seq - 1} are missing")
        self._point("received", seq, method)
        if self.folder is not None:
            self._log(seq, method, args)
        self._point("logged", seq, method)
        result = self._run(seq, method, args, self._point)
        self.seq = seq
        self.last_result = result
        self.stats.applied += 1
        self._point("applied", seq, method)
        return APPLIED, result

    def _run(self, seq: int, method: str, args: tuple, point) -> object:
        """The call on the state; begin_epoch with the "committed" point between its two steps."""
        if method != BEGIN_EPOCH:
            return getattr(self.state, method)(*args)
        return begin_epoch_steps(self.state, args, between=lambda: point("committed", seq, method))

    def _point(self, point: str, seq: int, method: str) -> None:
        if self.fault is not None:
            self.fault(point, seq, method)

    def _log(self, seq: int, method: str, args: tuple) -> None:
        if self.writer is None or (seq > 1 and (seq - 1) % self.durability.snapshot_every == 0):
            self._rotate(seq)
        batch = items_batch(seq, method, [(str(i), v) for i, v in enumerate(args)])
        self.writer.append(batch)
        self.stats.wal_bytes += batch.nbytes

    def _rotate(self, seq: int) -> None:
        """Snapshot the state before call seq (when it is a snapshot point), start a segment."""
        if self.writer is not None:
            self.writer.close()
        if seq > 1 and (seq - 1) % self.durability.snapshot_every == 0 and self.seq == seq - 1:
            self._finish_snapshot()
            started = time.perf_counter()
            named = self.state.snapshot(detached=True)  # copies: the calls go on meanwhile
            self.stats.snapshot_seconds += time.perf_counter() - started
            self._snapshotting = threading.Thread(
                target=self._write_snapshot, args=(seq - 1, named), name="xpay-snapshot", daemon=True)
            self._snapshotting.start()
        self.writer = WalWriter(self.folder, seq, self.durability.fsync)

    def _write_snapshot(self, seq: int, named: list) -> None:
        """Off the calls' path (a thread): write the snapshot, then prune what it replaces.
        Until it is renamed into place recovery uses the previous snapshot and the log after
        it, which is kept until then; a kill mid-write leaves only a .tmp file."""
        try:
            started = time.perf_counter()
            write_snapshot(self.folder, seq, named, self.durability.fsync == "call")
            self._drop_old()
            self.stats.snapshots_written += 1
            self.stats.snapshot_write_seconds += time.perf_counter() - started
        except BaseException as error:  # noqa: BLE001 -- re-raised on the calls' thread
            self._snapshot_error = error

    def _finish_snapshot(self) -> None:
        """Wait for the snapshot being written, and raise what went wrong with it."""
        if self._snapshotting is not None:
            self._snapshotting.join()
            self._snapshotting = None
        if self._snapshot_error is not None:
            error, self._snapshot_error = self._snapshot_error, None
            raise DurabilityError(f"shard {self.state.shard_index}: writing a snapshot failed: {error}") from error

    def _drop_old(self) -> None:
        """Keep the newest SNAPSHOTS_KEPT snapshots and the log after the oldest kept one."""
        snapshots = snapshot_paths(self.folder)
        for path in snapshots[:-SNAPSHOTS_KEPT]:
            path.unlink()
        kept = snapshot_paths(self.folder)
        floor = _snapshot_seq(kept[0]) if len(kept) >= SNAPSHOTS_KEPT else 0
        segments = wal_segments(self.folder)
        firsts = sorted({_segment_first_seq(p) for p in segments})
        for path in segments:
            first = _segment_first_seq(path)
            # A segment's complete records all come before any segment that starts later (a
            # new one starts after every record recovery could read); two may start at the
            # same call (a torn one and its successor), so only a strictly later start counts.
            if any(first < later <= floor + 1 for later in firsts):
                path.unlink()

    def close(self) -> None:
        self._finish_snapshot()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None


# Files the hosting layer keeps in a shard's folder (actors.faults: restart counters, the note
# of a fault-injected death, markers of planned kills that fired). Named here so that the data
# dir's owner check knows them as xpay's; actors.faults takes the names from here.
HOST_RECORD_NAMES = ("starts", "self-kills", "died-at")
HOST_RECORD_PREFIX = "fault-"
DATA_DIR_MARKER = "XPAY-DATA-DIR"  # written first into a data dir xpay owns
DATA_DIR_FOLDERS = ("driver", "shard-")  # the folders xpay makes in it (shard-NNN)
OWN_PREFIXES = (WAL_PREFIX, SNAPSHOT_PREFIX, HOST_RECORD_PREFIX, "journal-", "commit-")
OWN_NAMES = (LOCK_FILE, *HOST_RECORD_NAMES)


def own_file(name: str) -> bool:
    """Whether a file name in a shard or driver folder is one xpay writes (sim.journal too)."""
    return name in OWN_NAMES or name.startswith(OWN_PREFIXES)


def claim_data_dir(data_dir) -> None:
    """Make data_dir xpay's, or refuse it: a new or empty folder gets the marker file; a folder
    with the marker is xpay's; anything else is refused (DataDirRefused), and so is a marked
    folder holding a file xpay does not write. Nothing is deleted here."""
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / DATA_DIR_MARKER
    if not marker.is_file():
        stranger = next(iter(sorted(root.iterdir())), None)
        if stranger is not None:
            raise DataDirRefused(f"--data-dir {root}: holds {stranger.name} and no {DATA_DIR_MARKER}"
                                 " marker; xpay only uses an empty folder or one it made")
        marker.write_text("written by xpay: shard logs, snapshots and the driver journal\n")
    for entry in sorted(root.iterdir()):
        if entry.name == DATA_DIR_MARKER:
            continue
        if not entry.is_dir() or not entry.name.startswith(DATA_DIR_FOLDERS):
            raise DataDirRefused(f"--data-dir {root}: {entry.name} was not written by xpay")
        foreign = next((p for p in sorted(entry.iterdir()) if not own_file(p.name)), None)
        if foreign is not None or entry.is_symlink():
            name = foreign.name if foreign is not None else "(a link)"
            raise DataDirRefused(f"--data-dir {root}: {entry.name}/{name} was not written by xpay")


def remove_own_files(folder: Path) -> None:
    """An earlier run's files in a shard or driver folder (never the lock, never others)."""
    for path in Path(folder).iterdir():
        if path.name != LOCK_FILE and own_file(path.name) and path.is_file():
            path.unlink()


def prepare_data_dir(durability: Durability, shard_count: int, fresh: bool) -> None:
    """A fresh run starts from empty shard folders (an old run's files would be recovered);
    only a data dir xpay owns is used (claim_data_dir), and only its own files are removed."""
    if durability.data_dir is None:
        return
    root = Path(durability.data_dir)
    claim_data_dir(root)
    if not fresh:
        return
    for folder in root.glob("shard-*"):
        lock = FolderLock(folder, holder="a shard process of an earlier run")
        try:
            remove_own_files(folder)
        finally:
            lock.release()
    for s in range(shard_count):
        durability.shard_dir(s).mkdir(parents=True, exist_ok=True)
