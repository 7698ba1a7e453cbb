"""The numba serial ledger (sim/serial.py) against the reference ledger, in both modes.

Hypothesis draws a seed and a few sizes; numpy builds a small adversarial workload from them
(sparse 64-bit ids, tiny id pools, posts and voids of earlier ids, bad flags and amounts,
short timeouts, a tiny window, optionally a run-up that brings balances near 2**63). Every
example must give the reference's statuses and balances, or the same overflow error.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.columns import TRANSFER_DTYPES, Accounts, Transfers
from sim.constants import (
    ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS as GUARDED,
    AMOUNT_MAX,
    FLAG_LINKED as LINKED,
    FLAG_PENDING as PENDING,
    FLAG_POST_PENDING_TRANSFER as POST,
    FLAG_VOID_PENDING_TRANSFER as VOID,
    INT64_MAX,
    MICROSECONDS_PER_SECOND as SECOND_US,
    STATUS,
)
from sim.errors import BalanceOverflowError
from sim.reference import run_reference
from sim.hashtable import find_slot
from sim.serial import ID_COLUMNS, _purge_ids, run_serial

UINT64_TOP = 2**64 - 1
EPOCH_BASES = (1, 2**63 - 3, 2**64 - 10**6)
TIME_BASES_US = (0, -50 * SECOND_US, INT64_MAX - 10**11)
AMOUNT_CHOICES = (0, -1, -(2**63), AMOUNT_MAX, AMOUNT_MAX + 1, INT64_MAX)
TIMEOUT_CHOICES_S = (0, 0, 1, 1, 2, 3, 2**32 - 1)
RUN_UP_ID_BASE = 2**62  # ids of the run-up rows, apart from the random pool


# --- workload builders ---------------------------------------------------------------------------


def _pick(rng: np.random.Generator, items) -> int:
    """One of items, as a Python int (rng.choice would turn mixed 64-bit ints into floats)."""
    return int(items[int(rng.integers(len(items)))])


def _accounts(rng: np.random.Generator, count: int) -> Accounts:
    """Two unguarded USD system accounts first, then random ledgers and flags; sparse ids."""
    ids = set()
    while len(ids) < count:
        ids.add(int(rng.integers(1, 2**64, dtype=np.uint64)) if rng.random() < 0.7
                else int(rng.integers(1, 50)))
    ledger = [1, 1] + [int(rng.integers(1, 3)) for _ in range(count - 2)]
    flags = [0, 0] + [int(rng.choice([0, GUARDED, GUARDED, GUARDED | 2]))
                      for _ in range(count - 2)]
    return Accounts.from_columns(id=list(ids), ledger=ledger, flags=flags)


def _flags(rng: np.random.Generator) -> int:
    """A kind (plain, pending, post, void), sometimes LINKED, rarely two kinds or an unknown bit."""
    flags = int(rng.choice([0, PENDING, POST, VOID], p=[0.35, 0.3, 0.2, 0.15]))
    if rng.random() < 0.25:
        flags |= LINKED
    if rng.random() < 0.04:
        flags |= int(rng.choice([PENDING, POST, VOID]))
    if rng.random() < 0.03:
        flags |= int(rng.choice([1 << 4, 1 << 15]))
    return flags


def _amount(rng: np.random.Generator, big: bool) -> int:
    if big and rng.random() < 0.5:
        return AMOUNT_MAX
    if rng.random() < 0.1:
        return int(rng.choice(AMOUNT_CHOICES))
    return int(rng.integers(1, 60))


def _row(rng, accounts: Accounts, ids: list[int], earlier: list[dict], big: bool) -> dict:
    """One random row; posts and voids mostly refer to an earlier row (its accounts too)."""
    debit, credit = (int(accounts.id[k]) for k in rng.choice(len(accounts), 2, replace=False))
    ledgers = dict(zip(accounts.id.tolist(), accounts.ledger.tolist()))
    same_ledger = [k for k, ledger in ledgers.items() if ledger == ledgers[debit] and k != debit]
    if same_ledger and rng.random() < 0.85:
        credit = _pick(rng, same_ledger)
    if rng.random() < 0.1:  # an unknown account, id 0, or the debit account again
        unknown = _pick(rng, [int(rng.integers(1, 2**64, dtype=np.uint64)), 0, debit])
        debit, credit = (unknown, credit) if rng.random() < 0.5 else (debit, unknown)
    flags = _flags(rng)
    row = dict(id=_pick(rng, ids), debit_account=debit, credit_account=credit,
               amount=_amount(rng, big), ledger=ledgers.get(debit, 1), code=int(rng.integers(0, 3)),
               flags=flags, pending_id=0, timeout_s=0)
    if rng.random() < 0.05:
        row["ledger"] = int(rng.integers(1, 4))
    if flags & (POST | VOID):
        _refer_to_earlier(rng, row, earlier, ids)
    elif rng.random() < 0.04:
        row["pending_id"] = _pick(rng, ids)
    if flags & PENDING or rng.random() < 0.04:
        row["timeout_s"] = int(rng.choice(TIMEOUT_CHOICES_S))
    return row


def _refer_to_earlier(rng, row: dict, earlier: list[dict], ids: list[int]) -> None:
    """pending_id of an earlier row (preferably a pending one), its accounts and amount."""
    pending = [r for r in earlier if r["flags"] & PENDING]
    pool = pending if pending and rng.random() < 0.85 else earlier
    if not pool or rng.random() < 0.1:
        row["pending_id"] = _pick(rng, ids + [0])
        return
    target = pool[int(rng.integers(len(pool)))]
    row["pending_id"] = target["id"]
    if rng.random() < 0.9:
        for name in ("debit_account", "credit_account", "ledger"):
            row[name] = target[name]
    if row["flags"] & VOID:
        row["amount"] = 0 if rng.random() < 0.9 else row["amount"]
    elif rng.random() < 0.8:
        row["amount"] = min(INT64_MAX, max(1, target["amount"] - int(rng.integers(-1, 3))))


def _retry(rng, row: dict) -> dict:
    """A copy of row; a third of the time one compared field differs by a little."""
    row = dict(row)
    if rng.random() < 0.33:
        name = str(rng.choice(["debit_account", "credit_account", "amount", "ledger", "code",
                               "flags", "pending_id", "timeout_s"]))
        row[name] = (row[name] ^ (LINKED if name == "flags" else 1)) if row[name] >= 0 else 0
    return row


def _run_up(rng, accounts: Accounts) -> list[dict]:
    """1018..1023 rows of AMOUNT_MAX between the two system accounts: fields near 2**63."""
    count = int(rng.integers(1018, 1024))
    flags = int(rng.choice([0, PENDING]))
    a, b = int(accounts.id[0]), int(accounts.id[1])
    return [dict(id=RUN_UP_ID_BASE + k, debit_account=a, credit_account=b, amount=AMOUNT_MAX,
                 ledger=1, code=0, flags=flags, pending_id=0, timeout_s=0)
            for k in range(count)]


def _epochs_and_times(rng, count: int, max_epoch_rows: int) -> tuple[list[int], list[int]]:
    """Epochs of 1..max_epoch_rows rows (gaps of 1..3, sometimes 6), times non-decreasing."""
    epochs, times = [], []
    epoch = _pick(rng, EPOCH_BASES)
    time_us = int(rng.choice(TIME_BASES_US))
    while len(epochs) < count:
        for _ in range(int(rng.integers(1, max_epoch_rows + 1))):
            epochs.append(epoch)
            times.append(time_us)
            time_us += int(rng.choice([0, 1, SECOND_US // 2, SECOND_US, 2 * SECOND_US]))
        epoch += int(rng.choice([1, 1, 1, 2, 3, 6]))
    return epochs[:count], times[:count]


def adversarial_workload(seed: int, account_count: int, row_count: int, id_pool: int,
                         max_epoch_rows: int) -> tuple[Accounts, Transfers]:
    rng = np.random.default_rng(seed)
    accounts = _accounts(rng, account_count)
    ids = [int(rng.integers(1, 2**64, dtype=np.uint64)) for _ in range(id_pool)] + [0]
    big = rng.random() < 0.25
    rows = _run_up(rng, accounts) if big else []
    for _ in range(row_count):
        if rows and rng.random() < 0.12:  # a retry: an earlier row again, maybe one field off
            rows.append(_retry(rng, rows[int(rng.integers(max(0, len(rows) - 40), len(rows)))]))
            continue
        rows.append(_row(rng, accounts, ids, rows[-40:], big))
        if rng.random() < 0.5:
            rows[-1]["id"] = int(rng.integers(1, 2**64, dtype=np.uint64))
    epochs, times = _epochs_and_times(rng, row_count + 2, max_epoch_rows)
    run_up = len(rows) - row_count  # the run-up fills an epoch before all others
    epochs = [epochs[1] - 1] * run_up + epochs[1:-1]
    times = [times[0]] * run_up + times[1:-1]
    columns = {name: [row[name] for row in rows] for name in TRANSFER_DTYPES
               if name not in ("epoch", "sim_time_us")}
    return accounts, Transfers.from_columns(epoch=epochs, sim_time_us=times, **columns)


def _outcome(run, accounts, transfers, strict: bool, window: int):
    """Statuses and balances, or the overflow error's key."""
    try:
        result = run(accounts, transfers, strict_serial=strict, window_epochs=window)
    except BalanceOverflowError as error:
        return ("overflow", error.key(), error.transfer_id)
    columns = {name: column.tolist() for name, column in result.balances.columns().items()}
    assert result.status.dtype == np.uint16
    assert len(result.status) == len(transfers)
    return ("done", result.status.tolist(), columns)


def assert_same_as_reference(accounts, transfers, window: int) -> None:
    for strict in (False, True):
        expected = _outcome(run_reference, accounts, transfers, strict, window)
        got = _outcome(run_serial, accounts, transfers, strict, window)
        assert got == expected, f"strict_serial={strict}"


# --- properties ----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    account_count=st.integers(2, 6),
    row_count=st.integers(0, 60),
    id_pool=st.integers(1, 30),
    max_epoch_rows=st.integers(1, 8),
    window=st.sampled_from([0, 1, 2, 3, 100]),
)
def test_serial_equals_reference_on_adversarial_workloads(seed, account_count, row_count, id_pool,
                                                          max_epoch_rows, window):
    accounts, transfers = adversarial_workload(seed, account_count, row_count, id_pool,
                                               max_epoch_rows)
    assert_same_as_reference(accounts, transfers, window)


@pytest.mark.parametrize("seed", [3, 4])
def test_serial_equals_reference_on_a_longer_run(seed):
    """Thousands of rows: tables rebuilt many times, heap entries outlived and compacted."""
    accounts, transfers = adversarial_workload(seed, account_count=12, row_count=4000,
                                               id_pool=1500, max_epoch_rows=40)
    assert_same_as_reference(accounts, transfers, window=3)


def test_adversarial_workloads_reach_every_status_and_overflow():
    """The generator is adversarial enough: every status code and both outcomes occur."""
    seen, overflows = set(), 0
    for seed in range(60):
        accounts, transfers = adversarial_workload(seed, 4, 80, 20, 4)
        for strict in (False, True):
            outcome = _outcome(run_serial, accounts, transfers, strict, 2)
            if outcome[0] == "overflow":
                overflows += 1
            else:
                seen.update(outcome[1])
    assert seen == set(STATUS.values())
    assert overflows > 0


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), capacity_log2=st.integers(4, 9),
       load=st.floats(0.05, 0.5), window_share=st.floats(0, 1))
def test_id_purge_keeps_exactly_the_records_within_the_window(seed, capacity_log2, load,
                                                              window_share):
    """The in-place purge (linear-probing deletion with back-shifts) loses no live record."""
    rng = np.random.default_rng(seed)
    table = np.zeros((1 << capacity_log2, ID_COLUMNS), np.int64)
    keys = np.unique(rng.integers(1, 2**63, int(load * len(table)) + 1))
    rng.shuffle(keys)
    for row, key in enumerate(keys):  # the row a record holds is its insertion order
        slot = find_slot(table, key)
        table[slot] = (key, row)
    window_row = int(window_share * len(keys))
    assert _purge_ids(table, window_row) == len(keys) - window_row
    for row, key in enumerate(keys):
        slot = find_slot(table, key)
        assert (table[slot, 0] == key) == (row >= window_row)
        if row >= window_row:
            assert table[slot, 1] == row
    assert np.count_nonzero(table[:, 0]) == len(keys) - window_row


# --- examples ------------------------------------------------------------------------------------

SYSTEM, ALICE, BOB = 2**64 - 7, 2**63 + 5, 11
ACCOUNTS = Accounts.from_columns(id=[SYSTEM, ALICE, BOB], ledger=[1, 1, 1],
                                 flags=[0, GUARDED, GUARDED])


def _transfers(rows: list[tuple]) -> Transfers:
    """Rows (epoch, id, debit, credit, amount, flags, pending_id, timeout_s), one second apart
    per epoch."""
    names = ("epoch", "id", "debit_account", "credit_account", "amount", "flags", "pending_id",
             "timeout_s")
    columns = {name: [row[k] for row in rows] for k, name in enumerate(names)}
    n = len(rows)
    return Transfers.from_columns(sim_time_us=[r[0] * SECOND_US for r in rows],
                                  ledger=[1] * n, code=[0] * n, **columns)


def test_strict_serial_lets_the_next_chain_spend_a_credit():
    transfers = _transfers([(1, 1, SYSTEM, ALICE, 10, 0, 0, 0), (1, 2, ALICE, BOB, 10, 0, 0, 0)])
    epoch_mode = run_serial(ACCOUNTS, transfers, strict_serial=False)
    strict = run_serial(ACCOUNTS, transfers, strict_serial=True)
    assert epoch_mode.status.tolist() == [STATUS["ok"], STATUS["exceeds_credits"]]
    assert strict.status.tolist() == [STATUS["ok"], STATUS["ok"]]
    assert strict.balances.credits_posted.tolist() == [0, 10, 10]
    assert_same_as_reference(ACCOUNTS, transfers, window=100)


def test_hold_posted_then_expiry_boundary_and_window():
    transfers = _transfers([
        (1, 7, SYSTEM, ALICE, 50, PENDING, 0, 2),  # due at 3 s
        (2, 8, SYSTEM, ALICE, 50, POST, 7, 0),
        (3, 9, SYSTEM, BOB, 5, PENDING, 0, 2),  # due at 5 s: expires at epoch 5's start
        (4, 7, SYSTEM, ALICE, 50, PENDING, 0, 2),  # id 7 still within the window
        (5, 10, SYSTEM, BOB, 5, POST, 9, 0),
        (9, 7, SYSTEM, ALICE, 50, PENDING, 0, 0),  # past it: a new pending transfer
    ])
    result = run_serial(ACCOUNTS, transfers, window_epochs=3)
    assert result.status.tolist() == [STATUS[name] for name in (
        "ok", "ok", "ok", "exists", "pending_transfer_expired", "ok")]
    assert result.balances.credits_pending.tolist() == [0, 50, 0]
    assert_same_as_reference(ACCOUNTS, transfers, window=3)


def test_overflow_is_reported_like_the_reference():
    rows = [(1, k + 1, SYSTEM, ALICE, AMOUNT_MAX, 0, 0, 0) for k in range(1023)]
    transfers = _transfers(rows + [(2, 5000, SYSTEM, BOB, AMOUNT_MAX, 0, 0, 0)])
    with pytest.raises(BalanceOverflowError) as caught:
        run_serial(ACCOUNTS, transfers, strict_serial=False)
    assert caught.value.key() == (2, 1023, SYSTEM, "debits_posted")
    assert caught.value.transfer_id == 5000
    assert_same_as_reference(ACCOUNTS, transfers, window=100)


def test_empty_workload_and_refusals():
    result = run_serial(ACCOUNTS, Transfers.empty())
    assert len(result.status) == 0
    assert result.balances.id.tolist() == ACCOUNTS.id.tolist()
    with pytest.raises(ValueError):
        run_serial(ACCOUNTS, Transfers.empty(), window_epochs=-1)
    for ids in ([1, 0], [5, 5]):
        bad = Accounts.from_columns(id=ids, ledger=[1, 1], flags=[0, 0])
        with pytest.raises(ValueError):
            run_serial(bad, Transfers.empty())
    going_down = _transfers([(2, 1, SYSTEM, ALICE, 1, 0, 0, 0), (1, 2, SYSTEM, ALICE, 1, 0, 0, 0)])
    with pytest.raises(ValueError, match="row 1"):
        run_serial(ACCOUNTS, going_down)
