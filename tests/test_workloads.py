"""Workload generators: determinism, schema, ids, ordering, chains, pending references, skew."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.columns import ACCOUNT_DTYPES, TRANSFER_DTYPES, Accounts, Transfers
from sim.constants import (
    ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS,
    AMOUNT_MAX,
    CODE,
    FLAG_LINKED,
    FLAG_PENDING,
    FLAG_POST_PENDING_TRANSFER,
    FLAG_VOID_PENDING_TRANSFER,
    LEDGER_EUR,
    LEDGER_USD,
    MICROSECONDS_PER_SECOND,
)
from workloads.base import (
    ID_DOMAIN_ACCOUNT,
    ID_DOMAIN_TRANSFER,
    WorkloadSource,
    ZipfRanks,
    lognormal_minor,
    materialize,
    sparse_ids,
)
from workloads.plain import plain_transfer_workload
from workloads.quickstart import (
    FX_EXCHANGE_CODE,
    QuickstartConfig,
    QuickstartWorkload,
    system_account_index,
)

SMALL = QuickstartConfig(user_count=10_000, epoch_count=8, rows_per_epoch=5_000)
RESOLVING = FLAG_POST_PENDING_TRANSFER | FLAG_VOID_PENDING_TRANSFER


def quickstart(seed: int, config: QuickstartConfig = SMALL) -> QuickstartWorkload:
    return QuickstartWorkload(config, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def small():
    workload = quickstart(11)
    accounts, transfers = materialize(workload)
    return workload, accounts, transfers


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


# --- base helpers ---------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, (1 << 56) - 2), min_size=1, max_size=200, unique=True))
def test_sparse_ids_are_unique_positive_and_63_bit(indices):
    for domain in (ID_DOMAIN_ACCOUNT, ID_DOMAIN_TRANSFER):
        ids = sparse_ids(np.array(indices, np.uint64), domain)
        assert len(np.unique(ids)) == len(indices)
        assert ids.min() > 0
        assert ids.max() < 2**63


def test_sparse_ids_of_a_dense_range_are_unique():
    assert_ids_sparse(sparse_ids(np.arange(1_000_000), ID_DOMAIN_ACCOUNT))


def test_zipf_ranks_match_their_probabilities():
    ranks = ZipfRanks(1_000, 1.2)
    draws = ranks.draw(np.random.default_rng(1), 400_000)
    assert draws.dtype == np.int64
    assert 0 <= draws.min() and draws.max() < 1_000
    frequency = np.bincount(draws, minlength=1_000) / len(draws)
    probability = ranks.probabilities()
    assert probability.sum() == pytest.approx(1.0)
    assert np.abs(frequency[:10] - probability[:10]).max() < 0.004
    assert np.abs(frequency - probability).sum() < 0.03


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0, 1.0000001, 2.5])
def test_zipf_ranks_stay_in_range(exponent):
    for rank_count in (1, 2, 7, 100_000):
        draws = ZipfRanks(rank_count, exponent).draw(np.random.default_rng(2), 20_000)
        assert draws.min() >= 0
        assert draws.max() < rank_count


def test_zipf_exponent_zero_is_uniform():
    draws = ZipfRanks(10, 0.0).draw(np.random.default_rng(3), 100_000)
    assert np.abs(np.bincount(draws) / len(draws) - 0.1).max() < 0.01


def test_lognormal_minor_is_integer_and_clipped():
    amounts = lognormal_minor(np.random.default_rng(4), 100_000, 2_000, 1.5, 50_000)
    assert amounts.dtype == np.int64
    assert amounts.min() >= 1
    assert amounts.max() == 50_000
    assert 1_900 <= np.median(amounts) <= 2_100


# --- quickstart -----------------------------------------------------------------------------
def test_quickstart_is_a_workload_source(small):
    workload, _, _ = small
    assert isinstance(workload, WorkloadSource)
    assert workload.name == "quickstart"


def test_quickstart_same_seed_same_arrays_and_replays(small):
    workload, accounts, transfers = small
    accounts_again, transfers_again = materialize(quickstart(11))
    assert_same(accounts, accounts_again)
    assert_same(transfers, transfers_again)
    assert_same(transfers, materialize(workload)[1])  # epochs() replays from the start


def test_quickstart_other_seed_differs(small):
    _, _, transfers = small
    assert differs(transfers, materialize(quickstart(12))[1])


def test_quickstart_schema_and_sparse_ids(small):
    _, accounts, transfers = small
    assert_schema(accounts, transfers)
    assert_ids_sparse(accounts.id)
    assert_ids_sparse(transfers.id)
    assert_accounts_match(accounts, transfers)


def test_quickstart_accounts_layout(small):
    workload, accounts, _ = small
    config = workload.config
    system = np.flatnonzero(accounts.flags == 0)
    assert len(system) == 6
    assert set(accounts.ledger[system].tolist()) == {LEDGER_USD, LEDGER_EUR}
    users = accounts.flags == ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
    assert users.sum() == config.user_count + config.eur_holder_count + config.merchant_count
    assert (accounts.ledger == LEDGER_EUR).sum() == config.eur_holder_count + 3


def test_quickstart_epochs_increase_and_time_never_goes_back(small):
    workload, _, _ = small
    epoch_last, time_last = -1, -1
    tick_us = workload.config.tick_us
    for part in workload.epochs():
        epoch = int(part.epoch[0])
        assert np.all(part.epoch == epoch)
        assert epoch > epoch_last
        assert part.sim_time_us[0] >= time_last
        assert np.all(np.diff(part.sim_time_us) >= 0)
        assert part.sim_time_us[0] >= epoch * tick_us
        assert part.sim_time_us[-1] < (epoch + 1) * tick_us
        epoch_last, time_last = epoch, int(part.sim_time_us[-1])
    assert epoch_last == workload.epoch_total - 1


def test_quickstart_funding_then_traffic_epochs(small):
    workload, accounts, transfers = small
    config = workload.config
    funding = transfers.epoch < config.funding_epoch_count
    assert np.all(transfers.code[funding] == CODE["cash_in"])
    funded = transfers.credit_account[funding]
    assert len(np.unique(funded)) == len(funded) == config.user_count + config.eur_holder_count
    sources = {int(accounts.id[system_account_index(ledger, "funding")])
               for ledger in (LEDGER_USD, LEDGER_EUR)}
    assert set(np.unique(transfers.debit_account[funding]).tolist()) == sources
    traffic_rows = np.bincount(transfers.epoch[~funding].astype(np.int64))
    assert np.all(traffic_rows[config.funding_epoch_count :] == config.rows_per_epoch)


def test_quickstart_amounts_and_flag_rules(small):
    _, _, transfers = small
    void = transfers.flags == FLAG_VOID_PENDING_TRANSFER
    assert np.all(transfers.amount[void] == 0)
    assert np.all(transfers.amount[~void] > 0)
    assert np.all(transfers.amount <= AMOUNT_MAX)
    pending = transfers.flags == FLAG_PENDING
    assert np.all(transfers.timeout_s[pending] > 0)
    assert np.all(transfers.timeout_s[~pending] == 0)
    resolving = (transfers.flags & RESOLVING) != 0
    assert np.all(transfers.pending_id[~resolving] == 0)
    assert np.all(transfers.pending_id[resolving] != 0)


def test_quickstart_chain_legs_adjacent_linked_only_before_the_last(small):
    workload, accounts, transfers = small
    linked = np.flatnonzero(transfers.flags & FLAG_LINKED)
    assert len(linked) > 0
    last_of_epoch = np.array([stop - 1 for _, stop in transfers.epoch_bounds()])
    assert not np.isin(last_of_epoch, linked).any()  # no chain left open
    following = linked + 1
    assert np.all(transfers.flags[following] & FLAG_LINKED == 0)  # every chain has two legs
    assert np.all(transfers.code[linked] == FX_EXCHANGE_CODE)
    assert np.all(transfers.code[following] == FX_EXCHANGE_CODE)
    assert np.all(transfers.sim_time_us[linked] == transfers.sim_time_us[following])
    assert np.all(transfers.ledger[linked] != transfers.ledger[following])
    config = workload.config
    to_eur = transfers.ledger[linked] == LEDGER_USD
    rate_ppm = np.where(to_eur, config.usd_to_eur_ppm, config.eur_to_usd_ppm)
    assert np.array_equal(transfers.amount[following],
                          np.maximum(transfers.amount[linked] * rate_ppm // 1_000_000, 1))
    unchained_exchange = (transfers.code == FX_EXCHANGE_CODE) & ~np.isin(
        np.arange(len(transfers)), np.concatenate((linked, following)))
    assert not unchained_exchange.any()


def test_quickstart_chain_legs_pair_the_same_user(small):
    workload, accounts, transfers = small
    linked = np.flatnonzero(transfers.flags & FLAG_LINKED)
    ids = workload.account_ids
    holder_usd = ids[workload.user_usd_base + workload.eur_holder_users]
    holder_eur = ids[workload.user_eur_base : workload.merchant_base]
    user_of = dict(zip(holder_usd.tolist(), range(len(holder_usd))))
    user_of.update(zip(holder_eur.tolist(), range(len(holder_eur))))
    for row in linked[:200].tolist():
        assert user_of[int(transfers.debit_account[row])] == user_of[
            int(transfers.credit_account[row + 1])]


def test_quickstart_posts_and_voids_refer_to_earlier_pending(small):
    workload, _, transfers = small
    config = workload.config
    pending = np.flatnonzero(transfers.flags == FLAG_PENDING)
    resolving = np.flatnonzero(transfers.flags & RESOLVING)
    assert len(resolving) > 0
    assert len(np.unique(transfers.pending_id[resolving])) == len(resolving)  # at most once
    order = np.argsort(transfers.id[pending])
    position = np.searchsorted(transfers.id[pending][order], transfers.pending_id[resolving])
    assert np.all(position < len(pending))
    auth = pending[order][position]
    assert np.array_equal(transfers.id[auth], transfers.pending_id[resolving])
    assert np.all(transfers.epoch[auth] < transfers.epoch[resolving])
    for column in ("debit_account", "credit_account", "ledger"):
        values = transfers.columns()[column]
        assert np.array_equal(values[auth], values[resolving])
    post = transfers.flags[resolving] == FLAG_POST_PENDING_TRANSFER
    assert np.all(transfers.amount[resolving][post] <= transfers.amount[auth][post])
    assert np.any(transfers.amount[resolving][post] < transfers.amount[auth][post])  # partial
    assert np.any(~post)  # some voids
    # Resolved before the hold expires (epoch start <= first row's time of that epoch).
    epoch_start = transfers.epoch[resolving].astype(np.int64) * config.tick_us
    expiry = transfers.sim_time_us[auth] + transfers.timeout_s[auth].astype(np.int64) * (
        MICROSECONDS_PER_SECOND)
    assert np.all(expiry > epoch_start + config.tick_us)


def test_quickstart_leaves_some_authorisations_to_expire():
    config = QuickstartConfig(user_count=10_000, epoch_count=12, rows_per_epoch=5_000)
    transfers = materialize(quickstart(3, config))[1]
    pending_ids = transfers.id[transfers.flags == FLAG_PENDING]
    resolved = transfers.pending_id[(transfers.flags & RESOLVING) != 0]
    authorised_epoch = transfers.epoch[transfers.flags == FLAG_PENDING]
    old = authorised_epoch < transfers.epoch.max() - config.capture_delay_epochs_max
    never_resolved = ~np.isin(pending_ids, resolved) & old
    assert 0.01 < never_resolved.sum() / old.sum() < 0.15


def test_quickstart_p2p_is_zipf_skewed_and_hot_users_are_scattered(small):
    workload, _, transfers = small
    p2p = transfers.code == CODE["p2p"]
    assert top_share(transfers.debit_account[p2p], 0.2) > 0.5
    assert top_share(transfers.credit_account[p2p], 0.2) > 0.5
    hottest_users = workload.sender_user_of_rank[:100]
    assert 0.2 < np.median(hottest_users) / workload.config.user_count < 0.8


def test_quickstart_simpy_process_ticks_once_per_epoch(small):
    workload, _, _ = small
    iterator = workload.epochs()
    next(iterator)
    assert workload.tick_count == 1  # lazy: one tick drawn per epoch consumed
    epoch_count = 1 + sum(1 for _ in iterator)
    assert epoch_count == workload.epoch_total
    assert workload.tick_count == workload.epoch_total
    # the process's start, one timeout between ticks, and its end
    assert workload.simpy_event_count == workload.epoch_total + 1


@pytest.mark.parametrize(
    "change",
    [dict(user_count=1), dict(rows_per_epoch=0), dict(fx_share=1.5),
     dict(card_authorize_share=0.6, fx_share=0.3, top_up_share=0.2),
     dict(card_capture_share=0.9, card_void_share=0.2), dict(capture_delay_epochs_max=0)],
)
def test_quickstart_config_refuses_bad_values(change):
    with pytest.raises(ValueError):
        QuickstartConfig(**change)


def test_quickstart_default_config_size():
    config = QuickstartConfig()
    assert config.user_count == 1_000_000
    total_rows = (config.funding_epoch_count + config.epoch_count) * config.rows_per_epoch
    assert 2_000_000 <= total_rows <= 3_000_000


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
