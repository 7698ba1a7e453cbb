"""Plain Zipf P2P: funded user accounts, then P2P transfers and nothing else, so that a run
measures the engine's core path (the engine benchmark, the soak). The one plain-P2P source.

Layout: account 0 is the USD funding system account (flags 0), accounts 1..account_count are
users (DEBITS_MUST_NOT_EXCEED_CREDITS); ids are `workloads.ids.sparse_ids` (accounts) and
`range_ids` over the row number (transfers).

Epochs of `rows_per_epoch` rows: first one cash_in (code 8) per user, funding -> user; then P2P
rows (code 1), `transfer_count` of them, or for ever when it is None. Debit and credit users
follow two independent Zipf laws over ranks (`workloads.zipf.Zipf`), mapped to users through
two fixed random permutations; a credit that lands on its own debit account moves to the next
user. Each user is funded with a lognormal base plus `FUNDING_COVER` times the outflow its
sender rank implies, so that almost every P2P row passes; an endless stream funds every user
with `FUNDING_ENDLESS_MINOR`, so that no sender ever runs dry. Row j of an epoch of m rows
arrives at epoch * epoch_duration_us + j * epoch_duration_us // m.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from sim.columns import Accounts, Transfers
from sim.constants import ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, CODE, LEDGER_USD
from workloads.base import funding_minor, lognormal_mean_minor, lognormal_minor, materialize
from workloads.ids import ID_DOMAIN_ACCOUNT, ID_DOMAIN_TRANSFER, range_ids, sparse_ids
from workloads.zipf import Zipf

EPOCH_DURATION_US_DEFAULT = 1_000_000
P2P_MEDIAN_MINOR, P2P_SIGMA, P2P_MAX_MINOR = 2_000, 1.0, 10_000_000
FUNDING_BASE_MEDIAN_MINOR, FUNDING_BASE_SIGMA = 50_000, 0.5
FUNDING_COVER = 2.0
FUNDING_ENDLESS_MINOR = 10**12
FUNDING_ACCOUNT_INDEX = 0


class PlainP2P:
    """A `WorkloadSource` of plain Zipf P2P (module doc); `epochs()` replays identically."""

    name = "plain-p2p"

    def __init__(self, account_count: int, transfer_count: int | None, rows_per_epoch: int,
                 zipf_exponent: float, rng: np.random.Generator, *,
                 epoch_duration_us: int = EPOCH_DURATION_US_DEFAULT):
        if account_count < 2:
            raise ValueError(f"account_count(={account_count}) must be >= 2.")
        if transfer_count is not None and transfer_count < 0:
            raise ValueError(f"transfer_count(={transfer_count}) must be >= 0 (or None).")
        if rows_per_epoch < 1:
            raise ValueError(f"rows_per_epoch(={rows_per_epoch}) must be >= 1.")
        if epoch_duration_us < 1:
            raise ValueError(f"epoch_duration_us(={epoch_duration_us}) must be >= 1.")
        self.user_count, self.transfer_count = account_count, transfer_count
        self.rows_per_epoch, self.epoch_duration_us = rows_per_epoch, epoch_duration_us
        self.zipf = Zipf(account_count, zipf_exponent)
        self.debit_user_of_rank = rng.permutation(account_count)
        self.credit_user_of_rank = rng.permutation(account_count)
        self._entropy = [int(v) for v in rng.integers(0, 2**63, size=4)]
        self.account_count = account_count + 1
        self.account_ids = sparse_ids(np.arange(self.account_count), ID_DOMAIN_ACCOUNT)
        self.funding_epoch_count = -(-account_count // rows_per_epoch)
        self.epoch_total = (None if transfer_count is None else
                            self.funding_epoch_count + -(-transfer_count // rows_per_epoch))
        self.model_seconds_per_sim_second = 1.0

    def expected_row_count(self) -> float:
        return float("inf") if self.transfer_count is None else float(
            self.user_count + self.transfer_count)

    def configuration(self) -> dict:
        return {"source": self.name, "accounts": self.user_count,
                "transfers": self.transfer_count, "rows_per_epoch": self.rows_per_epoch,
                "zipf_exponent": self.zipf.exponent, "epoch_duration_us": self.epoch_duration_us}

    def accounts(self) -> Accounts:
        flags = np.full(self.account_count, ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, np.uint16)
        flags[FUNDING_ACCOUNT_INDEX] = 0
        return Accounts.from_columns(id=self.account_ids, flags=flags,
                                     ledger=np.full(self.account_count, LEDGER_USD, np.uint32))

    def epochs(self) -> Iterator[Transfers]:
        rng = np.random.default_rng(self._entropy)
        funding = self._funding_minor(rng)
        row, epoch, m = 0, 0, self.rows_per_epoch
        for first in range(0, self.user_count, m):
            users = np.arange(first, min(first + m, self.user_count))
            yield self._epoch(row, epoch, np.full(len(users), FUNDING_ACCOUNT_INDEX),
                              users + 1, funding[users], CODE["cash_in"])
            row, epoch = row + len(users), epoch + 1
        done = 0
        while self.transfer_count is None or done < self.transfer_count:
            count = m if self.transfer_count is None else min(m, self.transfer_count - done)
            debit, credit = self._pairs(rng, count)
            amount = lognormal_minor(rng, count, P2P_MEDIAN_MINOR, P2P_SIGMA, P2P_MAX_MINOR)
            yield self._epoch(row, epoch, debit + 1, credit + 1, amount, CODE["p2p"])
            row, epoch, done = row + count, epoch + 1, done + count

    def _pairs(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(debit user, credit user) of `count` P2P rows, never the same user."""
        debit = self.debit_user_of_rank[self.zipf.draw(rng, count)]
        credit = self.credit_user_of_rank[self.zipf.draw(rng, count)]
        clash = credit == debit
        credit[clash] = (credit[clash] + 1) % self.user_count
        return debit, credit

    def _funding_minor(self, rng: np.random.Generator) -> np.ndarray:
        """Each user's cash_in: lognormal base + ceil(FUNDING_COVER * expected outflow)."""
        if self.transfer_count is None:
            return np.full(self.user_count, FUNDING_ENDLESS_MINOR, np.int64)
        outflow = np.empty(self.user_count)
        outflow[self.debit_user_of_rank] = self.zipf.probability(
            np.arange(self.user_count)) * self.transfer_count * lognormal_mean_minor(
            P2P_MEDIAN_MINOR, P2P_SIGMA)
        return funding_minor(rng, outflow, FUNDING_COVER, FUNDING_BASE_MEDIAN_MINOR,
                             FUNDING_BASE_SIGMA)

    def _epoch(self, first_row: int, epoch: int, debit: np.ndarray, credit: np.ndarray,
               amount: np.ndarray, code: int) -> Transfers:
        count = len(amount)
        start_us = epoch * self.epoch_duration_us
        zeros = np.zeros(count, np.uint64)
        return Transfers.from_columns(
            id=range_ids(first_row, count, ID_DOMAIN_TRANSFER),
            epoch=np.full(count, epoch, np.uint64),
            sim_time_us=start_us + np.arange(count) * self.epoch_duration_us // max(count, 1),
            debit_account=self.account_ids[debit], credit_account=self.account_ids[credit],
            amount=amount, ledger=np.full(count, LEDGER_USD, np.uint32),
            code=np.full(count, code, np.uint16), flags=zeros.astype(np.uint16),
            pending_id=zeros, timeout_s=zeros.astype(np.uint32))


def plain_transfer_workload(account_count: int, transfer_count: int, rows_per_epoch: int,
                            zipf_exponent: float, rng: np.random.Generator, *,
                            epoch_duration_us: int = EPOCH_DURATION_US_DEFAULT
                            ) -> tuple[Accounts, Transfers]:
    """`PlainP2P`'s accounts and rows, materialised (for the engine benchmark)."""
    return materialize(PlainP2P(account_count, transfer_count, rows_per_epoch, zipf_exponent,
                                rng, epoch_duration_us=epoch_duration_us))
