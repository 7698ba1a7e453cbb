"""Scenario workloads: strict config reading, determinism, codes, skew, daily curve, bursts,
and a run through the engine with invariants held.

Every generated test uses a SMALL variant of a shipped scenario (20k users, a low rate) so the
module runs in seconds.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.constants import (
    AMOUNT_MAX, CODE, FLAG_LINKED, FLAG_PENDING, LEDGER_BTC, LEDGER_EUR, LEDGER_USD, STATUS,
)
from sim.errors import InputRefused
from tests.scenario_helpers import generate, small, traffic
from workloads.base import WorkloadSource, materialize
from workloads.crypto import coin_units_for_fiat, fiat_for_coin_units, fiat_price_cents
from workloads.model import ScenarioWorkload, stable_time_order
from workloads.population import AffinePermutation, PopulationLayout
from workloads.registry import build_workload
from workloads.scenario import (
    SCENARIO_DIR, Population, Resize, Scenario, load_scenario, parse_scenario, resize,
    scenario_names,
)

SHIPPED = ("quick", "mature", "x-scale-day", "black-friday", "viral-burst", "crypto-crash")


@pytest.fixture(scope="module")
def quick_small():
    return generate(small("quick"), 7)


# --- strict reading ------------------------------------------------------------------------
def test_every_shipped_scenario_loads():
    assert set(SHIPPED) <= set(scenario_names())
    for name in SHIPPED:
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.scenario.description
        assert (SCENARIO_DIR / f"{name}.toml").read_text().startswith("#")


def test_unknown_key_is_named():
    with pytest.raises(InputRefused, match="scenario quick: unknown key rate.mean_per_sec"):
        parse_scenario({"rate": {"mean_per_sec": 3.0}}, "quick")


def test_unknown_section_is_named():
    with pytest.raises(InputRefused, match="unknown section speed"):
        parse_scenario({"speed": {"x": 1}}, "t")


def test_bad_type_is_named():
    with pytest.raises(InputRefused, match=r"population.users must be int, not str"):
        parse_scenario({"population": {"users": "many"}}, "t")
    with pytest.raises(InputRefused, match=r"population.users must be int, not bool"):
        parse_scenario({"population": {"users": True}}, "t")
    with pytest.raises(InputRefused, match=r"bursts\[0\].peak_multiplier must be float"):
        parse_scenario({"bursts": [{"peak_multiplier": "big"}]}, "t")


def test_out_of_range_is_named():
    with pytest.raises(InputRefused, match=r"time.tick_s\(=0.0\) must be > 0.0"):
        parse_scenario({"time": {"tick_s": 0}}, "t")
    with pytest.raises(InputRefused, match=r"mix.p2p\(=1.5\) must be <= 1.0"):
        parse_scenario({"mix": {"p2p": 1.5}}, "t")
    with pytest.raises(InputRefused, match="mix shares sum to"):
        parse_scenario({"mix": {"p2p": 0.5}}, "t")
    with pytest.raises(InputRefused, match=r"rate.peaks\[0\] must have 2 values, not 1"):
        parse_scenario({"rate": {"peaks": [[10.0]]}}, "t")
    with pytest.raises(InputRefused, match=r"time.holidays\[0\] must be int, not float"):
        parse_scenario({"time": {"holidays": [0.5]}}, "t")
    with pytest.raises(InputRefused, match=r"bursts\[0\].kind"):
        parse_scenario({"bursts": [{"kind": "meteor"}]}, "t")
    with pytest.raises(InputRefused, match=r"clients.bad_share\(=nan\) must be a finite number"):
        parse_scenario({"clients": {"bad_share": float("nan")}}, "t")
    with pytest.raises(InputRefused, match=r"rate.scale\(=inf\) must be a finite number"):
        parse_scenario({"rate": {"scale": float("inf")}}, "t")


def test_partial_file_keeps_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[population]\nusers = 5000\n[rate]\nscale = 0.5\n")
    scenario = load_scenario(path)
    assert scenario.name == "mine"
    assert scenario.population.users == 5000
    assert scenario.rate.scale == 0.5
    assert scenario.mix == Scenario().mix


def test_unknown_scenario_name_is_refused():
    with pytest.raises(InputRefused, match="no such scenario"):
        load_scenario("no-such-scenario")


# --- protocol, determinism -----------------------------------------------------------------
def test_protocol_and_ordering(quick_small):
    workload, accounts, transfers = quick_small
    assert isinstance(workload, WorkloadSource)
    epochs = np.unique(transfers.epoch)
    assert np.array_equal(epochs, np.arange(len(epochs)))
    assert np.all(np.diff(transfers.sim_time_us) >= 0)
    assert workload.tick_count == workload.epoch_total
    assert workload.simpy_event_count < 3 * workload.epoch_total  # never an event per row
    assert len(np.unique(accounts.id)) == len(accounts)
    assert np.all(transfers.amount[transfers.flags & 0b1100 == 0] > 0)
    assert np.all(transfers.amount <= AMOUNT_MAX)
    # a LINKED row is followed by a row of the same epoch and time (chains adjacent)
    linked = np.flatnonzero(transfers.flags & FLAG_LINKED)
    assert np.all(linked + 1 < len(transfers))
    assert np.array_equal(transfers.epoch[linked], transfers.epoch[linked + 1])
    assert np.array_equal(transfers.sim_time_us[linked], transfers.sim_time_us[linked + 1])


def test_repeated_ids_are_identical_retries(quick_small):
    _, _, transfers = quick_small
    order = np.argsort(transfers.id, kind="stable")
    ids = transfers.id[order]
    repeat = np.flatnonzero(ids[1:] == ids[:-1])
    assert 0 < len(repeat) < 0.03 * len(transfers)
    for name in ("debit_account", "credit_account", "amount", "code", "flags", "pending_id"):
        column = getattr(transfers, name)[order]
        assert np.array_equal(column[repeat], column[repeat + 1]), name
    assert np.all(transfers.epoch[order][repeat + 1] > transfers.epoch[order][repeat])


def test_client_faults_and_partial_captures_keep_their_laws(quick_small):
    """Spoiled requests are P2P, tip or cash_out rows only, at about bad_share of those; a
    retried request is never a spoiled one; captures never exceed their authorisation, and
    about partial_capture_share of them take less."""
    workload, accounts, transfers = quick_small
    s = workload.scenario
    traffic_rows = traffic(workload, transfers)
    code = transfers.code
    spoiled = traffic_rows & ((transfers.amount == AMOUNT_MAX)
                              | ~np.isin(transfers.debit_account, accounts.id)
                              | ((transfers.ledger <= LEDGER_EUR) & (transfers.credit_account
                                 == workload.layout.system_ids(np.array([LEDGER_BTC]),
                                                               "liquidity")[0])))
    user_debited = np.isin(code, [CODE["p2p"], CODE["tip"], CODE["cash_out"]])
    assert spoiled.any() and not np.any(spoiled & ~user_debited)
    candidates = int(np.sum(traffic_rows & user_debited))
    share = spoiled.sum() / candidates
    sd = (s.clients.bad_share * (1 - s.clients.bad_share) / candidates) ** 0.5
    assert abs(share - s.clients.bad_share) < 4 * sd + 0.001  # + retried copies of good rows
    ids, counts = np.unique(transfers.id, return_counts=True)
    retried = np.isin(transfers.id, ids[counts > 1])
    assert retried.any() and not np.any(retried & spoiled)
    capture = np.flatnonzero(code == CODE["card_capture"])
    authorised = dict(zip(transfers.id[code == CODE["card_authorize"]].tolist(),
                          transfers.amount[code == CODE["card_authorize"]].tolist()))
    limit = np.array([authorised[p] for p in transfers.pending_id[capture].tolist()])
    assert np.all(transfers.amount[capture] <= limit) and np.all(transfers.amount[capture] >= 1)
    partial = np.mean(transfers.amount[capture] < limit)
    p = s.merchant.partial_capture_share
    assert abs(partial - p) < 4 * (p * (1 - p) / len(capture)) ** 0.5 + 0.002


def test_same_seed_same_rows_other_seed_differs(quick_small):
    _, accounts_a, a = quick_small
    workload_b, accounts_b, b = generate(small("quick"), 7)
    for name, column in a.columns().items():
        assert np.array_equal(column, b.columns()[name]), name
    assert np.array_equal(accounts_a.id, accounts_b.id)
    again = list(workload_b.epochs())  # epochs() replays
    assert sum(len(e) for e in again) == len(b)
    _, _, c = generate(small("quick"), 8)
    assert len(c) != len(a) or not np.array_equal(c.amount, a.amount)


# --- what is generated -----------------------------------------------------------------------
def test_every_business_code_is_generated(quick_small):
    workload, _, transfers = quick_small
    codes = set(np.unique(transfers.code[traffic(workload, transfers)]).tolist())
    assert set(range(1, 16)) <= codes


def mix_by_family(workload, transfers) -> tuple[float, float, float]:
    """Shares of traffic arrivals by count: P2P (incl. tips), merchant (cards, cash), crypto
    (a trade's two legs count once; deposits are counted when credited)."""
    code = transfers.code[traffic(workload, transfers)]
    arrivals = {name: int(np.sum(code == CODE[name])) for name in CODE}
    p2p = arrivals["p2p"] + arrivals["tip"]
    merchant = arrivals["card_authorize"] + arrivals["cash_in"] + arrivals["cash_out"]
    crypto = (arrivals["crypto_buy"] + arrivals["crypto_sell"]) // 2 + sum(
        arrivals[n] for n in ("crypto_withdraw", "crypto_deposit"))
    total = p2p + merchant + crypto
    return p2p / total, merchant / total, crypto / total


def test_default_mix_by_family(quick_small):
    p2p, merchant, crypto = mix_by_family(*quick_small[::2])
    assert 0.72 < p2p < 0.78
    assert 0.17 < merchant < 0.23
    assert 0.035 < crypto < 0.065


# --- resizing ------------------------------------------------------------------------------
def test_resized_quick_generates_every_business_code_and_keeps_the_mix(quick_small):
    """quick at 3,000 users in 6 epochs: the full mix (every code 1..15, none of code 0), the
    arrival shares by family within 0.02 of the unresized scenario's."""
    workload = build_workload("quick", 3, Resize(users=3_000, epochs=6))
    _, transfers = materialize(workload)
    codes = set(np.unique(transfers.code[traffic(workload, transfers)]).tolist())
    assert codes == set(range(1, 16))
    assert not np.any(transfers.code == 0)
    resized = np.array(mix_by_family(workload, transfers))
    full = np.array(mix_by_family(*quick_small[::2]))
    assert np.abs(resized - full).max() < 0.02, (resized, full)
    assert workload.scenario.mix == load_scenario("quick").mix


@pytest.mark.parametrize("name", ["quick", "viral-burst", "black-friday"])
def test_resizing_keeps_arrivals_per_user_and_the_curve(name):
    """Users scale the rate (each user pays as often); the expected arrivals per tick keep
    their shape; a scale factor is the same as the user count it implies."""
    rng = np.random.default_rng(1)
    original = ScenarioWorkload(load_scenario(name), rng)
    users = original.scenario.population.users
    for size in (Resize(users=users // 40), Resize(scale=0.025)):
        resized = build_workload(name, 1, size)
        assert resized.scenario.population.users == users // 40
        per_user = resized.base_expected.sum() / resized.scenario.population.users
        assert per_user == pytest.approx(original.base_expected.sum() / users, rel=1e-12)
        assert np.allclose(resized.base_expected / resized.base_expected.sum(),
                           original.base_expected / original.base_expected.sum(), rtol=1e-12)
        assert np.allclose(resized.burst_expected * 40, original.burst_expected, rtol=1e-9)


def test_resizing_days_and_epochs():
    base = load_scenario("viral-burst")
    assert base.bursts and base.bursts[0].day == 0
    longer = resize(base, Resize(days=3, epochs=36))
    assert longer.time.days == 3 and longer.time.tick_s == 7_200.0
    assert longer.bursts == base.bursts
    assert ScenarioWorkload(longer, np.random.default_rng(1)).traffic_tick_count == 36
    late = base.replace(time={"days": 2}, bursts=[dataclasses.replace(base.bursts[0], day=1)],
                        crypto={"crash_day": 1})
    shorter = resize(late, Resize(days=1))
    assert shorter.bursts == () and shorter.crypto.crash_day == -1
    assert resize(base, Resize(epoch_seconds=900.0)).time.tick_s == 900.0
    assert resize(base, Resize()) == base


def test_mature_mix_has_merchant_payments_at_50_to_60_percent():
    workload, _, transfers = generate(small("mature"), 3)
    p2p, merchant, crypto = mix_by_family(workload, transfers)
    assert 0.50 <= merchant <= 0.60  # tolerance: the band itself (configured 0.56)
    assert 0.36 < p2p < 0.44
    assert 0.025 < crypto < 0.055


def top_share(debit_accounts: np.ndarray, share: float) -> float:
    _, counts = np.unique(debit_accounts, return_counts=True)
    counts = np.sort(counts)[::-1]
    return counts[: max(1, int(len(counts) * share))].sum() / counts.sum()


def test_top_fifth_of_senders_make_half_to_four_fifths_of_p2p(quick_small):
    workload, _, transfers = quick_small
    p2p = traffic(workload, transfers) & (transfers.code == CODE["p2p"])
    assert 0.5 <= top_share(transfers.debit_account[p2p], 0.2) <= 0.8


def test_p2p_stays_in_communities(quick_small):
    workload, accounts, transfers = quick_small
    layout = workload.layout
    p2p = traffic(workload, transfers) & (transfers.code == CODE["p2p"])
    user_ids = layout.user_account_ids(np.arange(layout.user_count))
    order = np.argsort(user_ids)
    debit = np.searchsorted(user_ids, transfers.debit_account[p2p], sorter=order)
    credit = np.searchsorted(user_ids, transfers.credit_account[p2p], sorter=order)
    known = (debit < len(order)) & (credit < len(order))
    sender, receiver = order[debit[known] % len(order)], order[credit[known] % len(order)]
    valid = (user_ids[sender] == transfers.debit_account[p2p][known]) & (
        user_ids[receiver] == transfers.credit_account[p2p][known])
    same_block = layout.block_of(sender[valid]) == layout.block_of(receiver[valid])
    assert same_block.mean() > 0.99


def test_daily_curve_has_two_peaks(quick_small):
    workload, _, transfers = quick_small
    kind = traffic(workload, transfers) & np.isin(transfers.code, (CODE["p2p"], CODE["tip"]))
    model_s = transfers.sim_time_us[kind] * workload.scenario.time.compression / 1e6
    hourly = np.bincount((model_s // 3600).astype(np.int64), minlength=24)
    night = hourly[3:5].mean()
    assert hourly[11] > 1.8 * night
    assert hourly[19] > 1.8 * night
    assert hourly[15] < hourly[11]  # a dip between the peaks


def test_viral_burst_peaks_at_ten_times_the_mean():
    workload, _, transfers = generate(small("viral-burst"), 3)
    counts = np.bincount(transfers.epoch[traffic(workload, transfers)].astype(np.int64))
    counts = counts[workload.funding_epoch_count:]
    assert counts.max() / counts.mean() >= 10.0
    peak_epoch = int(np.argmax(counts))
    assert abs(peak_epoch - 20 * 60) <= 2  # 20:00 in minute ticks


def test_crypto_crash_lowers_the_price():
    scenario = small("crypto-crash")
    workload = ScenarioWorkload(scenario, np.random.default_rng(1))
    from workloads.model import _Run

    run = _Run(workload, np.random.default_rng(2))
    prices = run.drawer.prices_cents
    ticks_per_hour = int(3600 / scenario.time.tick_s)
    before, after = prices[0, 13 * ticks_per_hour], prices[0, 17 * ticks_per_hour]
    assert after < 0.8 * before
    assert np.all(prices[2] == 100)  # USDC pegged at one dollar


def test_crypto_integer_rules():
    coin = np.array([0, 1, 2])
    price = np.array([6_000_000, 300_000, 100])  # $60k, $3k, $1 in cents
    units = coin_units_for_fiat(np.array([10_000, 10_000, 10_000]), price, coin)
    assert units.tolist() == [166_666, 33_333_333, 100_000_000]
    assert fiat_for_coin_units(units, price, coin).tolist() == [9_999, 9_999, 10_000]
    eur = fiat_price_cents(np.array([6_000_000]), np.array([2]), 920_000)
    assert eur.tolist() == [5_520_000]


def test_crypto_withdrawals_settle_after_confirmations(quick_small):
    workload, _, transfers = quick_small
    withdraw = transfers.code == CODE["crypto_withdraw"]
    settle = transfers.code == CODE["crypto_withdraw_settle"]
    assert np.all(transfers.flags[withdraw] == FLAG_PENDING)
    created = dict(zip(transfers.id[withdraw].tolist(), transfers.epoch[withdraw].tolist()))
    settled_epochs = transfers.epoch[settle]
    pending = transfers.pending_id[settle]
    later = [e > created[p] for p, e in zip(pending.tolist(), settled_epochs.tolist())
             if p in created]
    assert later and all(later)
    assert np.all(transfers.ledger[settle] >= LEDGER_BTC)


# --- through the engine ----------------------------------------------------------------------
def test_engine_run_holds_invariants_and_most_payments_pass(quick_small):
    from sim.engine import run_local

    workload, accounts, transfers = quick_small
    result = run_local(accounts, transfers, 2)
    assert result.metrics.invariant_violations == []
    assert len(result.status) == len(transfers)
    in_traffic = traffic(workload, transfers)
    assert np.all(result.status[~in_traffic] == STATUS["ok"])  # funding all passes
    assert (result.status[in_traffic] == STATUS["ok"]).mean() > 0.95
    for name in CODE:
        rows = in_traffic & (transfers.code == CODE[name])
        if rows.any():
            assert (result.status[rows] == STATUS["ok"]).mean() > 0.9, name
    # payouts pass through the settlement accounts as linked pairs, which net them to zero
    settlement = workload.layout.system_ids(np.array([LEDGER_USD, LEDGER_EUR]), "settlement")
    payout = np.flatnonzero(transfers.code == CODE["merchant_payout"])
    assert len(payout) > 0 and len(payout) % 2 == 0
    first, wire = payout[0::2], payout[1::2]
    assert np.all(wire == first + 1)
    assert np.all(transfers.flags[first] == FLAG_LINKED) and np.all(transfers.flags[wire] == 0)
    assert np.all(np.isin(transfers.credit_account[first], settlement))
    assert np.all(transfers.debit_account[wire] == transfers.credit_account[first])
    assert np.all(transfers.amount[wire] == transfers.amount[first])
    assert np.all(result.status[first] == result.status[wire])
    balances = result.balances
    at = np.flatnonzero(np.isin(balances.id, settlement))
    assert len(at) == 2
    assert np.all(balances.debits_posted[at] == balances.credits_posted[at])
    assert np.all(balances.debits_posted[at] > 0)


# --- properties of the implicit structure ----------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5_000), seed=st.integers(0, 2**32))
def test_affine_permutation_is_a_bijection(n, seed):
    permutation = AffinePermutation(n, np.random.default_rng(seed))
    x = np.arange(n)
    y = permutation.forward(x)
    assert np.array_equal(np.sort(y), x)
    assert np.array_equal(permutation.inverse(y), x)


@settings(max_examples=40, deadline=None)
@given(users=st.integers(2, 3_000), size=st.integers(2, 200), friends=st.integers(1, 20),
       eur_share=st.floats(0.0, 1.0), seed=st.integers(0, 2**32))
def test_friends_are_other_members_of_the_same_currency_block(users, size, friends, eur_share,
                                                              seed):
    layout = PopulationLayout(Population(users=users, community_size=size,
                                         friends_per_user=friends, eur_share=eur_share),
                              np.random.default_rng(seed))
    user = np.repeat(np.arange(users), friends)
    k = np.tile(np.arange(friends), users)
    friend = layout.friend(user, k)
    assert np.all((friend >= 0) & (friend < users))
    assert np.all(friend != user)
    assert np.array_equal(layout.block_of(friend), layout.block_of(user))
    assert np.array_equal(layout.user_ledger(friend), layout.user_ledger(user))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 10**12), st.integers(-2**62, 2**62)), max_size=300))
def test_stable_time_order_matches_a_stable_argsort(times):
    """Both paths: the packed-key sort, and the argsort when time span and position do not fit
    in 63 bits; the sorted times come back too."""
    time_us = np.array(times, np.int64)
    sorted_out = np.full(len(time_us), -1, np.int64)
    order = stable_time_order(time_us, sorted_out)
    expected = np.argsort(time_us, kind="stable")
    got = np.arange(len(time_us)) if order is None else order
    assert np.array_equal(got, expected)
    if order is not None:
        assert np.array_equal(sorted_out, time_us[expected])
    again = stable_time_order(time_us)  # without sorted_out: the same order
    assert (again is None) == (order is None)
    assert order is None or np.array_equal(again, order)


EXPECTED_WITHOUT_BAD_CLIENTS = {STATUS[n] for n in (
    "ok", "exceeds_credits", "linked_event_failed", "pending_transfer_not_found")}


@settings(max_examples=8, deadline=None)
@given(users=st.integers(2, 400), merchant=st.floats(0.0, 0.5), crypto=st.floats(0.0, 0.3),
       eur_share=st.floats(0.0, 1.0), seed=st.integers(0, 2**32))
def test_any_small_population_runs_clean(users, merchant, crypto, eur_share, seed):
    """Without bad clients, every row is well formed: only funds can fail it (and the posts,
    voids or fees chained to what funds failed)."""
    from sim.engine import run_local

    tip = 0.05
    p2p = 1.0 - merchant - crypto - tip - 0.02
    scenario = load_scenario("quick").replace(
        population={"users": users, "eur_share": eur_share, "crypto_holder_share": 0.5,
                    "users_per_merchant": 50, "users_per_creator": 20},
        rate={"mean_per_s": 0.05}, time={"tick_s": 7200.0, "funding_rows_per_epoch": 300},
        mix={"p2p": p2p, "tip": tip, "merchant": merchant, "cash_in": 0.01, "cash_out": 0.01,
             "crypto": crypto},
        clients={"bad_share": 0.0, "retry_share": 0.0})
    workload, accounts, transfers = generate(scenario, seed)
    result = run_local(accounts, transfers, 2)
    assert result.metrics.invariant_violations == []
    assert set(np.unique(result.status).tolist()) <= EXPECTED_WITHOUT_BAD_CLIENTS
    assert len(np.unique(transfers.id)) == len(transfers)


def test_black_friday_holds_expire_within_the_day():
    """black-friday's 6-hour checkout holds: unresolved authorisations expire inside the run,
    and the engine releases them (less is pending at the end than was ever left unresolved)."""
    from sim.constants import FLAG_POST_PENDING_TRANSFER, FLAG_VOID_PENDING_TRANSFER, OK
    from sim.engine import run_local

    workload, accounts, transfers = generate(small("black-friday"), 5)
    auth = (transfers.code == CODE["card_authorize"]) & ((transfers.flags & FLAG_PENDING) != 0)
    resolving = (transfers.flags & (FLAG_POST_PENDING_TRANSFER | FLAG_VOID_PENDING_TRANSFER)) != 0
    unresolved = auth & ~np.isin(transfers.id, transfers.pending_id[resolving])
    expire_at = transfers.sim_time_us + transfers.timeout_s.astype(np.int64) * 1_000_000
    due_in_run = unresolved & (expire_at < transfers.sim_time_us[-1])
    assert due_in_run.sum() > 100
    result = run_local(accounts, transfers, 2)
    ok = result.status == OK
    pending_ok = ((transfers.flags & FLAG_PENDING) != 0) & ok
    committed_resolutions = transfers.pending_id[resolving & ok]
    open_holds = pending_ok & ~np.isin(transfers.id, committed_resolutions)
    last_start = int(transfers.sim_time_us[np.searchsorted(transfers.epoch, transfers.epoch[-1])])
    expired = open_holds & (transfers.timeout_s > 0) & (expire_at <= last_start)
    assert (expired & auth).sum() > 100
    pending_at_end = int(result.balances.debits_pending.sum())
    assert pending_at_end == int(transfers.amount[open_holds & ~expired].sum())
    assert result.metrics.invariant_violations == []
