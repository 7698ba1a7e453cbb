"""Fuzzing arbitrary rows: never a crash, always a defined status, rejects leave no trace."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings, strategies as st

from sim.columns import Accounts, Transfers
from sim.constants import FLAG_LINKED, STATUS_COUNT
from sim.engine import run_local
from sim.errors import BalanceOverflowError
from sim.reference import run_reference

ACCOUNT_IDS = [3, 2**63 + 11, 2**64 - 1, 77]
ACCOUNTS = Accounts.from_columns(id=ACCOUNT_IDS, ledger=[1, 1, 2, 1], flags=[0, 1, 1, 1])
U64 = st.one_of(st.sampled_from(ACCOUNT_IDS + [0, 1]), st.integers(0, 2**64 - 1))
U16 = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 6, 8, 12, 16]), st.integers(0, 2**16 - 1))
I64 = st.one_of(st.integers(-3, 120), st.sampled_from([2**53, 2**53 + 1]), st.integers(-(2**63), 2**63 - 1))
ROW = st.tuples(
    st.one_of(st.integers(1, 12), st.integers(0, 2**64 - 1)),  # id
    st.integers(0, 2),  # epoch step
    st.integers(-(2**40), 2**40),  # sim time step (sorted below)
    U64, U64, I64,
    st.one_of(st.sampled_from([1, 2]), st.integers(0, 2**32 - 1)),  # ledger
    st.integers(0, 2**16 - 1), U16,  # code, flags
    st.one_of(st.integers(0, 12), st.integers(0, 2**64 - 1)),  # pending_id
    st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1)),  # timeout_s
)


def to_transfers(rows) -> Transfers:
    columns = list(zip(*rows))
    epoch = np.cumsum(np.array(columns[1], np.uint64), dtype=np.uint64)
    sim_time = np.sort(np.array(columns[2], np.int64))
    return Transfers.from_columns(
        id=np.array(columns[0], np.uint64), epoch=epoch, sim_time_us=sim_time,
        debit_account=np.array(columns[3], np.uint64), credit_account=np.array(columns[4], np.uint64),
        amount=np.array(columns[5], np.int64), ledger=np.array(columns[6], np.uint32),
        code=np.array(columns[7], np.uint16), flags=np.array(columns[8], np.uint16),
        pending_id=np.array(columns[9], np.uint64), timeout_s=np.array(columns[10], np.uint32))


def outcome(run, *args, **kwargs):
    try:
        result = run(*args, **kwargs)
    except BalanceOverflowError as error:
        return "overflow", error.key()
    return result.status, result.balances


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=40), shards=st.sampled_from([1, 2, 3]))
def test_arbitrary_rows_get_a_defined_status_equal_to_the_reference(rows, shards):
    transfers = to_transfers(rows)
    engine = outcome(run_local, ACCOUNTS, transfers, shards, window_epochs=2)
    reference = outcome(run_reference, ACCOUNTS, transfers, window_epochs=2)
    if isinstance(engine[0], str) or isinstance(reference[0], str):
        assert engine == reference
        return
    assert engine[0].dtype == np.uint16
    assert (engine[0] < STATUS_COUNT).all()
    np.testing.assert_array_equal(engine[0], reference[0])
    assert engine[1].equals(reference[1])


def with_rejects(transfers: Transfers, where: list[int]) -> tuple[Transfers, np.ndarray]:
    """Insert, after each row in `where` that ends a chain and is not alone in its epoch's
    start, a copy made to fail a stateless check (unknown flag bit) under a fresh id (one no
    row uses: a copy must not make an original row a duplicate)."""
    keep = []
    inserted = []
    used = set(transfers.id.tolist())
    fresh = 2**64 - 2
    for i in range(len(transfers)):
        keep.append(i)
        ends_chain = (transfers.flags[i] & FLAG_LINKED) == 0
        if i in where and ends_chain:
            keep.append(-1 - i)
            inserted.append(len(keep) - 1)
    rows = transfers.columns()
    out = {name: [] for name in rows}
    for k in keep:
        src = k if k >= 0 else -1 - k
        for name, column in rows.items():
            out[name].append(column[src])
        if k < 0:
            while fresh in used:
                fresh -= 1
            out["id"][-1] = fresh
            fresh -= 1
            out["flags"][-1] = 0x40
    return Transfers.from_columns(**out), np.array(inserted, np.int64)


_ROW_WITH_ID_OF_THE_FIRST_COPY = (2**64 - 2, 0, 0, 3, 3, 0, 1, 0, 0, 0, 0)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=30), where=st.lists(st.integers(0, 29), max_size=6))
@example(rows=[(1, 0, 0, 3, 3, 0, 1, 0, 0, 0, 0), _ROW_WITH_ID_OF_THE_FIRST_COPY], where=[0])
@example(rows=[_ROW_WITH_ID_OF_THE_FIRST_COPY], where=[0])
def test_rejected_rows_leave_the_state_untouched(rows, where):
    transfers = to_transfers(rows)
    base = outcome(run_local, ACCOUNTS, transfers, 2, window_epochs=2)
    noisy, inserted = with_rejects(transfers, where)
    with_noise = outcome(run_local, ACCOUNTS, noisy, 2, window_epochs=2)
    if isinstance(base[0], str) or isinstance(with_noise[0], str):
        assert isinstance(base[0], str) and isinstance(with_noise[0], str)
        return
    original = np.ones(len(noisy), bool)
    original[inserted] = False
    assert (with_noise[0][inserted] == 6).all()  # flags_are_mutually_exclusive
    np.testing.assert_array_equal(with_noise[0][original], base[0])
    assert with_noise[1].equals(base[1])
