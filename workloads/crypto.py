"""Crypto side of the model: coin prices per tick, fiat<->coin conversion, chain delays.

Coins, in this order: 0 BTC (ledger 3, satoshi = 1e-8), 1 ETH (ledger 4, gwei = 1e-9),
2 USDC (ledger 5, 1e-6). Prices are integer fiat cents per whole coin, one value per tick:
BTC and ETH follow a geometric random walk with `daily_volatility` (log-sd per day, scaled by
sqrt(tick / day)), optionally with a crash that removes `crash_drop` of the price spread over
`crash_duration_s`; USDC stays at its peg. A EUR price is floor(usd_cents * usd_to_eur_ppm /
1e6).

Integer rules (stated once, used everywhere):
- buy: units = floor(fiat_cents * units_per_coin / price_cents), at least 1;
- sell: fiat_cents = floor(units * price_cents / units_per_coin), at least 1;
fiat values of crypto requests are capped at CRYPTO_FIAT_MAX_MINOR so no product overflows
int64 (1e9 cents * 1e9 units per coin = 1e18 < 2**63).

Chain delays (model seconds): BTC confirmation = sum of `btc_confirmations` exponential block
times with mean `btc_block_mean_s` (a gamma draw); ETH and USDC finality = `eth_finality_s`
plus a uniform wait for the next 12 s slot.
"""

from __future__ import annotations

import numpy as np

from sim.constants import LEDGER_BTC, LEDGER_ETH, LEDGER_EUR, LEDGER_USDC
from workloads.base import PPM
from workloads.scenario import SECONDS_PER_DAY, Crypto

COIN_NAMES = ("BTC", "ETH", "USDC")
COIN_LEDGER = np.array([LEDGER_BTC, LEDGER_ETH, LEDGER_USDC], np.uint32)
UNITS_PER_COIN = np.array([10**8, 10**9, 10**6], np.int64)
CRYPTO_FIAT_MAX_MINOR = 10**9
ETH_SLOT_S = 12.0
CENTS_PER_DOLLAR = 100


def price_path_cents(config: Crypto, tick_s: float, tick_count: int,
                     rng: np.random.Generator) -> np.ndarray:
    """USD cents per coin at the start of each tick: int64 array (3, tick_count)."""
    start_usd = np.array([config.btc_price_usd, config.eth_price_usd, config.usdc_price_usd])
    sigma = config.daily_volatility * np.sqrt(tick_s / SECONDS_PER_DAY)
    steps = rng.standard_normal((3, tick_count)) * sigma
    steps[2] = 0.0  # USDC is pegged
    steps[:, 0] = 0.0  # the first tick trades at the start price
    if config.crash_day >= 0 and config.crash_drop > 0.0:
        crash_start = config.crash_day * SECONDS_PER_DAY + config.crash_hour * 3_600.0
        crash_stop = crash_start + config.crash_duration_s
        tick_start = np.arange(tick_count) * tick_s
        # the share of the crash that falls before each tick's start lands in its step
        done = np.clip((tick_start - crash_start) / (crash_stop - crash_start), 0.0, 1.0)
        crash_step = np.diff(done, prepend=0.0) * np.log(1.0 - config.crash_drop)
        steps[:2] += crash_step
    log_price = np.log(start_usd * CENTS_PER_DOLLAR)[:, None] + np.cumsum(steps, axis=1)
    return np.maximum(np.floor(np.exp(log_price)), 1.0).astype(np.int64)


def fiat_price_cents(usd_cents: np.ndarray, ledger: np.ndarray, usd_to_eur_ppm: int) -> np.ndarray:
    """The coin price in the payer's fiat: USD cents, or floor(usd * ppm / 1e6) EUR cents."""
    eur = np.maximum(usd_cents * usd_to_eur_ppm // PPM, 1)
    return np.where(ledger == LEDGER_EUR, eur, usd_cents)


def coin_units_for_fiat(fiat_minor: np.ndarray, price_cents: np.ndarray,
                        coin: np.ndarray) -> np.ndarray:
    """floor(fiat * units_per_coin / price), at least 1 (buy rule)."""
    assert int(fiat_minor.max(initial=0)) <= CRYPTO_FIAT_MAX_MINOR
    return np.maximum(fiat_minor * UNITS_PER_COIN[coin] // price_cents, 1)


def fiat_for_coin_units(units: np.ndarray, price_cents: np.ndarray,
                        coin: np.ndarray) -> np.ndarray:
    """floor(units * price / units_per_coin), at least 1 (sell rule)."""
    return np.maximum(units * price_cents // UNITS_PER_COIN[coin], 1)


def confirmation_delay_s(config: Crypto, coin: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
    """Model seconds until a chain transaction of each coin is final."""
    btc = rng.gamma(config.btc_confirmations, config.btc_block_mean_s, len(coin))
    eth = config.eth_finality_s + rng.random(len(coin)) * ETH_SLOT_S
    return np.where(coin == 0, btc, eth)
