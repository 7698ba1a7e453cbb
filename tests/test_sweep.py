"""In-place sweeping of the id table: stale records go, every live record stays findable."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sim import shard_kernels as K
from sim.hashtable import find_slot


CHECK = K.ID_TABLE_COLUMNS  # an extra column, to check that records move whole


def filled_table(capacity: int, keys: list[int], epochs: list[int]) -> np.ndarray:
    """An id table's records (key, then the window column) and one more column."""
    table = np.zeros((capacity, K.ID_TABLE_COLUMNS + 1), np.int64)
    for key, epoch in zip(keys, epochs):
        slot = find_slot(table, key)
        table[slot, K.ID_KEY] = key
        table[slot, K.ID_POSITION] = epoch
        table[slot, CHECK] = key ^ 0x5A5A
    return table


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(4, 48), data=st.data(), now=st.integers(0, 12), window=st.integers(0, 4),
       cursor=st.integers(0, 100), step=st.integers(1, 9))
def test_sweep_removes_exactly_the_stale_records(capacity, data, now, window, cursor, step):
    count = data.draw(st.integers(0, capacity * 2 // 3))
    keys = data.draw(st.lists(st.integers(1, 2**63 - 1), min_size=count, max_size=count, unique=True))
    epochs = data.draw(st.lists(st.integers(0, now), min_size=count, max_size=count))
    table = filled_table(capacity, keys, epochs)
    removed_total = 0
    for _ in range(-(-capacity // step) + 1):  # one full pass and a bit, in slices
        cursor, removed = K.sweep_step(table, cursor, step, np.int64(now), window, K.ID_POSITION, -1)
        removed_total += removed
    live = {k for k, e in zip(keys, epochs) if now - e <= window}
    assert removed_total == len(keys) - len(live)
    present = {int(k) for k in table[:, K.ID_KEY] if k != 0}
    assert present == live
    for key in live:
        slot = find_slot(table, key)
        assert table[slot, K.ID_KEY] == key
        assert table[slot, CHECK] == key ^ 0x5A5A


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(4, 40), data=st.data(), now=st.integers(0, 12), window=st.integers(0, 4))
def test_pending_sweep_keeps_pending_and_recent_records(capacity, data, now, window):
    count = data.draw(st.integers(0, capacity * 2 // 3))
    keys = data.draw(st.lists(st.integers(1, 2**63 - 1), min_size=count, max_size=count, unique=True))
    resolved = data.draw(st.lists(st.integers(0, now), min_size=count, max_size=count))
    states = data.draw(st.lists(st.sampled_from([1, 2, 3, 4]), min_size=count, max_size=count))
    table = np.zeros((capacity, K.PENDING_TABLE_COLUMNS), np.int64)
    for key, epoch, state in zip(keys, resolved, states):
        slot = find_slot(table, key)
        table[slot, K.P_KEY], table[slot, K.P_RESOLVED_EPOCH], table[slot, K.P_STATE] = key, epoch, state
    cursor = 0
    for _ in range(capacity + 1):
        cursor, _ = K.sweep_step(table, cursor, 1, np.int64(now), window, K.P_RESOLVED_EPOCH, K.P_STATE)
    keep = {k for k, e, st_ in zip(keys, resolved, states) if st_ == 1 or now - e <= window}
    assert {int(k) for k in table[:, K.P_KEY] if k != 0} == keep
    for key in keep:
        assert table[find_slot(table, key), K.P_KEY] == key


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(4, 40), grown=st.integers(0, 40), data=st.data(), now=st.integers(0, 12),
       window=st.integers(0, 4))
def test_rebuild_keeps_what_a_sweep_keeps(capacity, grown, data, now, window):
    count = data.draw(st.integers(0, capacity * 2 // 3))
    keys = data.draw(st.lists(st.integers(1, 2**63 - 1), min_size=count, max_size=count, unique=True))
    epochs = data.draw(st.lists(st.integers(0, now), min_size=count, max_size=count))
    table = filled_table(capacity, keys, epochs)
    rebuilt, live = K.rebuild_table(table, capacity + grown, np.int64(now), window, *K.ID_WINDOW_COLUMNS)
    K.sweep_step(table, 0, capacity, np.int64(now), window, *K.ID_WINDOW_COLUMNS)
    kept = {int(k) for k in table[:, K.ID_KEY] if k != 0}
    assert {int(k) for k in rebuilt[:, K.ID_KEY] if k != 0} == kept
    assert live == len(kept)
    for key in kept:
        assert rebuilt[find_slot(rebuilt, key), CHECK] == key ^ 0x5A5A


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(4, 48), data=st.data(), floor=st.integers(0, 2**62))
def test_id_window_is_the_floor(capacity, data, floor):
    """With id_window_arguments(floor), records go exactly when their position is below floor."""
    count = data.draw(st.integers(0, capacity * 2 // 3))
    keys = data.draw(st.lists(st.integers(1, 2**63 - 1), min_size=count, max_size=count, unique=True))
    positions = data.draw(st.lists(st.integers(0, 2**62 + 5), min_size=count, max_size=count))
    table = filled_table(capacity, keys, positions)
    K.sweep_step(table, 0, capacity, *K.id_window_arguments(floor), *K.ID_WINDOW_COLUMNS)
    kept = {k for k, p in zip(keys, positions) if p >= floor}
    assert {int(k) for k in table[:, K.ID_KEY] if k != 0} == kept
    rebuilt, live = K.rebuild_table(filled_table(capacity, keys, positions), capacity,
                                    *K.id_window_arguments(floor), *K.ID_WINDOW_COLUMNS)
    assert live == len(kept)


def test_an_oversized_table_is_swept_in_proportion_to_its_inserts():
    from sim.shard_state import SWEEP_PASS_EPOCHS, SWEEP_SLOTS_MIN, SWEEP_SLOTS_PER_INSERT, sweep_slots

    assert sweep_slots(1 << 20, 0) == SWEEP_SLOTS_MIN
    assert sweep_slots(1 << 20, 100) == max(SWEEP_SLOTS_MIN, 100 * SWEEP_SLOTS_PER_INSERT)
    assert sweep_slots(1 << 10, 100) == (1 << 10) // SWEEP_PASS_EPOCHS  # never more than a slice
    assert sweep_slots(1 << 24, 1 << 20) == (1 << 24) // SWEEP_PASS_EPOCHS


@pytest.mark.parametrize("seed, window", [(0, 1), (1, 2), (2, 4)])
def test_oversized_tables_answer_as_the_reference(seed, window):
    """Tables sized 64x what the run needs (a generous hint, or a burst long gone): statuses
    and balances equal the reference ledger's, although stale records now go a few slots per
    insert instead of a 1/32 slice per epoch; the pending table is never rebuilt to make room
    (the id table shrinks to fit once ids leave the window, test_id_log)."""
    from tests.adversarial import adversarial_workload
    from sim.engine import Engine, local_hosts, split_epochs
    from sim.reference import run_reference
    from sim.shard_state import TableHint

    accounts, transfers = adversarial_workload(seed, 1500)
    hint = TableHint(live_ids=64 * len(transfers), live_pending=64 * len(transfers))
    hosts = local_hosts(accounts, 2, window, hint)
    capacity = [len(s.pending_table) for s in hosts.states]
    result = Engine(accounts, hosts, window).run(split_epochs(transfers))
    expected = run_reference(accounts, transfers, window_epochs=window)
    np.testing.assert_array_equal(result.status, expected.status)
    assert result.balances.equals(expected.balances)
    assert [len(s.pending_table) for s in hosts.states] == capacity
