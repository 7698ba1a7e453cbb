"""The auditor (sim.audit): exact per-ledger sums past int64, one way for every source."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from sim.audit import (
    audit_from_array,
    audit_to_array,
    boundary_audit,
    final_invariants,
    halves_of_balances,
    ledger_sums,
    ledger_sums_from_halves,
    write_audit,
)
from sim.columns import Accounts, Balances
from sim.constants import ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, INT64_MAX

BIG = INT64_MAX - 7  # four of these pass int64 many times over


def big_balances() -> Balances:
    """Ledger 1: four accounts each with BIG posted on both sides; ledger 2: one small one."""
    n = 5
    big = np.array([BIG] * 4 + [3], np.int64)
    return Balances.from_columns(
        id=np.arange(1, n + 1, dtype=np.uint64), ledger=np.array([1, 1, 1, 1, 2], np.uint32),
        debits_pending=big.copy(), debits_posted=big.copy(),
        credits_pending=big.copy(), credits_posted=big.copy())


def test_ledger_sums_are_exact_past_int64():
    sums = ledger_sums(big_balances())
    assert sums == {1: (4 * BIG,) * 4, 2: (3,) * 4}
    assert 4 * BIG > INT64_MAX


def test_shard_halves_and_balances_give_the_same_sums():
    """Split over two 'shards', each keeping (high, low) halves: the same exact totals."""
    balances = big_balances()
    values = np.unique(balances.ledger)
    columns = [balances.debits_pending, balances.debits_posted, balances.credits_pending,
               balances.credits_posted]
    first, second = np.arange(5) < 2, np.arange(5) >= 2
    halves = [halves_of_balances(values, balances.ledger[part], [c[part] for c in columns])
              for part in (first, second)]
    assert ledger_sums_from_halves(values, halves) == ledger_sums(balances)


def test_boundary_audit_names_ledger_and_overdrawn_account():
    rows, found = boundary_audit(9, {1: (0, 5, 0, 4), 2: (1, 1, 1, 1)}, [77])
    assert [(r["ledger"], r["double_entry"], r["overdraft"]) for r in rows] == [
        (1, False, False), (2, True, False)]
    messages = [v["message"] for v in found]
    assert any("ledger 1" in m and "debits_posted 5 vs credits_posted 4" in m for m in messages)
    assert any(v["invariant"] == "overdraft" and "account 77" in v["message"] for v in found)
    assert all(v["epoch"] == 9 for v in found)


def test_final_invariants_catch_disagreement_and_overdraft():
    balances = big_balances()
    accounts = Accounts.from_columns(
        id=balances.id, ledger=balances.ledger,
        flags=np.array([0, 0, 0, 0, ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS], np.uint16))
    running = ledger_sums(balances)
    assert [v["invariant"] for v in final_invariants(accounts, balances, running)] == ["overdraft"]
    off_by_one = {**running, 2: (3, 3, 3, 4)}
    kinds = [v["invariant"] for v in final_invariants(accounts, balances, off_by_one)]
    assert kinds == ["double_entry", "overdraft"]


def test_audit_rows_survive_the_journal_encoding_and_parquet(tmp_path):
    rows, _ = boundary_audit(2**64 - 1, ledger_sums(big_balances()), [])
    assert audit_from_array(audit_to_array(rows)) == rows
    write_audit(tmp_path / "audit.parquet", rows)
    back = pq.read_table(tmp_path / "audit.parquet").to_pylist()
    assert [int(r["credits_posted"]) for r in back] == [4 * BIG, 3]
    assert back[0]["epoch"] == 2**64 - 1
