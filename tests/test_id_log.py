"""The shard's id log (a ring over an unlinked file) and the id table's cost per windowed id."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sim.id_log import LOG_ROWS_MIN, IdLog
from sim.wire import FIELD_COUNT


def rows_from(first: int, count: int) -> np.ndarray:
    """Rows whose every field names its position (so a row read from the wrong place shows)."""
    positions = np.arange(first, first + count, dtype=np.int64)
    return positions[:, None] * 10 + np.arange(FIELD_COUNT, dtype=np.int64)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 6000)), min_size=1, max_size=25),
       data=st.data())
def test_reads_give_back_what_was_appended_while_the_window_moves(steps, data):
    log = IdLog(LOG_ROWS_MIN)
    try:
        for count, keep in steps:
            base = log.append(rows_from(log.end, count))
            assert base == log.end - count
            log.forget_before(log.end - keep)  # the window: the last `keep` positions
            if log.end > log.start:
                wanted = np.array(data.draw(st.lists(st.integers(log.start, log.end - 1), max_size=50)),
                                  np.int64)
                assert np.array_equal(log.read(wanted), rows_from(0, log.end)[wanted])
        assert log.capacity <= max(LOG_ROWS_MIN, 2 * 11000)  # grows with the window, not the run
    finally:
        log.close()


@pytest.fixture
def log():
    opened = IdLog()
    yield opened
    opened.close()


def test_a_large_gather_reads_in_chunks_and_keeps_order(log):
    log.append(rows_from(0, 300_000))
    log.forget_before(1000)
    wanted = np.random.default_rng(3).integers(1000, 300_000, 50_000)
    assert np.array_equal(log.read(wanted), rows_from(0, 300_000)[wanted])


def test_forgotten_positions_are_refused(log):
    log.append(rows_from(0, 100))
    log.forget_before(50)
    with pytest.raises(ValueError, match="outside"):
        log.read(np.array([10]))
    with pytest.raises(ValueError, match="outside"):
        log.read(np.array([100]))


def test_the_id_table_costs_at_most_32_bytes_per_windowed_id():
    """Measured by the engine on a run that fills its window: the id tables' bytes over the
    most ids the window held."""
    from sim.columns import Accounts, Transfers
    from sim.engine import Engine, local_hosts, split_epochs, table_hint

    rng = np.random.default_rng(7)
    n_accounts, epochs, per_epoch, window = 2000, 30, 4000, 5
    accounts = Accounts.from_columns(id=np.arange(1, n_accounts + 1), ledger=np.ones(n_accounts),
                                     flags=np.zeros(n_accounts))
    n = epochs * per_epoch
    ids = rng.permutation(np.arange(1, 10 * n))[:n]
    ids[rng.random(n) < 0.05] = ids[0]  # some retries, compared with the log
    debit = rng.integers(1, n_accounts + 1, n)
    transfers = Transfers.from_columns(
        id=ids, epoch=np.repeat(np.arange(epochs), per_epoch), sim_time_us=np.arange(n) * 1000,
        debit_account=debit, credit_account=debit % n_accounts + 1, amount=rng.integers(1, 100, n),
        ledger=np.ones(n), code=np.ones(n), flags=np.zeros(n), pending_id=np.zeros(n),
        timeout_s=np.zeros(n))
    hosts = local_hosts(accounts, 2, window, table_hint(transfers, window, 2))
    result = Engine(accounts, hosts, window).run(split_epochs(transfers))
    assert result.metrics.bytes_per_windowed_id is not None
    assert 16 <= result.metrics.bytes_per_windowed_id <= 32


def test_after_a_burst_leaves_the_window_the_id_table_shrinks_and_answers_the_same():
    """A 60k-id burst then small epochs: once the burst is out of the window the table is
    rebuilt to fit, and every status (retries of burst ids inside and past the window
    included) equals the reference ledger's."""
    from sim.columns import Accounts, Transfers
    from sim.engine import Engine, local_hosts, split_epochs, table_hint
    from sim.reference import run_reference

    rng = np.random.default_rng(11)
    window, burst, small, epochs = 3, 60_000, 300, 12
    accounts = Accounts.from_columns(id=np.arange(1, 101), ledger=np.ones(100), flags=np.zeros(100))
    sizes = [burst] + [small] * epochs
    n = sum(sizes)
    ids = rng.permutation(np.arange(1, 10 * n))[:n]
    epoch = np.repeat(np.arange(len(sizes)), sizes)
    retry = np.flatnonzero((epoch > 0) & (rng.random(n) < 0.2))  # re-sent burst ids, some changed
    ids[retry] = ids[rng.integers(0, burst, len(retry))]
    debit = rng.integers(1, 101, n)
    amount = rng.integers(1, 5, n)
    amount[retry[::2]] += 1
    transfers = Transfers.from_columns(
        id=ids, epoch=epoch, sim_time_us=np.arange(n), debit_account=debit,
        credit_account=debit % 100 + 1, amount=amount, ledger=np.ones(n), code=np.ones(n),
        flags=np.zeros(n), pending_id=np.zeros(n), timeout_s=np.zeros(n))
    hosts = local_hosts(accounts, 2, window, table_hint(transfers, window, 2))
    capacity_before = sum(len(s.id_table) for s in hosts.states)
    result = Engine(accounts, hosts, window).run(split_epochs(transfers))
    expected = run_reference(accounts, transfers, window_epochs=window)
    np.testing.assert_array_equal(result.status, expected.status)
    assert result.balances.equals(expected.balances)
    assert sum(len(s.id_table) for s in hosts.states) < capacity_before / 8
