"""What the capacity model needs of a workload: each epoch's rows and what each shard is sent.

A shard's work in an epoch grows with the rows routed to it: the transfer ids it checks and
the account sides it looks up (`shard_rows_K` in epochs.parquet). Those come from hashing the
workload's own keys with the engine's router (sim.hashtable.shard_of), so a hot account or a
skewed key distribution shows up as one shard sent more than the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.columns import Transfers
from sim.constants import FLAG_PENDING, FLAG_POST_PENDING_TRANSFER, FLAG_VOID_PENDING_TRANSFER
from sim.hashtable import shard_of
from sim.routing import as_bits


@dataclass
class Shape:
    """Per epoch: rows, rows sent to each of `shards` shards ([epochs, shards]), rows of
    two-phase kinds, and the sim-time span of its rows (an open-loop run paces by sim time)."""

    rows: np.ndarray  # int64 per epoch
    touches: np.ndarray  # int64 [epochs, shards]
    two_phase: np.ndarray  # int64 per epoch: pending, post and void rows
    sim_start_s: np.ndarray | None = None  # sim seconds of each epoch's first and last row;
    sim_end_s: np.ndarray | None = None  # None: rows arrive evenly (rows / rate each)

    @property
    def shards(self) -> int:
        return self.touches.shape[1]

    def imbalance(self) -> float:
        """The busiest shard's rows over the mean shard's, over the whole run (1 = even)."""
        per_shard = self.touches.sum(axis=0).astype(np.float64)
        return float(per_shard.max() / per_shard.mean()) if per_shard.sum() else 1.0


def shape_of(transfers: Transfers, shards: int) -> Shape:
    """Each epoch's rows and per-shard rows for an engine of `shards` shards."""
    ranges = transfers.epoch_bounds()  # [(start, stop)] of each epoch
    lengths = np.array([stop - start for start, stop in ranges], np.int64)
    epoch_of_row = np.repeat(np.arange(len(ranges)), lengths)
    touches = np.zeros((len(ranges), shards), np.int64)
    ids = as_bits(transfers.id)
    checked = ids != 0  # as the engine routes them: id 0 is refused before any shard sees it
    for key, rows in ((ids[checked], epoch_of_row[checked]),
                      (as_bits(transfers.debit_account), epoch_of_row),
                      (as_bits(transfers.credit_account), epoch_of_row)):
        np.add.at(touches, (rows, shard_of(key, shards)), 1)
    starts = transfers.sim_time_us[[start for start, _ in ranges]].astype(np.float64) / 1e6
    ends = transfers.sim_time_us[[stop - 1 for _, stop in ranges]].astype(np.float64) / 1e6
    two_phase_flags = FLAG_PENDING | FLAG_POST_PENDING_TRANSFER | FLAG_VOID_PENDING_TRANSFER
    two_phase = np.bincount(epoch_of_row[(transfers.flags & two_phase_flags) != 0],
                            minlength=len(ranges)).astype(np.int64)
    return Shape(lengths, touches, two_phase, starts, ends)


def uniform_shape(rows_per_epoch: int, epochs: int, shards: int, imbalance: float = 1.0,
                  touches_per_row: float = 3.0, two_phase_share: float = 0.0) -> Shape:
    """epochs of rows_per_epoch rows spread evenly, except one shard sent `imbalance` times the
    mean (a hot shard), each row touching touches_per_row keys; two_phase_share of the rows
    pending, post or void."""
    total = rows_per_epoch * touches_per_row
    mean = total / shards
    per = np.full(shards, mean)
    if shards > 1:
        per[0] = min(mean * imbalance, total)
        per[1:] = (total - per[0]) / (shards - 1)
    touches = np.tile(np.rint(per).astype(np.int64), (epochs, 1))
    return Shape(np.full(epochs, rows_per_epoch, np.int64), touches,
                 np.full(epochs, int(round(rows_per_epoch * two_phase_share)), np.int64))
