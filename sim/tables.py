"""Numba operations on the ledger's tables and expiry heaps, shared by both numba ledgers.

The serial ledger (sim/serial.py) and the shard kernels (sim/shard_kernels.py) keep different
table LAYOUTS on purpose (serial's records point at rows of the workload, a shard's records
carry the fields themselves); what they share are the OPERATIONS, written once here:

- the idempotency window test on uint64 epochs held as int64 bit patterns;
- the comparison of a run of columns between two rows of 2-D tables;
- row copies and backward-shift deletion from a linear-probing table (Knuth 6.4, Algorithm R:
  no tombstones) whose home slot is sim.hashtable.home_slot, for any capacity;
- a binary min-heap held as a tuple of equal-length int64 columns, ordered by its first
  column and then its second (each caller puts a unique tie-breaker second), every column
  moving with its entry: push, pop, sift down, and the rebuild a compaction ends with.

None of these allocates, so they compile without NRT reference counting (numba's `_nrt` flag;
numba is pinned): callers lend them arrays they own.
"""

from __future__ import annotations

import numba
import numpy as np

from sim.hashtable import home_slot

_BORROWING = dict(cache=True, _nrt=False)


# --- window and field compare -------------------------------------------------------------------


@numba.njit(inline="always", **_BORROWING)
def within_window(epoch_now, epoch_then, window):
    """epoch_then is at most `window` epochs before epoch_now (uint64 difference)."""
    return np.uint64(epoch_now - epoch_then) <= np.uint64(window)


@numba.njit(inline="always", **_BORROWING)
def same_columns(a, a_row, a_first, b, b_row, b_first, count):
    """a[a_row, a_first:a_first+count] equals b[b_row, b_first:b_first+count]."""
    for f in range(count):
        if a[a_row, a_first + f] != b[b_row, b_first + f]:
            return False
    return True


# --- linear-probing tables (column 0 the key, 0 = empty) -----------------------------------------


@numba.njit(inline="always", **_BORROWING)
def copy_row(source, source_row, target, target_row):
    for column in range(source.shape[1]):
        target[target_row, column] = source[source_row, column]


@numba.njit(inline="always", **_BORROWING)
def delete_slot(table, hole):
    """Empty `hole`, then pull back each later record of its run whose home allows it, so every
    other key stays reachable by find_slot (a record may move into `hole`: callers sweeping
    in slot order look at it again)."""
    capacity = table.shape[0]
    j = hole
    while True:
        j += 1
        if j == capacity:
            j = 0
        if table[j, 0] == 0:
            break
        home = home_slot(table[j, 0], capacity)
        # the record at j may fill the hole unless its home lies cyclically in (hole, j]
        if hole <= j:
            stays = hole < home <= j
        else:
            stays = home > hole or home <= j
        if not stays:
            copy_row(table, j, table, hole)
            hole = j
    for column in range(table.shape[1]):
        table[hole, column] = 0


# --- binary min-heap on a tuple of int64 columns, ordered by (column 0, column 1) ---------------


@numba.njit(inline="always", **_BORROWING)
def heap_less(heap, a, b):
    if heap[0][a] != heap[0][b]:
        return heap[0][a] < heap[0][b]
    return heap[1][a] < heap[1][b]


@numba.njit(inline="always", **_BORROWING)
def heap_swap(heap, a, b):
    for column in heap:
        column[a], column[b] = column[b], column[a]


@numba.njit(inline="always", **_BORROWING)
def heap_move(heap, source, target):
    """Entry `source` overwrites entry `target` (source is left as it was)."""
    for column in heap:
        column[target] = column[source]


@numba.njit(**_BORROWING)
def heap_push(heap, size, entry):
    """Push entry (a tuple of int64, one value per column) at `size`; returns the new size.
    The columns must have room for it."""
    i = size
    for c in range(len(heap)):
        heap[c][i] = entry[c]
    while i > 0:
        parent = (i - 1) // 2
        if not heap_less(heap, i, parent):
            break
        heap_swap(heap, i, parent)
        i = parent
    return size + 1


@numba.njit(**_BORROWING)
def heap_pop(heap, size):
    """Drop the top entry (read it first); returns the new size."""
    size -= 1
    heap_move(heap, size, 0)
    sift_down(heap, size, 0)
    return size


@numba.njit(**_BORROWING)
def sift_down(heap, size, i):
    while True:
        left = 2 * i + 1
        smallest = i
        if left < size and heap_less(heap, left, smallest):
            smallest = left
        if left + 1 < size and heap_less(heap, left + 1, smallest):
            smallest = left + 1
        if smallest == i:
            return
        heap_swap(heap, i, smallest)
        i = smallest


@numba.njit(**_BORROWING)
def heap_build(heap, size):
    """Restore heap order over entries [0, size), e.g. after a compaction kept some in place."""
    for i in range(size // 2 - 1, -1, -1):
        sift_down(heap, size, i)
