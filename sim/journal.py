"""The coordinator's journal: what a crashed driver needs to continue a run (xpay run --resume).

After each epoch's statuses are final, and before any shard hears of the next epoch, the
driver records under ``DATA_DIR/driver/``:

- ``commit-<epoch index>.arrow``: the epoch's committed effects per shard (they ride on the
  next epoch's first call, so they exist nowhere else yet), written to a temporary name and
  renamed; the previous epoch's file is then removed;
- one record batch appended to ``journal-<first index>.arrows`` (an Arrow IPC stream; a
  resumed run starts a new one): the epoch index, its
  row offset and length, its statuses, the audit rows found since the last record and the
  committed count.

The last complete record is the last durable epoch E. Its shards have all logged call 2E+2
(the epoch's evaluation, the last call the driver waited for), and may have logged a call or
two more; ``--resume`` rolls every shard back to 2E+2 (sim.durability.truncate_after), loads
E's commit and continues with epoch E+1. The epoch rules are deterministic, so the files come
out the same as an uninterrupted run's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from sim.audit import audit_from_array, audit_to_array
from sim.durability import LOCK_FILE, DurabilityError, remove_own_files, FolderLock, ITEM_SCHEMA, fsync_dir, batch_values, items_batch, read_segment
from sim.wire import CommitPayload

JOURNAL_PREFIX, JOURNAL_SUFFIX = "journal-", ".arrows"
COMMIT_PREFIX, COMMIT_SUFFIX = "commit-", ".arrow"


def calls_through(epoch_index: int) -> int:
    """The shards' sequence number after an epoch's evaluation (two calls per epoch)."""
    return 2 * (epoch_index + 1)


@dataclass
class Resumed:
    """What the journal gives back: the run up to and including epoch ``last_index``."""

    last_index: int
    row_offset: int  # of the next epoch
    status: list = field(default_factory=list)  # per epoch, uint16
    audit: list = field(default_factory=list)
    committed: int = 0
    commit: list | None = None  # the last epoch's CommitPayload per shard

    @property
    def rows(self) -> int:
        return int(sum(len(s) for s in self.status))


class DriverJournal:
    def __init__(self, data_dir: str | Path, fsync: str = "off"):
        self.folder = Path(data_dir) / "driver"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = FolderLock(self.folder, wait_s=2.0, holder="another xpay run")
        self.fsync = fsync
        self._sink = None
        self._writer = None
        self._audit_written = 0
        self.last_index = -1

    def start(self, resumed: Resumed | None = None) -> None:
        """A fresh run (resumed None) removes an earlier run's journal; a resumed one keeps it
        and appends to a new segment (a torn last record of the old one is ignored)."""
        if resumed is None:
            remove_own_files(self.folder)
        else:
            self._audit_written = len(resumed.audit)
            self.last_index = resumed.last_index
        path = self.folder / f"{JOURNAL_PREFIX}{self.last_index + 1:012d}{JOURNAL_SUFFIX}"
        self._sink = open(path, "wb")
        self._writer = pa.ipc.new_stream(self._sink, ITEM_SCHEMA)
        if self.fsync == "call":
            fsync_dir(self.folder)

    def record(self, index: int, row_offset: int, status: np.ndarray, commit: list, audit: list,
               committed: int) -> None:
        """Epoch ``index`` is final: its commit first, then its journal record."""
        self._write_commit(index, commit)
        new_audit = audit[self._audit_written:]
        batch = items_batch(index, "epoch", [
            ("index", index), ("row_offset", row_offset), ("status", np.ascontiguousarray(status, np.uint16)),
            ("audit", audit_to_array(new_audit)), ("committed", int(committed)),
        ])
        self._writer.write_batch(batch)
        self._sink.flush()
        if self.fsync == "call":
            os.fsync(self._sink.fileno())
        self._audit_written = len(audit)
        self.last_index = index
        previous = self.folder / f"{COMMIT_PREFIX}{index - 1:012d}{COMMIT_SUFFIX}"
        if previous.exists():
            previous.unlink()

    def _write_commit(self, index: int, commit: list) -> None:
        path = self.folder / f"{COMMIT_PREFIX}{index:012d}{COMMIT_SUFFIX}"
        tmp = path.with_name(path.name + ".tmp")
        batch = items_batch(index, "commit", [(str(s), c) for s, c in enumerate(commit)])
        with open(tmp, "wb") as sink:
            with pa.ipc.new_file(sink, ITEM_SCHEMA) as writer:
                writer.write_batch(batch)
            if self.fsync == "call":
                sink.flush()
                os.fsync(sink.fileno())
        tmp.replace(path)
        if self.fsync == "call":
            fsync_dir(self.folder)

    def close(self) -> None:
        if self._sink is not None:
            self._writer.close()
            self._sink.close()
            self._sink = None
            self._writer = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def load(data_dir: str | Path, shard_count: int) -> Resumed | None:
    """The journal's run so far, or None when no epoch was recorded."""
    folder = Path(data_dir) / "driver"
    segments = sorted(folder.glob(f"{JOURNAL_PREFIX}*{JOURNAL_SUFFIX}")) if folder.is_dir() else []
    resumed = None
    for path, batch in ((p, b) for p in segments for b in read_segment(p)):
        index, _, named = batch_values(batch)
        values = dict(named)
        expected = resumed.last_index + 1 if resumed else 0
        if index < expected:
            continue
        if index > expected:
            raise DurabilityError(f"{path}: epoch {index} follows epoch {expected - 1}")
        if resumed is None:
            resumed = Resumed(last_index=-1, row_offset=0)
        resumed.last_index = index
        resumed.row_offset = values["row_offset"] + len(values["status"])
        resumed.status.append(values["status"])
        resumed.audit.extend(audit_from_array(values["audit"]))
        resumed.committed = values["committed"]
    if resumed is None:
        return None
    commit_path = folder / f"{COMMIT_PREFIX}{resumed.last_index:012d}{COMMIT_SUFFIX}"
    if not commit_path.exists():
        raise DurabilityError(f"{commit_path} is missing: epoch {resumed.last_index}'s commit was not kept")
    with pa.memory_map(str(commit_path), "r") as source:
        _, _, named = batch_values(pa.ipc.open_file(source).get_batch(0))
    resumed.commit = [c for _, c in named]
    if len(resumed.commit) != shard_count or not all(isinstance(c, CommitPayload) for c in resumed.commit):
        raise DurabilityError(f"{commit_path}: a commit for {len(resumed.commit)} shards, the run has {shard_count}")
    return resumed
