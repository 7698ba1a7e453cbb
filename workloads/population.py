"""Who exists and who knows whom: the account layout and implicit maps of a scenario.

No per-account object and no per-user table exists: every property of a user is a function
of its index, computed on numpy arrays when needed, so 550M users cost nothing until their
accounts are written.

Account index layout (ids are `sparse_ids(index, ID_DOMAIN_ACCOUNT)`):
- system accounts (flags 0): for USD and EUR the roles treasury (funding), fees, settlement,
  outside_world, liquidity; for BTC, ETH, USDC the roles liquidity and outside_world;
- users [user_base, +users): one fiat account each, USD or EUR by the user's community;
- merchants [merchant_base, +merchants): the USD ones first, then the EUR ones;
- creators [creator_base, +creators): USD first, then EUR;
- crypto wallets [wallet_base, +3 * holders): BTC wallets of holders 0..H-1, then ETH, USDC.

Implicit structure:
- communities: user i belongs to block min(i // size, blocks - 1) (the last block takes the
  remainder); a block is EUR when a hash of its number falls below `eur_share`;
- friends: friend k of user i is a hashed member of i's own block (never i), so P2P follows
  community structure and not a power law;
- activity ranks: `AffinePermutation`s map Zipf ranks to scattered user (or holder) indices.
"""

from __future__ import annotations

import math

import numpy as np

from sim.constants import (
    ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, LEDGER_BTC, LEDGER_ETH, LEDGER_EUR, LEDGER_USD,
    LEDGER_USDC,
)
from sim.columns import Accounts
from workloads.ids import ID_DOMAIN_ACCOUNT, mix63_salted, sparse_ids
from workloads.tick_kernels import (
    affine_forward, as_kernel_array, friends, group_index, user_ledgers, user_ledgers_from_table,
)
from workloads.scenario import Population

FIAT_LEDGERS = (LEDGER_USD, LEDGER_EUR)
COIN_LEDGERS = (LEDGER_BTC, LEDGER_ETH, LEDGER_USDC)
FIAT_ROLES = ("treasury", "fees", "settlement", "outside_world", "liquidity")
COIN_ROLES = ("liquidity", "outside_world")
SYSTEM_ACCOUNTS = tuple((ledger, role) for ledger in FIAT_LEDGERS for role in FIAT_ROLES) + tuple(
    (ledger, role) for ledger in COIN_LEDGERS for role in COIN_ROLES)
SYSTEM_ACCOUNT_COUNT = len(SYSTEM_ACCOUNTS)
ACCOUNT_WRITE_CHUNK = 1 << 22
_SALT_COMMUNITY = np.uint64(0x5EED_C0FFEE)
_SALT_FRIEND = np.uint64(0x0F_12E4D5)
HASH_FRACTION_BITS = 52
BLOCK_LEDGER_TABLE_MAX = 1 << 24  # up to this many blocks, user ledgers come from a table


def hash_fraction(values: np.ndarray, salt: np.uint64) -> np.ndarray:
    """A fixed pseudo-random float in [0, 1) per value (no rng: structure, not a draw)."""
    mixed = mix63_salted(values, salt)
    return (mixed >> np.uint64(63 - HASH_FRACTION_BITS)).astype(np.float64) / 2.0**52


class AffinePermutation:
    """x -> (x * multiplier + offset) mod n: a bijection of [0, n), O(1) memory.

    The multiplier is drawn coprime to n; n <= 2**31 keeps every product inside int64.
    """

    def __init__(self, n: int, rng: np.random.Generator):
        assert 1 <= n <= 2**31, f"n(={n}) out of range"
        self.n = n
        multiplier = 1
        for _ in range(1000):
            candidate = int(rng.integers(max(1, n // 3), n)) if n > 2 else 1
            if math.gcd(candidate, n) == 1:
                multiplier = candidate
                break
        self.multiplier = multiplier
        self.offset = int(rng.integers(0, n))
        self.inverse_multiplier = pow(multiplier, -1, n) if n > 1 else 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(x * multiplier + offset) mod n, for 0 <= x < n (one numba pass)."""
        x = np.asarray(x)
        return affine_forward(as_kernel_array(x.ravel(), np.int64), self.multiplier,
                              self.offset, self.n).reshape(x.shape)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return ((y.astype(np.int64) - self.offset) % self.n) * self.inverse_multiplier % self.n


def split_counts(total: int, eur_share: float) -> tuple[int, int]:
    """(USD, EUR) counts of `total` accounts: EUR at least 1 when any EUR exists."""
    if eur_share <= 0.0:
        return total, 0
    if eur_share >= 1.0:
        return 0, total
    eur = min(total - 1, max(1, round(total * eur_share)))
    return total - eur, eur


class PopulationLayout:
    """Index ranges, ledgers and the implicit maps of one population."""

    def __init__(self, config: Population, rng: np.random.Generator):
        self.config = config
        n = config.users
        self.user_count = n
        self.block_count = max(1, n // config.community_size)
        self.merchant_count = max(2, n // config.users_per_merchant)
        self.creator_count = max(2, n // config.users_per_creator)
        self.merchant_split = split_counts(self.merchant_count, config.eur_share)
        self.creator_split = split_counts(self.creator_count, config.eur_share)
        self.holder_count = int(n * config.crypto_holder_share)
        self.user_base = SYSTEM_ACCOUNT_COUNT
        self.merchant_base = self.user_base + n
        self.creator_base = self.merchant_base + self.merchant_count
        self.wallet_base = self.creator_base + self.creator_count
        self.account_count = self.wallet_base + 3 * self.holder_count
        self.sender_of_rank = AffinePermutation(n, rng)  # sender rank -> user
        self.holder_user = AffinePermutation(n, rng)  # holder j (< holder_count) -> user
        self._block_ledger: np.ndarray | None = None  # ledger per block, built on first use
        self._system_id_tables: dict[str, np.ndarray] = {}

    # --- ids -------------------------------------------------------------------------------
    @staticmethod
    def ids(index: np.ndarray) -> np.ndarray:
        return sparse_ids(index, ID_DOMAIN_ACCOUNT)

    def system_index(self, ledger: int, role: str) -> int:
        return SYSTEM_ACCOUNTS.index((ledger, role))

    def system_ids(self, ledger: np.ndarray, role: str) -> np.ndarray:
        """Ids of one role's system account for each ledger in `ledger` (fiat or coin)."""
        table = self._system_id_tables.get(role)
        if table is None:  # the role's account id by ledger code, built once
            index = np.zeros(6, np.int64)
            for code in (FIAT_LEDGERS if role in FIAT_ROLES else ()) + (
                    COIN_LEDGERS if role in COIN_ROLES else ()):
                index[code] = self.system_index(code, role)
            table = self._system_id_tables[role] = self.ids(index)
        return table[np.asarray(ledger, np.int64)]

    # --- users -----------------------------------------------------------------------------
    def block_of(self, user: np.ndarray) -> np.ndarray:
        return np.minimum(user // self.config.community_size, self.block_count - 1)

    def user_ledger(self, user: np.ndarray) -> np.ndarray:
        """USD or EUR (uint32) by the user's community."""
        shape = np.shape(user)
        user = as_kernel_array(np.ravel(user), np.int64)
        if self.block_count <= BLOCK_LEDGER_TABLE_MAX:
            if self._block_ledger is None:
                blocks = np.arange(self.block_count, dtype=np.int64)
                eur = hash_fraction(blocks, _SALT_COMMUNITY) < self.config.eur_share
                self._block_ledger = np.where(eur, LEDGER_EUR, LEDGER_USD).astype(np.uint32)
            ledger = user_ledgers_from_table(user, self.config.community_size, self.block_count,
                                             self._block_ledger)
        else:
            ledger = user_ledgers(user, self.config.community_size, self.block_count,
                                  _SALT_COMMUNITY, float(self.config.eur_share), LEDGER_EUR,
                                  LEDGER_USD)
        return ledger.reshape(shape)

    def friend(self, user: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Friend k of each user: a hashed member of its own community block, never itself."""
        shape = np.broadcast_shapes(np.shape(user), np.shape(k))
        user = as_kernel_array(np.broadcast_to(user, shape).ravel(), np.int64)
        k = as_kernel_array(np.broadcast_to(k, shape).ravel(), np.int64)
        return friends(user, k, self.config.community_size, self.block_count, self.user_count,
                       self.config.friends_per_user, _SALT_FRIEND).reshape(shape)

    def user_account_ids(self, user: np.ndarray) -> np.ndarray:
        return self.ids(self.user_base + user)

    # --- merchants, creators, wallets --------------------------------------------------------
    def merchant_index(self, rank: np.ndarray, ledger: np.ndarray) -> np.ndarray:
        """Merchant number of a rank within the merchants of the payer's ledger."""
        return _group_index(rank, ledger, self.merchant_split)

    def creator_index(self, rank: np.ndarray, ledger: np.ndarray) -> np.ndarray:
        """Creator number of a rank within the creators of the payer's ledger."""
        return _group_index(rank, ledger, self.creator_split)

    def wallet_ids(self, coin: np.ndarray, holder: np.ndarray) -> np.ndarray:
        """coin 0 BTC, 1 ETH, 2 USDC."""
        return self.ids(self.wallet_base + coin.astype(np.int64) * self.holder_count + holder)

    # --- accounts file -----------------------------------------------------------------------
    def accounts(self) -> Accounts:
        """Every account, in index order (the only place with per-account arrays)."""
        count = self.account_count
        ledger = np.empty(count, np.uint32)
        for index, (code, _) in enumerate(SYSTEM_ACCOUNTS):
            ledger[index] = code
        for start in range(self.user_base, self.merchant_base, ACCOUNT_WRITE_CHUNK):
            stop = min(start + ACCOUNT_WRITE_CHUNK, self.merchant_base)
            ledger[start:stop] = self.user_ledger(np.arange(start, stop) - self.user_base)
        for base, (usd_count, eur_count) in ((self.merchant_base, self.merchant_split),
                                             (self.creator_base, self.creator_split)):
            ledger[base:base + usd_count] = LEDGER_USD
            ledger[base + usd_count:base + usd_count + eur_count] = LEDGER_EUR
        for coin, code in enumerate(COIN_LEDGERS):
            start = self.wallet_base + coin * self.holder_count
            ledger[start:start + self.holder_count] = code
        flags = np.full(count, ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, np.uint16)
        flags[:SYSTEM_ACCOUNT_COUNT] = 0
        return Accounts.from_columns(id=self.ids(np.arange(count)), ledger=ledger, flags=flags)


def _group_index(rank: np.ndarray, ledger: np.ndarray, split: tuple[int, int]) -> np.ndarray:
    """The USD group's numbers first, then the EUR group's; a rank is reduced modulo its
    group's size (at least 1)."""
    assert np.shape(rank) == np.shape(ledger), "a rank per ledger"
    return group_index(as_kernel_array(rank, np.int64), as_kernel_array(ledger, np.uint32),
                       LEDGER_EUR, split[0], split[1])
