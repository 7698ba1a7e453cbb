"""Driver-side packing: an epoch's columns into per-shard row blocks, and results back.

Each payload a shard receives is one contiguous int64 array [rows, columns] (row-major), so a
Ray call ships a few large buffers, never per-row objects. ``Routed`` remembers which epoch
rows went where, so per-shard results scatter back into epoch order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from sim.hashtable import group_by_shard, shard_of_key
from sim.rowchecks import KIND_PENDING, KIND_PLAIN, KIND_POST, KIND_VOID
from sim.wire import (
    CHECK_AMOUNT,
    CHECK_COLUMNS,
    CHECK_CREDIT,
    CHECK_DEBIT,
    CHECK_IS_POST,
    CHECK_LEDGER,
    CHECK_PENDING_ID,
    CODE_SHIFT,
    CREATION_COLUMNS,
    CREATION_FIELDS,
    CREATION_KEY,
    CREATION_SIM_TIME_US,
    FIELD_AMOUNT,
    FIELD_CREDIT,
    FIELD_DEBIT,
    FIELD_LEDGER_CODE_FLAGS,
    FIELD_PENDING_ID,
    FIELD_TIMEOUT,
    FLAGS_SHIFT,
    ID_ROW_COLUMNS,
    ID_ROW_FIELDS,
    ID_ROW_KEY,
    SIDE_COLUMNS,
    SIDE_GLOBAL_ROW,
    SIDE_PENDING_DELTA,
    SIDE_POSITION,
    SIDE_POSTED_DELTA,
)


@dataclass(frozen=True)
class Routed:
    """Rows of an epoch grouped by shard: rows order[offsets[s]:offsets[s+1]] go to shard s."""

    order: np.ndarray
    offsets: np.ndarray

    @classmethod
    def by_shard(cls, shard: np.ndarray, shard_count: int) -> "Routed":
        order, offsets = group_by_shard(shard, shard_count)
        return cls(order, offsets)

    @classmethod
    def by_key(cls, keys: np.ndarray, shard_count: int, mask: np.ndarray | None = None) -> "Routed":
        """Rows grouped by the shard of their key; with a mask, only the rows it selects."""
        if mask is None:
            return cls(*route_keys(keys, shard_count, _NO_MASK, False))
        if not mask.any():
            return cls.empty(shard_count)
        return cls(*route_keys(keys, shard_count, mask, True))

    @classmethod
    def empty(cls, shard_count: int) -> "Routed":
        return cls(np.zeros(0, np.int64), np.zeros(shard_count + 1, np.int64))

    def where(self, mask: np.ndarray) -> "Routed":
        """The routed rows that mask selects, in the same groups and order (no re-hashing)."""
        if not len(self.order) or not mask.any():
            return Routed.empty(len(self.offsets) - 1)
        return Routed(*filter_route(self.order, self.offsets, mask))

    def split(self, packed: np.ndarray) -> list[np.ndarray]:
        """Per-shard blocks of an array packed in self.order."""
        o = self.offsets
        return [packed[o[s]:o[s + 1]] for s in range(len(o) - 1)]

    def scatter(self, parts: list[np.ndarray], out: np.ndarray) -> np.ndarray:
        """out[order] = concatenation of the per-shard results."""
        if len(self.order):
            out[self.order] = np.concatenate(parts)
        return out


_NO_MASK = np.zeros(0, np.bool_)


@numba.njit(cache=True)
def route_keys(keys, shard_count, mask, use_mask):
    """Stable counting sort of the rows by the shard of their key (rows with use_mask and
    not mask[i] left out), hashing each key once: (order, offsets) as Routed's."""
    n = len(keys)
    shard = np.empty(n, np.int32)
    counts = np.zeros(shard_count + 1, np.int64)
    for i in range(n):
        if use_mask and not mask[i]:
            shard[i] = -1
            continue
        s = shard_of_key(keys[i], shard_count)
        shard[i] = s
        counts[s + 1] += 1
    offsets = np.cumsum(counts)
    cursor = offsets[:-1].copy()
    order = np.empty(offsets[-1], np.int64)
    for i in range(n):
        s = shard[i]
        if s >= 0:
            order[cursor[s]] = i
            cursor[s] += 1
    return order, offsets


@numba.njit(cache=True)
def filter_route(order, offsets, mask):
    """(order, offsets) of the routed rows i with mask[i], groups and order kept."""
    shard_count = len(offsets) - 1
    out = np.empty(len(order), np.int64)
    new_offsets = np.zeros(shard_count + 1, np.int64)
    j = 0
    for s in range(shard_count):
        for t in range(offsets[s], offsets[s + 1]):
            i = order[t]
            if mask[i]:
                out[j] = i
                j += 1
        new_offsets[s + 1] = j
    return out[:j].copy(), new_offsets


def as_bits(column: np.ndarray) -> np.ndarray:
    """int64 view of a uint64 column (no copy); other integer columns are left alone."""
    return column.view(np.int64) if column.dtype == np.uint64 else column


@numba.njit(inline="always", cache=True)
def _put_fields(out, j, first, i, debit, credit, amount, ledger, code, flags, pending_id,
                timeout_s):
    """The six field columns (sim.wire FIELD_*) of row i at out[j, first:first + 6]."""
    out[j, first + FIELD_DEBIT] = debit[i]
    out[j, first + FIELD_CREDIT] = credit[i]
    out[j, first + FIELD_AMOUNT] = amount[i]
    out[j, first + FIELD_PENDING_ID] = pending_id[i]
    out[j, first + FIELD_LEDGER_CODE_FLAGS] = (np.int64(ledger[i])
                                               | (np.int64(code[i]) << CODE_SHIFT)
                                               | (np.int64(flags[i]) << FLAGS_SHIFT))
    out[j, first + FIELD_TIMEOUT] = timeout_s[i]


@numba.njit(cache=True)
def pack_id_rows(order, ids, debit, credit, amount, ledger, code, flags, pending_id, timeout_s):
    """sim.wire ID_ROW_* rows: [key, 6 field columns] per routed row."""
    out = np.empty((len(order), ID_ROW_COLUMNS), np.int64)
    for j in range(len(order)):
        i = order[j]
        out[j, ID_ROW_KEY] = ids[i]
        _put_fields(out, j, ID_ROW_FIELDS, i, debit, credit, amount, ledger, code, flags,
                    pending_id, timeout_s)
    return out


@numba.njit(cache=True)
def pack_pending_checks(order, pending_id, debit, credit, ledger, amount, kind):
    """sim.wire CHECK_* rows: [pending_id, debit, credit, ledger, amount, is_post] per routed
    POST/VOID row."""
    out = np.empty((len(order), CHECK_COLUMNS), np.int64)
    for j in range(len(order)):
        i = order[j]
        out[j, CHECK_PENDING_ID] = pending_id[i]
        out[j, CHECK_DEBIT] = debit[i]
        out[j, CHECK_CREDIT] = credit[i]
        out[j, CHECK_LEDGER] = ledger[i]
        out[j, CHECK_AMOUNT] = amount[i]
        out[j, CHECK_IS_POST] = 1 if kind[i] == KIND_POST else 0
    return out


@numba.njit(cache=True)
def commit_deltas(kind, amount, pending_amount, committed):
    """(posted delta, pending delta) of each committed row; both sides get the same deltas."""
    n = len(kind)
    posted = np.zeros(n, np.int64)
    pending = np.zeros(n, np.int64)
    for i in range(n):
        if not committed[i]:
            continue
        k = kind[i]
        if k == KIND_PLAIN:
            posted[i] = amount[i]
        elif k == KIND_PENDING:
            pending[i] = amount[i]
        elif k == KIND_POST:
            posted[i] = amount[i]
            pending[i] = -pending_amount[i]
        elif k == KIND_VOID:
            pending[i] = -pending_amount[i]
    return posted, pending


@numba.njit(cache=True)
def pack_side(order, position, posted, pending, row_offset):
    """sim.wire SIDE_* rows: [account position, posted delta, pending delta, global row] per
    routed committed row."""
    out = np.empty((len(order), SIDE_COLUMNS), np.int64)
    for j in range(len(order)):
        i = order[j]
        out[j, SIDE_POSITION] = position[i]
        out[j, SIDE_POSTED_DELTA] = posted[i]
        out[j, SIDE_PENDING_DELTA] = pending[i]
        out[j, SIDE_GLOBAL_ROW] = row_offset + i
    return out


@numba.njit(cache=True)
def pack_pending_creations(order, ids, sim_time_us, debit, credit, amount, ledger, code, flags,
                           pending_id, timeout_s):
    """sim.wire CREATION_* rows: [key, sim_time_us, 6 field columns] per routed committed
    PENDING row."""
    out = np.empty((len(order), CREATION_COLUMNS), np.int64)
    for j in range(len(order)):
        i = order[j]
        out[j, CREATION_KEY] = ids[i]
        out[j, CREATION_SIM_TIME_US] = sim_time_us[i]
        _put_fields(out, j, CREATION_FIELDS, i, debit, credit, amount, ledger, code, flags,
                    pending_id, timeout_s)
    return out
