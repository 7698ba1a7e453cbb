"""Small adversarial workloads for equivalence tests: every status code, cheap to build.

Drawn from one numpy Generator (hypothesis draws the seed and sizes), so an example is a
handful of arrays, not thousands of hypothesis draws.
"""

from __future__ import annotations

import numpy as np

from sim.columns import Accounts, Transfers
from sim.constants import (
    AMOUNT_MAX,
    FLAG_LINKED,
    FLAG_PENDING,
    FLAG_POST_PENDING_TRANSFER,
    FLAG_VOID_PENDING_TRANSFER,
)

FLAG_CHOICES = np.array([
    0, FLAG_LINKED, FLAG_PENDING, FLAG_PENDING | FLAG_LINKED, FLAG_POST_PENDING_TRANSFER,
    FLAG_VOID_PENDING_TRANSFER, FLAG_POST_PENDING_TRANSFER | FLAG_LINKED,
    FLAG_PENDING | FLAG_POST_PENDING_TRANSFER, 0x10, 0x8001,
], np.uint16)
FLAG_WEIGHTS = np.array([30, 6, 20, 3, 20, 10, 3, 2, 1, 1], np.float64)


def adversarial_accounts(rng: np.random.Generator, count: int) -> Accounts:
    small = rng.integers(1, 50, count)
    huge = rng.integers(2**62, 2**63, count).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    ids = np.where(rng.random(count) < 0.5, small.astype(np.uint64), huge)
    ids = np.unique(ids)
    rng.shuffle(ids)
    ledger = rng.choice(np.array([1, 2], np.uint32), len(ids), p=[0.8, 0.2])
    flags = rng.choice(np.array([0, 1], np.uint16), len(ids), p=[0.4, 0.6])
    return Accounts.from_columns(id=ids, ledger=ledger, flags=flags)


def adversarial_workload(seed: int, rows: int, account_count: int = 6) -> tuple[Accounts, Transfers]:
    rng = np.random.default_rng(seed)
    accounts = adversarial_accounts(rng, account_count)
    n = rows
    known = accounts.id
    unknown = np.array([123456789, 2**64 - 1], np.uint64)
    pool = np.concatenate([known, unknown])
    p_known = 0.95
    debit = np.where(rng.random(n) < p_known, rng.choice(known, n), rng.choice(pool, n))
    credit = np.where(rng.random(n) < p_known, rng.choice(known, n), rng.choice(pool, n))
    ledger_of = dict(zip(known.tolist(), accounts.ledger.tolist()))
    _same_ledger_credit(rng, accounts, debit, credit, ledger_of)
    ledger = np.array([ledger_of.get(int(d), 1) for d in debit], np.uint32)
    ledger = np.where(rng.random(n) < 0.02, np.uint32(3) - ledger % 3, ledger).astype(np.uint32)
    id_pool = max(2, n)
    ids = rng.integers(0, id_pool, n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15 % 2**61) % np.uint64(2**63)
    ids = np.where(rng.random(n) < 0.02, np.uint64(0), ids + np.uint64(1))
    flags = rng.choice(FLAG_CHOICES, n, p=FLAG_WEIGHTS / FLAG_WEIGHTS.sum())
    flags = np.where(rng.random(n) < 0.01, rng.integers(0, 2**16, n), flags).astype(np.uint16)
    amount = _amounts(rng, n)
    resolving = (flags & (FLAG_POST_PENDING_TRANSFER | FLAG_VOID_PENDING_TRANSFER)) != 0
    pending_id = np.zeros(n, np.uint64)
    earlier = rng.integers(0, np.arange(n) + 1)
    pending_id[resolving] = ids[earlier[resolving]]
    _point_at_pending(rng, flags, resolving, ids, pending_id, debit, credit, ledger, amount)
    stray = rng.random(n) < 0.03
    pending_id[stray] = ids[earlier[stray]]
    is_void = (flags & FLAG_VOID_PENDING_TRANSFER) != 0
    amount = np.where(is_void & (rng.random(n) < 0.8), 0, amount)
    timeout = np.where((flags & FLAG_PENDING) != 0, rng.integers(0, 6, n), 0)
    timeout = np.where(rng.random(n) < 0.02, 1, timeout).astype(np.uint32)
    _copy_some_rows(rng, n, ids, debit, credit, amount, ledger, flags, pending_id, timeout)
    epoch = np.cumsum(rng.choice([0, 0, 0, 0, 0, 1, 1, 2, 4], n)).astype(np.uint64) + np.uint64(rng.integers(0, 3))
    start_us = rng.choice(np.array([0, -10_000_000, 2**40], np.int64))  # negative times are valid
    sim_time = np.cumsum(rng.integers(0, 1_500_000, n)).astype(np.int64) + start_us
    code = rng.integers(0, 16, n).astype(np.uint16)
    transfers = Transfers.from_columns(
        id=ids, epoch=epoch, sim_time_us=sim_time, debit_account=debit, credit_account=credit,
        amount=amount, ledger=ledger, code=code, flags=flags, pending_id=pending_id, timeout_s=timeout)
    return accounts, _with_funding(accounts, transfers)


def _same_ledger_credit(rng, accounts, debit, credit, ledger_of) -> None:
    """Most credit accounts share the debit account's ledger (else every row is a mismatch)."""
    for i in range(len(debit)):
        ledger = ledger_of.get(int(debit[i]))
        if ledger is None or rng.random() < 0.05:
            continue
        same = accounts.id[(accounts.ledger == ledger) & (accounts.id != debit[i])]
        if len(same):
            credit[i] = same[rng.integers(0, len(same))]


def _point_at_pending(rng, flags, resolving, ids, pending_id, debit, credit, ledger, amount) -> None:
    """Most posts/voids name an earlier PENDING row, with its accounts and an amount near its."""
    pending_rows, resolving_rows = [], []
    for i in range(len(flags)):
        if resolving[i] and resolving_rows and rng.random() < 0.35:
            j = resolving_rows[-1]  # a second post/void of the same pending transfer
            pending_id[i] = pending_id[j]
            debit[i], credit[i], ledger[i] = debit[j], credit[j], ledger[j]
        elif resolving[i] and pending_rows and rng.random() < 0.85:
            recent = rng.random() < 0.5
            j = pending_rows[-1] if recent else pending_rows[rng.integers(0, len(pending_rows))]
            pending_id[i] = ids[j]
            debit[i], credit[i], ledger[i] = debit[j], credit[j], ledger[j]
            amount[i] = max(1, amount[j] + rng.integers(-3, 2))
        if flags[i] & FLAG_PENDING:
            pending_rows.append(i)
        if resolving[i]:
            resolving_rows.append(i)


def _amounts(rng: np.random.Generator, n: int) -> np.ndarray:
    amount = rng.integers(1, 60, n).astype(np.int64)
    round_numbers = rng.random(n) < 0.4
    amount[round_numbers] = rng.choice(np.array([10, 20, 25, 50, 100], np.int64), round_numbers.sum())
    special = rng.random(n) < 0.06
    amount[special] = rng.choice(np.array([0, -1, AMOUNT_MAX, AMOUNT_MAX + 1, 500], np.int64), special.sum())
    return amount


def _copy_some_rows(rng, n, *columns) -> None:
    """Make some rows exact (or near) copies of earlier rows, so `exists` happens."""
    for i in np.flatnonzero(rng.random(n) < 0.1):
        if i == 0:
            continue
        j = rng.integers(0, i)
        for c in columns:
            c[i] = c[j]
        if rng.random() < 0.3:
            columns[3][i] = columns[3][i] + 1  # amount differs: exists_with_different_fields


def _with_funding(accounts: Accounts, transfers: Transfers) -> Transfers:
    """A first epoch that funds every flagged account from an unflagged one of its ledger."""
    rows = []
    first_epoch = int(transfers.epoch[0]) if len(transfers) else 1
    if first_epoch == 0:
        return transfers
    for ledger in np.unique(accounts.ledger):
        on = accounts.ledger == ledger
        sources = accounts.id[on & (accounts.flags == 0)]
        targets = accounts.id[on & (accounts.flags == 1)]
        if len(sources) == 0:
            continue
        for t in targets:
            rows.append((int(sources[0]), int(t), int(ledger)))
    if not rows:
        return transfers
    m = len(rows)
    funding = Transfers.from_columns(
        id=np.uint64(2**63 + 7) + np.arange(m, dtype=np.uint64),
        epoch=np.full(m, first_epoch - 1, np.uint64), sim_time_us=np.full(m, transfers.sim_time_us[0], np.int64),
        debit_account=[r[0] for r in rows], credit_account=[r[1] for r in rows],
        amount=np.full(m, 100, np.int64), ledger=[r[2] for r in rows], code=np.full(m, 8, np.uint16),
        flags=np.zeros(m, np.uint16), pending_id=np.zeros(m, np.uint64), timeout_s=np.zeros(m, np.uint32))
    return Transfers.concat([funding, transfers])
