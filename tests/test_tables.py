"""sim.tables' shared heap and slot deletion, against plain Python (heapq, a dict)."""

from __future__ import annotations

import heapq

import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.hashtable import find_slot
from sim.tables import delete_slot, heap_build, heap_pop, heap_push, within_window


@numba.njit
def _push_all(heap, entries):
    size = 0
    for i in range(entries.shape[0]):
        size = heap_push(heap, size, (entries[i, 0], entries[i, 1], entries[i, 2]))
    return size


@numba.njit
def _pop_all(heap, size, out):
    for i in range(size):
        for c in range(len(heap)):
            out[i, c] = heap[c][0]
        size = heap_pop(heap, size)


def _drain(heap, size):
    out = np.zeros((size, len(heap)), np.int64)
    _pop_all(heap, size, out)
    return [tuple(int(v) for v in row) for row in out]


entries_strategy = st.lists(
    st.tuples(st.integers(-5, 5), st.integers(-(2**63), 2**63 - 1)),
    max_size=60, unique_by=lambda entry: entry[1],
)


@settings(max_examples=60, deadline=None)
@given(entries_strategy)
def test_heap_pops_in_order_of_the_first_two_columns(pairs):
    """Ties on column 0 (few distinct times) are broken by column 1; column 2 moves along."""
    entries = np.array([(t, s, 1000 + k) for k, (t, s) in enumerate(pairs)], np.int64)
    entries = entries.reshape(-1, 3)
    heap = tuple(np.zeros(len(entries) + 1, np.int64) for _ in range(3))
    size = _push_all(heap, entries)
    assert size == len(entries)
    assert _drain(heap, size) == sorted(tuple(int(v) for v in row) for row in entries)


@settings(max_examples=40, deadline=None)
@given(entries_strategy, st.integers(0, 2**32 - 1))
def test_heap_build_orders_entries_left_in_any_order(pairs, seed):
    rng = np.random.default_rng(seed)
    entries = np.array([(t, s, 7) for t, s in pairs], np.int64).reshape(-1, 3)
    rng.shuffle(entries)
    heap = tuple(np.ascontiguousarray(entries[:, c]) for c in range(3))
    _build(heap, len(entries))
    expected = sorted((int(t), int(s)) for t, s, _ in entries)
    assert [(t, s) for t, s, _ in _drain(heap, len(entries))] == expected


@numba.njit
def _build(heap, size):
    heap_build(heap, size)


@numba.njit
def _delete(table, key):
    delete_slot(table, find_slot(table, key))


@numba.njit
def _insert(table, key, value):
    slot = find_slot(table, key)
    table[slot, 0] = key
    table[slot, 1] = value


@numba.njit
def _lookup(table, key):
    slot = find_slot(table, key)
    return table[slot, 1] if table[slot, 0] == key else -1


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(1, 2**63 - 1), max_size=40), st.integers(0, 2**32 - 1),
       st.sampled_from([13, 16, 64]))
def test_delete_slot_keeps_every_other_key_findable(keys, seed, capacity):
    """Crowded tables (up to 40 keys in 64 slots, any capacity) with wrap-around runs."""
    keys = sorted(keys)[: capacity * 2 // 3]
    table = np.zeros((capacity, 2), np.int64)
    for k, key in enumerate(keys):
        _insert(table, key, k)
    live = dict(zip(keys, range(len(keys))))
    rng = np.random.default_rng(seed)
    for key in rng.permutation(keys)[: len(keys) // 2]:
        _delete(table, int(key))
        del live[int(key)]
        for other, value in live.items():
            assert _lookup(table, other) == value
        assert _lookup(table, int(key)) == -1
    assert int(np.count_nonzero(table[:, 0])) == len(live)


def test_within_window_compares_epochs_as_unsigned():
    window = np.uint64(100)
    assert within_window(np.int64(100), np.int64(0), window)
    assert not within_window(np.int64(101), np.int64(0), window)
    # epoch 2**63 (as int64: -2**63) is 1 after 2**63 - 1, not 2**64 - 1 before it
    assert within_window(np.int64(-(2**63)), np.int64(2**63 - 1), window)
    assert not within_window(np.int64(2**63 - 1), np.int64(-(2**63)), window)
