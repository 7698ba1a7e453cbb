"""The scenario workload: a social-network payments platform, played tick by tick.

`ScenarioWorkload(scenario, rng)` is a `WorkloadSource`. One SimPy process steps the sim
clock one tick at a time (one epoch per tick); inside a tick numpy draws all of the tick's
payments at once, so a payment is never a SimPy event. Delayed rows (captures, voids,
refunds, crypto settles and deposits) wait in a numpy due queue (`workloads.due`) and are
emitted in the tick they fall due.

Epochs, numbered from 0:
1. funding epochs (`time.funding_rows_per_epoch` rows each, all at sim time 0): one cash_in
   (8) per user from its currency's treasury, sized to a lognormal base plus
   `funding_cover` times the user's expected spending over the run (from its activity rank);
   one cash_in float per merchant (fees and refunds); one crypto_deposit (12) per wallet;
2. one epoch per tick of `time.tick_s` model seconds: the tick's Poisson count of arrivals
   split by `mix`, the bursts' arrivals, the due follow-ups, the day's merchant payouts (7,
   at `merchant.payout_hour`, `payout_ppm` of what each merchant captured before, as a linked
   pair merchant -> settlement -> outside world), and the previous tick's client retries
   (same id, same fields, a new time).

Clients: `retry_share` of P2P/tip/cash rows are sent again in the next tick; `bad_share` of
P2P/tip/cash_out rows are made bad on purpose (an unknown debit account, an amount over any
balance, or a credit account of another currency), never both.

Sim time: model second x is sim microsecond floor(x * 1e6 / compression); timeouts are
written in sim seconds, rounded up.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import deque
from typing import Iterator

import numpy as np
import simpy

from sim.columns import TRANSFER_DTYPES, Accounts, Transfers
from sim.constants import AMOUNT_MAX, CODE, FLAG_LINKED, LEDGER_EUR, LEDGER_USD, MICROSECONDS_PER_SECOND
from workloads.arrivals import RateCurve
from workloads.base import (
    PPM, bernoulli_rows, ceil_minor, funding_minor, lognormal_mean_minor, pump_epochs,
)
from workloads.crypto import (
    COIN_LEDGER, CRYPTO_FIAT_MAX_MINOR, coin_units_for_fiat, price_path_cents,
)
from workloads.due import ROW_COLUMNS, block_len, concat_blocks, make_block
from workloads.kinds import KindDrawer, amounts_mean_minor, interleave
from workloads.ids import ID_DOMAIN_ACCOUNT, sparse_ids
from workloads.population import PopulationLayout
from workloads.scenario import SECONDS_PER_DAY, Scenario
from workloads.zipf import zipf_probability
from workloads.tick_kernels import (
    add_captured, as_kernel_array, gather_rows, packed_time_keys, time_span, unpack_time_keys,
)

MIX_KINDS = ("p2p", "tip", "merchant", "cash_in", "cash_out", "crypto")
CRYPTO_KINDS = ("buy", "sell", "withdraw", "deposit")
FUNDING_BASE_SIGMA = 0.5
FOLLOW_UPS_PER_ARRIVAL = 1.0  # captures, fees, settlements, payouts: at most one per arrival
BAD_KINDS = 3  # unknown debit account, over the balance, wrong currency


class ScenarioWorkload:
    """A `WorkloadSource` for one `Scenario`; `epochs()` replays identically every call."""

    def __init__(self, scenario: Scenario, rng: np.random.Generator):
        self.scenario = scenario
        self.name = scenario.name
        self.layout = PopulationLayout(scenario.population, rng)
        self.curve = RateCurve(scenario)
        self.base_expected, self.burst_expected = self.curve.tick_expectations()
        self.traffic_tick_count = len(self.base_expected)
        self._entropy = [int(v) for v in rng.integers(0, 2**63, size=4)]
        layout = self.layout
        self.funding_row_count = (layout.user_count + layout.merchant_count
                                  + 3 * layout.holder_count)
        rows_per_epoch = scenario.time.funding_rows_per_epoch
        self.funding_epoch_count = -(-self.funding_row_count // rows_per_epoch)
        self.epoch_total = self.funding_epoch_count + self.traffic_tick_count
        self.account_count = layout.account_count
        self.model_seconds_per_sim_second = float(scenario.time.compression)
        self.tick_count = 0
        self.simpy_event_count = 0

    def expected_row_count(self) -> float:
        """Funding rows plus arrivals (bursts too), each arrival counted with one follow-up
        (a capture, fee, settle or payout leg): an upper estimate for sizing memory."""
        arrivals = float(self.base_expected.sum()) + float(self.burst_expected.sum())
        return self.funding_row_count + arrivals * (1.0 + FOLLOW_UPS_PER_ARRIVAL)

    def configuration(self) -> dict:
        """The scenario as JSON-safe data (for summary.json and benchmark reports)."""
        scenario = json.loads(json.dumps(dataclasses.asdict(self.scenario), default=str))
        return {"source": self.name, "scenario": scenario}

    def accounts(self) -> Accounts:
        return self.layout.accounts()

    def tick_bounds_us(self, tick: int) -> tuple[int, int]:
        """Sim-time [start, stop) of a traffic tick."""
        time = self.scenario.time
        scale = MICROSECONDS_PER_SECOND / time.compression
        end_s = time.days * SECONDS_PER_DAY
        start = int(tick * time.tick_s * scale)
        stop = int(min((tick + 1) * time.tick_s, end_s) * scale)
        return start, stop

    def epochs(self) -> Iterator[Transfers]:
        run = _Run(self, np.random.default_rng(self._entropy))
        return pump_epochs(self, lambda env, ready: self._tick_process(env, run, ready))

    def _tick_process(self, env: simpy.Environment, run: "_Run", ready: deque):
        """The SimPy process: funding epochs at time 0, then one epoch per traffic tick."""
        for epoch in range(self.funding_epoch_count):
            ready.append(run.funding_epoch(epoch))
            self.tick_count += 1
            yield env.timeout(0)
        for tick in range(self.traffic_tick_count):
            start_us, stop_us = self.tick_bounds_us(tick)
            if start_us > env.now:
                yield env.timeout(start_us - env.now)
            ready.append(run.traffic_epoch(self.funding_epoch_count + tick, tick))
            self.tick_count += 1


class _Run:
    """The mutable state of one pass over the epochs."""

    def __init__(self, workload: ScenarioWorkload, rng: np.random.Generator):
        self.w, self.s, self.rng = workload, workload.scenario, rng
        self.layout = workload.layout
        prices = price_path_cents(self.s.crypto, self.s.time.tick_s,
                                  workload.traffic_tick_count, rng)
        self.drawer = KindDrawer(self.s, self.layout, rng, prices)
        self.payable_minor = np.zeros(self.layout.merchant_count, np.int64)
        self.retries: dict | None = None
        self.mix_p = np.array([getattr(self.s.mix, k) for k in MIX_KINDS])
        self.crypto_p = np.array([getattr(self.s.crypto, k) for k in CRYPTO_KINDS])
        self.bad_index = 0
        self.stage = _Stage()

    # --- funding -----------------------------------------------------------------------------
    def funding_epoch(self, epoch: int) -> Transfers:
        rows = self.s.time.funding_rows_per_epoch
        first, last = epoch * rows, min((epoch + 1) * rows, self.w.funding_row_count)
        layout = self.layout
        users_end = layout.user_count
        merchants_end = users_end + layout.merchant_count
        blocks = []
        if first < users_end:
            blocks.append(self._fund_users(first, min(last, users_end)))
        if first < merchants_end and last > users_end:
            blocks.append(self._fund_merchants(max(first, users_end) - users_end,
                                               min(last, merchants_end) - users_end))
        if last > merchants_end:
            blocks.append(self._fund_wallets(max(first, merchants_end) - merchants_end,
                                             last - merchants_end))
        block = concat_blocks(blocks)
        block["sim_time_us"][:] = 0
        return self._to_transfers(block, epoch)

    def _spend_per_arrival(self) -> float:
        a, mix = self.s.amounts, self.s.mix
        return (mix.p2p * amounts_mean_minor(a.p2p_median_minor, a.p2p_sigma, a)
                + mix.tip * amounts_mean_minor(a.tip_median_minor, a.tip_sigma, a)
                + mix.merchant * amounts_mean_minor(a.card_median_minor, a.card_sigma, a)
                + mix.cash_out * lognormal_mean_minor(a.cash_median_minor, a.cash_sigma))

    def _burst_totals(self, kind: str) -> float:
        return float(sum(self.w.burst_expected[i].sum()
                         for i, b in enumerate(self.s.bursts) if b.kind == kind))

    def _fund_users(self, first: int, last: int) -> dict:
        s, layout = self.s, self.layout
        users = np.arange(first, last, dtype=np.int64)
        arrivals = float(self.w.base_expected.sum())
        a = s.amounts
        card_mean = amounts_mean_minor(a.card_median_minor, a.card_sigma, a)
        zipf_sends = arrivals * self._spend_per_arrival() + self._burst_totals(
            "flash_sale") * card_mean
        p = zipf_probability(layout.sender_of_rank.inverse(users), layout.user_count,
                             s.population.sender_zipf)
        outflow = p * zipf_sends + self._burst_totals("tip") * amounts_mean_minor(
            a.tip_median_minor, a.tip_sigma, a) / layout.user_count
        holder = layout.holder_user.inverse(users)
        is_holder = holder < layout.holder_count
        crypto_buys = arrivals * s.mix.crypto * s.crypto.buy * lognormal_mean_minor(
            s.crypto.median_minor, s.crypto.sigma)
        outflow += np.where(is_holder, zipf_probability(
            holder, max(layout.holder_count, 1), s.population.sender_zipf), 0.0) * crypto_buys
        amount = funding_minor(self.rng, outflow, a.funding_cover, a.funding_base_minor,
                               FUNDING_BASE_SIGMA)
        ledger = layout.user_ledger(users)
        return make_block(id=self.drawer.new_ids(len(users)), sim_time_us=0,
                          debit_account=layout.system_ids(ledger, "treasury"),
                          credit_account=layout.user_account_ids(users), amount=amount,
                          ledger=ledger, code=CODE["cash_in"])

    def _fund_merchants(self, first: int, last: int) -> dict:
        s, layout = self.s, self.layout
        merchant = np.arange(first, last, dtype=np.int64)
        usd_count, eur_count = layout.merchant_split
        eur = merchant >= usd_count
        rank = np.where(eur, merchant - usd_count, merchant)
        p = np.where(eur, zipf_probability(rank, max(eur_count, 1), s.population.merchant_zipf),
                     zipf_probability(rank, max(usd_count, 1), s.population.merchant_zipf))
        a, m = s.amounts, s.merchant
        cards = (float(self.w.base_expected.sum()) * s.mix.merchant
                 + self._burst_totals("flash_sale"))
        volume = p * cards * amounts_mean_minor(a.card_median_minor, a.card_sigma, a)
        eur_share = s.population.eur_share  # the share of card payers in each currency group
        volume *= np.where(eur, max(eur_share, 0.05), max(1.0 - eur_share, 0.05))
        exposure = volume * m.capture_share * (m.fee_ppm / PPM + m.refund_share)
        # A sizing estimate, not a balance: the expected float exposure becomes an amount by
        # rounding up (ceil), capped at AMOUNT_MAX, before it touches any row.
        amount = np.minimum(a.merchant_float_minor + ceil_minor(a.funding_cover * exposure), AMOUNT_MAX)
        ledger = np.where(eur, LEDGER_EUR, LEDGER_USD).astype(np.uint32)
        return make_block(id=self.drawer.new_ids(len(merchant)), sim_time_us=0,
                          debit_account=layout.system_ids(ledger, "treasury"),
                          credit_account=layout.ids(layout.merchant_base + merchant),
                          amount=amount, ledger=ledger, code=CODE["cash_in"])

    def _fund_wallets(self, first: int, last: int) -> dict:
        s, layout, c = self.s, self.layout, self.s.crypto
        index = np.arange(first, last, dtype=np.int64)
        holders = max(layout.holder_count, 1)
        coin, holder = index // holders, index % holders
        coin_share = np.array([c.btc_share, c.eth_share, 1.0 - c.btc_share - c.eth_share])
        outflow = (float(self.w.base_expected.sum()) * s.mix.crypto * (c.sell + c.withdraw)
                   * lognormal_mean_minor(c.median_minor, c.sigma) / (1.0 - c.crash_drop))
        value = c.wallet_funding_minor + np.ceil(
            s.amounts.funding_cover * outflow * coin_share[coin]
            * zipf_probability(holder, holders, s.population.sender_zipf))
        value = np.minimum(value, CRYPTO_FIAT_MAX_MINOR).astype(np.int64)
        price = self.drawer.prices_cents[coin, 0]
        ledger = COIN_LEDGER[coin]
        return make_block(id=self.drawer.new_ids(len(index)), sim_time_us=0,
                          debit_account=layout.system_ids(ledger, "outside_world"),
                          credit_account=layout.wallet_ids(coin, holder),
                          amount=coin_units_for_fiat(value, price, coin), ledger=ledger,
                          code=CODE["crypto_deposit"])

    # --- traffic -----------------------------------------------------------------------------
    def traffic_epoch(self, epoch: int, tick: int) -> Transfers:
        start_us, stop_us = self.w.tick_bounds_us(tick)
        drawer, rng = self.drawer, self.rng
        drawer.set_tick(tick, start_us, stop_us)
        stage = self.stage
        stage.clear()
        payouts = self._payouts(tick, start_us, stop_us)
        stage.reserve(block_len(payouts) + self._row_bound(tick))
        stage.append([payouts])
        due = drawer.due.pop_due(stop_us)
        due["sim_time_us"] = np.maximum(due["sim_time_us"], start_us)
        self._record_captures(due)
        stage.append([due])
        if self.retries is not None:
            self.retries["sim_time_us"] = drawer.times(block_len(self.retries))
            stage.append([self.retries])
        counts = dict(zip(MIX_KINDS, rng.multinomial(rng.poisson(self.w.base_expected[tick]),
                                                     self.mix_p)))
        # the single rows are written straight into the stage, spoiled there in place
        singles = stage.append([drawer.p2p(counts["p2p"]), drawer.tips(counts["tip"]),
                                drawer.cash(counts["cash_in"], "cash_in"),
                                drawer.cash(counts["cash_out"], "cash_out")])
        bad = self._spoil(singles)
        self._choose_retries(singles, bad)
        stage.append([drawer.card_authorize(counts["merchant"])])
        stage.append(self._crypto(counts["crypto"]) + self._bursts(tick))
        rows = stage.rows()
        if block_len(rows):
            assert int(rows["sim_time_us"].min()) >= start_us, f"tick {tick}: row before start"
            assert int(rows["sim_time_us"].max()) < max(stop_us, start_us + 1), \
                f"tick {tick}: row after the tick's end"
        return self._to_transfers(rows, epoch, staged=True)

    def _row_bound(self, tick: int) -> int:
        """What the stage should hold for the tick's rows (payouts aside), so that it grows at
        most once a tick: the whole due queue, the retries, and the expected arrivals with 6
        standard deviations to spare, crypto counted twice (a trade is two legs)."""
        expected = float(self.w.base_expected[tick]) + float(self.w.burst_expected[:, tick].sum())
        retries = block_len(self.retries) if self.retries is not None else 0
        arrivals = expected * (1.0 + self.s.mix.crypto) + 6.0 * math.sqrt(expected) + 64.0
        return len(self.drawer.due) + retries + int(arrivals)

    def _crypto(self, count: int) -> list[dict]:
        drawer = self.drawer
        if self.layout.holder_count == 0:
            return []  # nobody holds a wallet: crypto arrivals have no one to come from
        buy, sell, withdraw, deposit = self.rng.multinomial(count, self.crypto_p)
        return [drawer.crypto_trade(buy, "crypto_buy"), drawer.crypto_trade(sell, "crypto_sell"),
                drawer.crypto_withdraw(withdraw), drawer.crypto_deposit(deposit)]

    def _bursts(self, tick: int) -> list[dict]:
        blocks = []
        for index, burst in enumerate(self.s.bursts):
            count = self.rng.poisson(self.w.burst_expected[index, tick])
            if burst.kind == "tip":
                blocks.append(self.drawer.tips(count, creator_rank=burst.target_rank))
            else:
                blocks.append(self.drawer.card_authorize(count, merchant_rank=burst.target_rank))
        return blocks

    def _spoil(self, singles: dict) -> np.ndarray:
        """Make `bad_share` of user-debited rows bad in place; returns the bad mask."""
        rng, layout = self.rng, self.layout
        user_debit = np.flatnonzero(singles["code"] != CODE["cash_in"])
        rows = user_debit[bernoulli_rows(rng, len(user_debit), self.s.clients.bad_share)]
        bad = np.zeros(block_len(singles), bool)
        bad[rows] = True
        how = rng.integers(0, BAD_KINDS, len(rows))
        unknown, over, foreign = rows[how == 0], rows[how == 1], rows[how == 2]
        fresh = np.arange(self.bad_index, self.bad_index + len(unknown), dtype=np.int64)
        self.bad_index += len(unknown)
        singles["debit_account"][unknown] = sparse_ids(layout.account_count + fresh,
                                                       ID_DOMAIN_ACCOUNT)
        singles["amount"][over] = AMOUNT_MAX
        singles["credit_account"][foreign] = layout.system_ids(
            np.full(len(foreign), COIN_LEDGER[0]), "liquidity")
        return bad

    def _choose_retries(self, singles: dict, bad: np.ndarray) -> None:
        """Rows the client will send again next tick (identical, same id)."""
        good = np.flatnonzero(~bad)
        rows = good[bernoulli_rows(self.rng, len(good), self.s.clients.retry_share)]
        self.retries = {n: c[rows] for n, c in singles.items()}

    def _record_captures(self, due: dict) -> None:
        add_captured(self.payable_minor, as_kernel_array(due["aux"], np.int64),
                     as_kernel_array(due["code"], np.uint16),
                     as_kernel_array(due["amount"], np.int64), CODE["card_capture"])

    def _payouts(self, tick: int, start_us: int, stop_us: int) -> dict:
        """The day's merchant payouts when the payout hour falls in this tick.

        Each payout is a linked pair of merchant_payout (7) rows through the currency's
        settlement account: merchant -> settlement, then settlement -> outside world (the
        bank wire). Both legs commit or neither does, so settlement nets to zero.
        """
        time, m = self.s.time, self.s.merchant
        start_s, stop_s = tick * time.tick_s, (tick + 1) * time.tick_s
        day = int(start_s // SECONDS_PER_DAY)
        payout_s = day * SECONDS_PER_DAY + m.payout_hour * 3_600.0
        merchants = np.zeros(0, np.int64)
        if start_s <= payout_s < stop_s:
            merchants = np.flatnonzero(self.payable_minor * m.payout_ppm // PPM > 0)
        amount = self.payable_minor[merchants] * m.payout_ppm // PPM
        self.payable_minor[merchants] = 0
        at_us = int(payout_s * MICROSECONDS_PER_SECOND / time.compression)
        ledger = np.where(merchants >= self.layout.merchant_split[0], LEDGER_EUR, LEDGER_USD)
        at = np.full(len(merchants), min(max(at_us, start_us), stop_us - 1))
        settlement = self.layout.system_ids(ledger, "settlement")
        to_settlement = make_block(
            id=self.drawer.new_ids(len(merchants)), sim_time_us=at,
            debit_account=self.layout.ids(self.layout.merchant_base + merchants),
            credit_account=settlement, amount=amount, ledger=ledger,
            code=CODE["merchant_payout"], flags=FLAG_LINKED)
        wire = make_block(
            id=self.drawer.new_ids(len(merchants)), sim_time_us=at, debit_account=settlement,
            credit_account=self.layout.system_ids(ledger, "outside_world"), amount=amount,
            ledger=ledger, code=CODE["merchant_payout"])
        return interleave(to_settlement, wire)

    def _to_transfers(self, block: dict, epoch: int, staged: bool = False) -> Transfers:
        """Rows stably sorted by time (chain legs share a time, so stay adjacent).

        `staged`: `block` views reused buffers (`_Stage`), so its columns are always copied.
        """
        count = len(block["id"])
        sorted_time_us = np.empty(count, np.int64)
        order = stable_time_order(block["sim_time_us"], sorted_time_us)
        if order is None:
            columns = {n: np.array(block[n]) if staged else block[n] for n in ROW_COLUMNS}
        else:
            columns = {n: np.empty(count, TRANSFER_DTYPES[n]) for n in ROW_COLUMNS}
            columns["sim_time_us"] = sorted_time_us
            gathered = tuple(n for n in ROW_COLUMNS if n != "sim_time_us")
            gather_rows(order, *(as_kernel_array(block[n], TRANSFER_DTYPES[n]) for n in gathered),
                        *(columns[n] for n in gathered))
        return Transfers.from_columns(epoch=np.full(count, epoch, np.uint64), **columns)


class _Stage:
    """Reused per-tick buffers: a tick's blocks are written here, not concatenated afresh."""

    def __init__(self):
        self.capacity = 0
        self.count = 0
        self.columns = {n: np.empty(0, TRANSFER_DTYPES[n]) for n in ROW_COLUMNS}

    def clear(self) -> None:
        self.count = 0

    def reserve(self, count: int) -> None:
        """Room for `count` rows in all (at least 1.5 times the old room when it grows)."""
        if count > self.capacity:
            self._grow(max(count, self.capacity * 3 // 2))

    def _grow(self, capacity: int) -> None:
        grown = {n: np.empty(capacity, TRANSFER_DTYPES[n]) for n in ROW_COLUMNS}
        for name, column in grown.items():
            column[:self.count] = self.columns[name][:self.count]
        self.columns, self.capacity = grown, capacity

    def append(self, blocks: list[dict]) -> dict:
        """Write the blocks' rows after those already staged; returns them as views of the
        buffers (valid until the next `append` or `clear`)."""
        first = self.count
        count = first + sum(block_len(b) for b in blocks)
        self.reserve(count)
        for name in ROW_COLUMNS:
            column = self.columns[name]
            start = first
            for block in blocks:
                stop = start + block_len(block)
                column[start:stop] = block[name]
                start = stop
        self.count = count
        return {n: c[first:count] for n, c in self.columns.items()}

    def rows(self) -> dict:
        """Every staged row, as views of the buffers."""
        return {n: c[:self.count] for n, c in self.columns.items()}


def stable_time_order(time_us: np.ndarray, sorted_out: np.ndarray | None = None
                      ) -> np.ndarray | None:
    """The stable sorting permutation of `time_us`, or None when already sorted; when not,
    `sorted_out` (int64, as long), if given, receives the sorted times.

    Fast path: (time - min) and the row position packed into one int64 key (a numba pass,
    after one that finds min, max and whether the times are already sorted), sorted by value
    (numpy's vectorised sort), then position and time read back from the key in one pass; keys
    are unique, so the result is the stable order. Falls back to a stable argsort when the key
    does not fit in 63 bits.
    """
    count = len(time_us)
    if count < 2:
        return None
    time_us = as_kernel_array(time_us, np.int64)
    low, high, ordered = time_span(time_us)
    if ordered:
        return None
    span_bits = max(1, (high - low).bit_length())
    position_bits = max(1, (count - 1).bit_length())
    if span_bits + position_bits > 63:
        order = np.argsort(time_us, kind="stable")
        if sorted_out is not None:
            np.take(time_us, order, out=sorted_out)
        return order
    key = packed_time_keys(time_us, low, position_bits)
    key.sort()
    unpack_time_keys(key, low, position_bits,
                     sorted_out if sorted_out is not None else np.empty(count, np.int64))
    return key
