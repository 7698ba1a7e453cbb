"""The kinds of payment, each drawn vectorised for one tick, with the spec's business codes.

Every function here builds one block of rows (see `workloads.due.make_block`) for all
arrivals of one kind in the tick, and schedules the kind's follow-ups in the `DueRows` queue:

- p2p (1): a Zipf-active sender pays one of its community friends;
- tip (15): a Zipf-active sender tips a Zipf-hot creator of its currency;
- card_authorize (2, PENDING, timeout): a sender at a Zipf-hot merchant of its currency; its
  fate is drawn at once: capture (3, POST, full or partial, LINKED to a fee row 6 merchant ->
  fees) after an exponential delay, possibly refunded (5) later; void (4) after a delay; or
  left to expire;
- cash_in (8) treasury -> user, cash_out (9) user -> outside world;
- crypto_buy (10) and crypto_sell (11): two LINKED legs through the fiat and coin liquidity
  accounts at the tick's price (rules in `workloads.crypto`);
- crypto_withdraw (13, PENDING) wallet -> coin outside world, settled (14, POST) or voided
  (14, VOID) after the chain's confirmation delay; crypto_deposit (12) outside world ->
  wallet, credited after the confirmation delay.

Amounts: lognormal body (`lognormal_minor`, rounded half up) with a `tail_share` of draws
replaced by a Pareto tail floor(tail_start * U ** (-1 / alpha)), clipped to [1, max_minor].
Partial captures are floor(authorised * ppm / 1e6) and refunds floor(captured * ppm / 1e6),
ppm uniform in [PARTIAL_PPM_MIN, 1e6), at least 1; fees floor(captured * fee_ppm / 1e6), at
least 1.
"""

from __future__ import annotations

import math

import numpy as np

from sim.constants import (
    CODE, FLAG_LINKED, FLAG_PENDING, FLAG_POST_PENDING_TRANSFER, FLAG_VOID_PENDING_TRANSFER,
    LEDGER_EUR, MICROSECONDS_PER_SECOND,
)
from workloads.arrivals import draw_times_us
from workloads.base import PPM, bernoulli_rows, lognormal_minor
from workloads.crypto import (
    COIN_LEDGER, CRYPTO_FIAT_MAX_MINOR, coin_units_for_fiat, confirmation_delay_s,
    fiat_for_coin_units, fiat_price_cents,
)
from workloads.due import DueRows, make_block
from workloads.ids import ID_DOMAIN_TRANSFER, range_ids
from workloads.population import PopulationLayout
from workloads.scenario import Amounts, Scenario
from workloads.zipf import Zipf

PARTIAL_PPM_MIN = 100_000


def amounts_minor(rng: np.random.Generator, count: int, median_minor: int, sigma: float,
                  config: Amounts) -> np.ndarray:
    """Lognormal body with a Pareto tail (int64 minor units; rules in the module doc)."""
    amount = lognormal_minor(rng, count, median_minor, sigma, config.max_minor)
    tail = bernoulli_rows(rng, count, config.tail_share)
    tail_count = len(tail)
    if tail_count:
        draw = config.tail_start_minor * rng.random(tail_count) ** (-1.0 / config.tail_alpha)
        amount[tail] = np.clip(np.floor(draw), 1.0, float(config.max_minor))
    return amount


def amounts_mean_minor(median_minor: int, sigma: float, config: Amounts) -> float:
    """Mean of `amounts_minor` before clipping (a float, for sizing funding)."""
    body = median_minor * math.exp(sigma * sigma / 2.0)
    tail = config.tail_start_minor * config.tail_alpha / (config.tail_alpha - 1.0)
    return (1.0 - config.tail_share) * body + config.tail_share * tail


def interleave(first: dict, second: dict) -> dict:
    """Two equally long blocks as adjacent pairs: first[0], second[0], first[1], ..."""
    pairs = {}
    for name, column in first.items():
        out = pairs[name] = np.empty(2 * len(column), column.dtype)
        out[0::2] = column
        out[1::2] = second[name]
    return pairs


class KindDrawer:
    """Draws each kind's rows for the current tick; owns the id counter and the due queue."""

    def __init__(self, scenario: Scenario, layout: PopulationLayout, rng: np.random.Generator,
                 prices_cents: np.ndarray):
        self.s, self.layout, self.rng, self.prices_cents = scenario, layout, rng, prices_cents
        population = scenario.population
        self.sender_ranks = Zipf(layout.user_count, population.sender_zipf)
        self.merchant_ranks = tuple(Zipf(max(c, 1), population.merchant_zipf)
                                    for c in layout.merchant_split)
        self.creator_ranks = tuple(Zipf(max(c, 1), population.creator_zipf)
                                   for c in layout.creator_split)
        self.holder_ranks = Zipf(max(layout.holder_count, 1), population.sender_zipf)
        self.us_per_model_s = MICROSECONDS_PER_SECOND / scenario.time.compression
        compression = scenario.time.compression
        self.auth_timeout_s = max(1, math.ceil(scenario.merchant.authorization_timeout_s
                                               / compression))
        self.withdraw_timeout_s = max(1, math.ceil(scenario.crypto.withdraw_timeout_s
                                                   / compression))
        self.transfer_index = 0
        self.due = DueRows()
        self.tick, self.start_us, self.stop_us = 0, 0, 1

    def set_tick(self, tick: int, start_us: int, stop_us: int) -> None:
        self.tick, self.start_us, self.stop_us = tick, start_us, max(stop_us, start_us + 1)

    def new_ids(self, count: int) -> np.ndarray:
        start, count = self.transfer_index, int(count)
        self.transfer_index += count
        return range_ids(start, count, ID_DOMAIN_TRANSFER)

    def times(self, count: int) -> np.ndarray:
        """Arrival times uniform in the tick, sorted (so the tick's merge reads in streams)."""
        return draw_times_us(self.rng, count, self.start_us, self.stop_us)

    def delay_us(self, delay_s: np.ndarray) -> np.ndarray:
        return (delay_s * self.us_per_model_s).astype(np.int64)

    # --- who ---------------------------------------------------------------------------------
    def senders(self, count: int) -> np.ndarray:
        return self.layout.sender_of_rank.forward(self.sender_ranks.draw(self.rng, count))

    def group_ranks(self, samplers: tuple, ledger: np.ndarray, rank: int | None) -> np.ndarray:
        """Ranks within the payer's currency group (Zipf), or one fixed rank."""
        if rank is not None:
            return np.full(len(ledger), rank, np.int64)
        ranks = samplers[0].draw(self.rng, len(ledger))
        eur = np.flatnonzero(ledger == LEDGER_EUR)
        ranks[eur] = samplers[1].draw(self.rng, len(eur))
        return ranks

    # --- P2P, tips, cash ----------------------------------------------------------------------
    def p2p(self, count: int) -> dict:
        users = self.senders(count)
        friend = self.layout.friend(users, self.rng.integers(
            0, self.s.population.friends_per_user, count))
        amount = amounts_minor(self.rng, count, self.s.amounts.p2p_median_minor,
                               self.s.amounts.p2p_sigma, self.s.amounts)
        return make_block(id=self.new_ids(count), sim_time_us=self.times(count),
                          debit_account=self.layout.user_account_ids(users),
                          credit_account=self.layout.user_account_ids(friend), amount=amount,
                          ledger=self.layout.user_ledger(users), code=CODE["p2p"])

    def tips(self, count: int, creator_rank: int | None = None) -> dict:
        users = self.senders(count) if creator_rank is None else self.rng.integers(
            0, self.layout.user_count, count)
        ledger = self.layout.user_ledger(users)
        creator = self.layout.creator_index(
            self.group_ranks(self.creator_ranks, ledger, creator_rank), ledger)
        amount = amounts_minor(self.rng, count, self.s.amounts.tip_median_minor,
                               self.s.amounts.tip_sigma, self.s.amounts)
        return make_block(id=self.new_ids(count), sim_time_us=self.times(count),
                          debit_account=self.layout.user_account_ids(users),
                          credit_account=self.layout.ids(self.layout.creator_base + creator),
                          amount=amount, ledger=ledger, code=CODE["tip"])

    def cash(self, count: int, code_name: str) -> dict:
        users = self.senders(count)
        ledger = self.layout.user_ledger(users)
        user_ids = self.layout.user_account_ids(users)
        amount = lognormal_minor(self.rng, count, self.s.amounts.cash_median_minor,
                                 self.s.amounts.cash_sigma, self.s.amounts.max_minor)
        if code_name == "cash_in":
            debit, credit = self.layout.system_ids(ledger, "treasury"), user_ids
        else:
            debit, credit = user_ids, self.layout.system_ids(ledger, "outside_world")
        return make_block(id=self.new_ids(count), sim_time_us=self.times(count),
                          debit_account=debit, credit_account=credit, amount=amount,
                          ledger=ledger, code=CODE[code_name])

    # --- merchants -----------------------------------------------------------------------------
    def card_authorize(self, count: int, merchant_rank: int | None = None) -> dict:
        users = self.senders(count)
        ledger = self.layout.user_ledger(users)
        merchant = self.layout.merchant_index(
            self.group_ranks(self.merchant_ranks, ledger, merchant_rank), ledger)
        amount = amounts_minor(self.rng, count, self.s.amounts.card_median_minor,
                               self.s.amounts.card_sigma, self.s.amounts)
        block = make_block(id=self.new_ids(count), sim_time_us=self.times(count),
                           debit_account=self.layout.user_account_ids(users),
                           credit_account=self.layout.ids(self.layout.merchant_base + merchant),
                           amount=amount, ledger=ledger, code=CODE["card_authorize"],
                           flags=FLAG_PENDING, timeout_s=self.auth_timeout_s)
        self._schedule_fates(block, merchant)
        return block

    def _resolve_due_us(self, created_us: np.ndarray, mean_s: float,
                        timeout_s: int) -> np.ndarray:
        """Due time of a post/void: after the tick, before the hold expires."""
        due = created_us + self.delay_us(self.rng.exponential(mean_s, len(created_us)))
        latest = created_us + timeout_s * MICROSECONDS_PER_SECOND - 1
        return np.minimum(np.maximum(due, self.stop_us), latest)

    def _schedule_fates(self, auth: dict, merchant: np.ndarray) -> None:
        m, rng, count = self.s.merchant, self.rng, len(auth["id"])
        fate = rng.random(count)
        capture = np.flatnonzero(fate < m.capture_share)
        void = np.flatnonzero((fate >= m.capture_share)
                              & (fate < m.capture_share + m.void_share))
        due = self._resolve_due_us(auth["sim_time_us"], m.capture_delay_mean_s,
                                   self.auth_timeout_s)
        self.due.add(make_block(
            id=self.new_ids(len(void)), sim_time_us=due[void],
            debit_account=auth["debit_account"][void], credit_account=auth["credit_account"][void],
            amount=0, ledger=auth["ledger"][void], code=CODE["card_void"],
            flags=FLAG_VOID_PENDING_TRANSFER, pending_id=auth["id"][void]))
        captured = auth["amount"][capture]  # the authorised amounts (a copy), then
        partial = bernoulli_rows(rng, len(capture), m.partial_capture_share)
        ppm = rng.integers(PARTIAL_PPM_MIN, PPM, len(partial))
        captured[partial] = np.maximum(captured[partial] * ppm // PPM, 1)  # partial captures
        self._schedule_captures(auth, capture, captured, due[capture], merchant[capture])

    def _schedule_captures(self, auth: dict, rows: np.ndarray, captured: np.ndarray,
                           due: np.ndarray, merchant: np.ndarray) -> None:
        m, rng, count = self.s.merchant, self.rng, len(rows)
        ledger, user, shop = auth["ledger"][rows], auth["debit_account"][rows], \
            auth["credit_account"][rows]
        with_fee = m.fee_ppm > 0
        capture = make_block(id=self.new_ids(count), sim_time_us=due, debit_account=user,
                             credit_account=shop, amount=captured, ledger=ledger,
                             code=CODE["card_capture"], pending_id=auth["id"][rows],
                             flags=FLAG_POST_PENDING_TRANSFER | (FLAG_LINKED if with_fee else 0),
                             aux=merchant)
        if with_fee:
            fee = make_block(id=self.new_ids(count), sim_time_us=due, debit_account=shop,
                             credit_account=self.layout.system_ids(ledger, "fees"),
                             amount=np.maximum(captured * m.fee_ppm // PPM, 1), ledger=ledger,
                             code=CODE["fee"])
            capture = interleave(capture, fee)
        self.due.add(capture)
        refund = bernoulli_rows(rng, count, m.refund_share)
        refund_due = due[refund] + self.delay_us(rng.exponential(m.refund_delay_mean_s,
                                                                 len(refund)))
        ppm = rng.integers(PARTIAL_PPM_MIN, PPM, len(refund))
        self.due.add(make_block(
            id=self.new_ids(len(refund)), sim_time_us=refund_due, debit_account=shop[refund],
            credit_account=user[refund], amount=np.maximum(captured[refund] * ppm // PPM, 1),
            ledger=ledger[refund], code=CODE["refund"]))

    # --- crypto --------------------------------------------------------------------------------
    def _holders(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(holder, fiat account id, fiat ledger, coin) of `count` Zipf-active holders."""
        holder = self.holder_ranks.draw(self.rng, count)
        user = self.layout.holder_user.forward(holder)
        c = self.s.crypto
        coin_p = np.array([c.btc_share, c.eth_share, max(0.0, 1.0 - c.btc_share - c.eth_share)])
        coin = self.rng.choice(3, count, p=coin_p / coin_p.sum())
        return holder, self.layout.user_account_ids(user), self.layout.user_ledger(user), coin

    def _fiat_values(self, count: int) -> np.ndarray:
        c = self.s.crypto
        return lognormal_minor(self.rng, count, c.median_minor, c.sigma, CRYPTO_FIAT_MAX_MINOR)

    def crypto_trade(self, count: int, code_name: str) -> dict:
        """crypto_buy or crypto_sell: two LINKED legs per trade, at this tick's price."""
        holder, fiat_id, ledger, coin = self._holders(count)
        wallet = self.layout.wallet_ids(coin, holder)
        price = fiat_price_cents(self.prices_cents[coin, self.tick], ledger,
                                 self.s.crypto.usd_to_eur_ppm)
        fiat_liquidity = self.layout.system_ids(ledger, "liquidity")
        coin_liquidity = self.layout.system_ids(COIN_LEDGER[coin], "liquidity")
        time = self.times(count)
        if code_name == "crypto_buy":
            fiat = self._fiat_values(count)
            units = coin_units_for_fiat(fiat, price, coin)
            legs = ((fiat_id, fiat_liquidity, fiat, ledger),
                    (coin_liquidity, wallet, units, COIN_LEDGER[coin]))
        else:
            units = coin_units_for_fiat(self._fiat_values(count), price, coin)
            fiat = fiat_for_coin_units(units, price, coin)
            legs = ((wallet, coin_liquidity, units, COIN_LEDGER[coin]),
                    (fiat_liquidity, fiat_id, fiat, ledger))
        first, second = (make_block(id=self.new_ids(count), sim_time_us=time, debit_account=d,
                                    credit_account=k, amount=a, ledger=g, code=CODE[code_name],
                                    flags=FLAG_LINKED if i == 0 else 0)
                         for i, (d, k, a, g) in enumerate(legs))
        return interleave(first, second)

    def _coin_amounts(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(holder, coin, units) of `count` chain transfers: Zipf-active holders, each moving
        a lognormal fiat value's worth of its coin at this tick's price (the buy rule)."""
        holder, _, ledger, coin = self._holders(count)
        price = fiat_price_cents(self.prices_cents[coin, self.tick], ledger,
                                 self.s.crypto.usd_to_eur_ppm)
        return holder, coin, coin_units_for_fiat(self._fiat_values(count), price, coin)

    def crypto_withdraw(self, count: int) -> dict:
        holder, coin, units = self._coin_amounts(count)
        coin_ledger = COIN_LEDGER[coin]
        block = make_block(id=self.new_ids(count), sim_time_us=self.times(count),
                           debit_account=self.layout.wallet_ids(coin, holder),
                           credit_account=self.layout.system_ids(coin_ledger, "outside_world"),
                           amount=units, ledger=coin_ledger, code=CODE["crypto_withdraw"],
                           flags=FLAG_PENDING, timeout_s=self.withdraw_timeout_s)
        due = block["sim_time_us"] + self.delay_us(confirmation_delay_s(self.s.crypto, coin,
                                                                        self.rng))
        latest = block["sim_time_us"] + self.withdraw_timeout_s * MICROSECONDS_PER_SECOND - 1
        fail = self.rng.random(count) < self.s.crypto.withdraw_fail_share
        self.due.add(make_block(
            id=self.new_ids(count), sim_time_us=np.minimum(np.maximum(due, self.stop_us), latest),
            debit_account=block["debit_account"], credit_account=block["credit_account"],
            amount=np.where(fail, 0, units), ledger=coin_ledger,
            code=CODE["crypto_withdraw_settle"], pending_id=block["id"],
            flags=np.where(fail, FLAG_VOID_PENDING_TRANSFER, FLAG_POST_PENDING_TRANSFER)))
        return block

    def crypto_deposit(self, count: int) -> dict:
        """Deposits seen on chain now, credited after confirmations (queued; nothing now)."""
        holder, coin, units = self._coin_amounts(count)
        coin_ledger = COIN_LEDGER[coin]
        due = self.times(count) + self.delay_us(confirmation_delay_s(self.s.crypto, coin,
                                                                     self.rng))
        self.due.add(make_block(
            id=self.new_ids(count), sim_time_us=np.maximum(due, self.stop_us),
            debit_account=self.layout.system_ids(coin_ledger, "outside_world"),
            credit_account=self.layout.wallet_ids(coin, holder), amount=units,
            ledger=coin_ledger, code=CODE["crypto_deposit"]))
        return make_block(**{n: np.zeros(0, np.int64) for n in
                             ("id", "sim_time_us", "debit_account", "credit_account", "amount",
                              "ledger", "code")})
