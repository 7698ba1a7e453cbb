"""The benchmark's peers agree with the strict-serial ledger on the same rows (xpay.peers)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.columns import Accounts, Transfers
from sim.constants import ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, EXCEEDS_CREDITS, OK
from workloads.plain import plain_transfer_workload
from xpay.peers import PEERS, run_peers


@pytest.fixture(scope="module")
def workload():
    return plain_transfer_workload(2_000, 10_000, 1_000, 1.2, np.random.default_rng(5))


def test_every_peer_that_runs_equals_the_serial_ledger(workload):
    accounts, transfers = workload
    results = run_peers(accounts, transfers, PEERS, setup_rows=2_000, slice_rows=3_000)
    assert [r.name for r in results] == list(PEERS)  # nothing silently dropped
    ran = [r for r in results if r.seconds is not None]
    assert {"bare_kernel", "python_dict", "sqlite_per_txn", "sqlite_batched"} <= {r.name for r in ran}
    for r in ran:
        assert r.equal is True, r.name
    for r in results:
        if r.seconds is None:
            assert r.note.startswith("skipped:") and r.equal is None


def _tiny(amounts):
    ids = np.array([11, 22, 33], np.uint64)
    flags = np.array([0, ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS], np.uint16)
    accounts = Accounts.from_columns(id=ids, flags=flags, ledger=np.full(3, 840, np.uint32))
    n = len(amounts)
    debit = np.array([11] + [22] * (n - 1), np.uint64)
    credit = np.array([22] + [33] * (n - 1), np.uint64)
    transfers = Transfers.from_columns(
        id=np.arange(1, n + 1, dtype=np.uint64), debit_account=debit, credit_account=credit,
        amount=np.array(amounts, np.int64), ledger=np.full(n, 840, np.uint32), code=np.ones(n, np.uint16),
        flags=np.zeros(n, np.uint16), epoch=np.zeros(n, np.uint64), sim_time_us=np.arange(n, dtype=np.int64),
        pending_id=np.zeros(n, np.uint64), timeout_s=np.zeros(n, np.uint32))
    return accounts, transfers


def test_an_underfunded_account_is_refused_by_every_peer():
    accounts, transfers = _tiny([100, 60, 60])  # funds 100, then 60 passes, the next 60 does not
    for r in run_peers(accounts, transfers, ["bare_kernel", "python_dict", "sqlite_per_txn"]):
        assert r.status.tolist() == [OK, OK, EXCEEDS_CREDITS], r.name
        assert r.equal is True


def test_a_skipped_peer_says_why():
    accounts, transfers = _tiny([10])
    (result,) = run_peers(accounts, transfers, ["duckdb_batched"])
    assert result.seconds is None and "skipped" in result.note
