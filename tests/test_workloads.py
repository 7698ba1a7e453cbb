"""Workload building blocks and the plain P2P source: sparse ids (pinned to a numpy oracle),
the Zipf pmf's normaliser, amounts, and `workloads.plain.PlainP2P` (materialised, streamed,
endless)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.columns import ACCOUNT_DTYPES, TRANSFER_DTYPES, Accounts, Transfers
from sim.constants import CODE
from workloads.base import WorkloadSource, lognormal_minor, materialize
from workloads.ids import ID_DOMAIN_ACCOUNT, ID_DOMAIN_TRANSFER, range_ids, sparse_ids
from workloads.plain import FUNDING_ENDLESS_MINOR, PlainP2P, plain_transfer_workload
from workloads.zipf import NORMALISER_EXACT_RANKS, zipf_probability


@pytest.fixture(scope="module")
def plain():
    return plain_transfer_workload(10_000, 40_000, 4_000, 1.0, np.random.default_rng(5))


def assert_same(a, b) -> None:
    for name, column in a.columns().items():
        other = b.columns()[name]
        assert column.dtype == other.dtype, name
        assert np.array_equal(column, other), name


def differs(a: Transfers, b: Transfers) -> bool:
    return len(a) != len(b) or not all(
        np.array_equal(a.columns()[n], b.columns()[n]) for n in ("debit_account", "amount")
    )


def top_share(debit_accounts: np.ndarray, share: float) -> float:
    """Share of rows made by the busiest `share` of distinct senders."""
    _, counts = np.unique(debit_accounts, return_counts=True)
    counts = np.sort(counts)[::-1]
    return counts[: max(1, int(len(counts) * share))].sum() / counts.sum()


def assert_schema(accounts: Accounts, transfers: Transfers) -> None:
    for name, dtype in ACCOUNT_DTYPES.items():
        assert accounts.columns()[name].dtype == dtype, name
    for name, dtype in TRANSFER_DTYPES.items():
        assert transfers.columns()[name].dtype == dtype, name


def assert_ids_sparse(ids: np.ndarray) -> None:
    assert len(np.unique(ids)) == len(ids)
    assert ids.min() > 0
    assert ids.max() < 2**63
    assert not np.array_equal(np.sort(ids), np.arange(1, len(ids) + 1, dtype=np.uint64))
    assert ids.max() > 1000 * len(ids)  # scattered over the 63-bit space


def assert_ordered(transfers: Transfers) -> None:
    assert np.all(np.diff(transfers.epoch.astype(np.int64)) >= 0)
    assert np.all(np.diff(transfers.sim_time_us) >= 0)


def assert_accounts_match(accounts: Accounts, transfers: Transfers) -> None:
    """Both accounts exist, differ, and share the transfer's ledger."""
    order = np.argsort(accounts.id)
    sorted_ids = accounts.id[order]
    for column in (transfers.debit_account, transfers.credit_account):
        position = np.searchsorted(sorted_ids, column)
        assert np.all(sorted_ids[np.minimum(position, len(sorted_ids) - 1)] == column)
        assert np.array_equal(accounts.ledger[order][position], transfers.ledger)
    assert np.all(transfers.debit_account != transfers.credit_account)


# --- ids ----------------------------------------------------------------------------------
MASK63 = (1 << 63) - 1


def oracle_ids(index: np.ndarray, domain: int) -> np.ndarray:
    """The id scheme written out in numpy, step by step (the module doc of workloads.ids)."""
    x = (index.astype(np.uint64) + np.uint64((domain << 56) + 1)) & np.uint64(MASK63)
    x ^= x >> np.uint64(31)
    x = (x * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(MASK63)
    x ^= x >> np.uint64(29)
    x = (x * np.uint64(0x94D049BB133111EB)) & np.uint64(MASK63)
    return x ^ (x >> np.uint64(32))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, (1 << 56) - 2), min_size=1, max_size=200, unique=True))
def test_sparse_ids_are_unique_positive_63_bit_and_match_the_oracle(indices):
    for domain in (ID_DOMAIN_ACCOUNT, ID_DOMAIN_TRANSFER):
        index = np.array(indices, np.uint64)
        ids = sparse_ids(index, domain)
        assert np.array_equal(ids, oracle_ids(index, domain))
        assert len(np.unique(ids)) == len(indices)
        assert ids.min() > 0
        assert ids.max() < 2**63


def test_range_ids_are_sparse_ids_of_the_range():
    assert np.array_equal(range_ids(123, 1_000, ID_DOMAIN_TRANSFER),
                          sparse_ids(np.arange(123, 1_123), ID_DOMAIN_TRANSFER))


def test_sparse_ids_of_a_dense_range_are_unique():
    assert_ids_sparse(sparse_ids(np.arange(1_000_000), ID_DOMAIN_ACCOUNT))


def test_sparse_ids_refuse_indices_out_of_range():
    with pytest.raises(ValueError):
        sparse_ids(np.array([-1]), ID_DOMAIN_ACCOUNT)
    with pytest.raises(ValueError):
        sparse_ids(np.array([1 << 56]), ID_DOMAIN_ACCOUNT)


# --- Zipf pmf, amounts ----------------------------------------------------------------------
@pytest.mark.parametrize("exponent", [0.0, 0.7, 1.0, 1.2])
@pytest.mark.parametrize("rank_count", [1, 1_000, NORMALISER_EXACT_RANKS + 3_000_000])
def test_zipf_probability_sums_to_one(rank_count, exponent):
    ranks = np.arange(rank_count)
    exact = (ranks + 1.0) ** -exponent
    exact /= np.sum(exact)
    got = zipf_probability(ranks, rank_count, exponent)
    assert np.abs(got - exact).max() <= 1e-9 * exact.max()
    assert got.sum() == pytest.approx(1.0, abs=1e-9)


def test_lognormal_minor_is_integer_and_clipped():
    amounts = lognormal_minor(np.random.default_rng(4), 100_000, 2_000, 1.5, 50_000)
    assert amounts.dtype == np.int64
    assert amounts.min() >= 1
    assert amounts.max() == 50_000
    assert 1_900 <= np.median(amounts) <= 2_100


# --- plain ----------------------------------------------------------------------------------
def test_plain_schema_ids_and_accounts(plain):
    accounts, transfers = plain
    assert_schema(accounts, transfers)
    assert_ids_sparse(accounts.id)
    assert_ids_sparse(transfers.id)
    assert_ordered(transfers)
    assert_accounts_match(accounts, transfers)
    assert len(accounts) == 10_001
    assert (accounts.flags == 0).sum() == 1
    assert len(transfers) == 50_000
    assert np.all(transfers.flags == 0)
    assert np.all(transfers.pending_id == 0)
    assert np.all(transfers.timeout_s == 0)
    assert np.all(transfers.amount > 0)


def test_plain_funds_every_user_once_then_p2p(plain):
    accounts, transfers = plain
    funding = transfers.code == CODE["cash_in"]
    assert np.array_equal(np.flatnonzero(funding), np.arange(10_000))
    assert np.array_equal(np.sort(transfers.credit_account[funding]),
                          np.sort(accounts.id[accounts.flags != 0]))
    assert np.all(transfers.debit_account[funding] == accounts.id[accounts.flags == 0][0])
    assert np.all(transfers.code[~funding] == CODE["p2p"])
    assert transfers.epoch[funding].max() < transfers.epoch[~funding].min()
    rows_per_epoch = np.bincount(transfers.epoch.astype(np.int64))
    assert rows_per_epoch.tolist() == [4_000, 4_000, 2_000] + [4_000] * 10


def test_plain_is_deterministic_and_skewed(plain):
    _, transfers = plain
    again = plain_transfer_workload(10_000, 40_000, 4_000, 1.0, np.random.default_rng(5))[1]
    assert_same(transfers, again)
    other = plain_transfer_workload(10_000, 40_000, 4_000, 1.0, np.random.default_rng(6))[1]
    assert differs(transfers, other)
    p2p = transfers.code == CODE["p2p"]
    assert top_share(transfers.debit_account[p2p], 0.2) > 0.5


def test_plain_is_a_workload_source_that_streams_what_it_materialises(plain):
    source = PlainP2P(10_000, 40_000, 4_000, 1.0, np.random.default_rng(5))
    assert isinstance(source, WorkloadSource)
    parts = list(source.epochs())
    assert len(parts) == source.epoch_total == 13 and source.funding_epoch_count == 3
    assert source.account_count == len(source.accounts()) == 10_001
    assert_same(Transfers.concat(parts), plain[1])
    assert_same(Transfers.concat(list(source.epochs())), plain[1])  # epochs() replays


def test_endless_plain_funds_every_user_fully_and_keeps_ids_unique():
    source = PlainP2P(500, None, 200, 1.2, np.random.default_rng(2))
    assert source.epoch_total is None
    parts = list(itertools.islice(source.epochs(), 40))
    rows = Transfers.concat(parts)
    funding = rows.code == CODE["cash_in"]
    assert funding.sum() == 500 and np.all(rows.amount[funding] == FUNDING_ENDLESS_MINOR)
    assert len(rows) == 500 + 37 * 200  # funding epochs of 200, 200, 100 rows, then P2P
    assert_ids_sparse(rows.id)
    assert_ordered(rows)
    assert np.all(rows.debit_account != rows.credit_account)
