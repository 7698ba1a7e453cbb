"""The benchmark workload: funded user accounts, then plain Zipf-skewed P2P transfers.

Nothing but plain transfers (no chains, no pending transfers), so that a run measures the
engine's core path. Layout: account 0 is the USD funding system account (flags 0), accounts
1..account_count are users (DEBITS_MUST_NOT_EXCEED_CREDITS); all ids sparse.

Rows: first one cash_in (code 8) per user, funding -> user, in epochs of `rows_per_epoch`;
then `transfer_count` P2P rows (code 1) in the following epochs. Debit and credit users follow
two independent Zipf laws over ranks, mapped to users through two fixed random permutations;
a credit that lands on its own debit account moves to the next user. Each user is funded
with a lognormal base plus `FUNDING_COVER` times the outflow its sender rank implies, so that
almost every P2P row passes. Rows are spread evenly over each epoch's `epoch_duration_us`.

Built into preallocated columns chunk by chunk: 16M transfers over 4M accounts take a few
seconds, and memory is the output columns plus a few arrays of one value per account.
"""

from __future__ import annotations

import numpy as np

from sim.columns import TRANSFER_DTYPES, Accounts, Transfers
from sim.constants import (
    ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS,
    CODE,
    LEDGER_USD,
)
from workloads.base import (
    ID_DOMAIN_ACCOUNT,
    ID_DOMAIN_TRANSFER,
    ZipfRanks,
    funding_minor,
    lognormal_mean_minor,
    lognormal_minor,
    sparse_ids,
)

PLAIN_CHUNK_ROWS = 1 << 20
EPOCH_DURATION_US_DEFAULT = 1_000_000
P2P_MEDIAN_MINOR, P2P_SIGMA, P2P_MAX_MINOR = 2_000, 1.0, 10_000_000
FUNDING_BASE_MEDIAN_MINOR, FUNDING_BASE_SIGMA = 50_000, 0.5
FUNDING_COVER = 2.0
FUNDING_ACCOUNT_INDEX = 0


def plain_transfer_workload(
    account_count: int,
    transfer_count: int,
    rows_per_epoch: int,
    zipf_exponent: float,
    rng: np.random.Generator,
    *,
    epoch_duration_us: int = EPOCH_DURATION_US_DEFAULT,
) -> tuple[Accounts, Transfers]:
    """Accounts (account_count users + 1 funding account) and their funding + P2P rows."""
    if account_count < 2:
        raise ValueError(f"account_count(={account_count}) must be >= 2.")
    if transfer_count < 0:
        raise ValueError(f"transfer_count(={transfer_count}) must be >= 0.")
    if rows_per_epoch < 1:
        raise ValueError(f"rows_per_epoch(={rows_per_epoch}) must be >= 1.")
    if epoch_duration_us < 1:
        raise ValueError(f"epoch_duration_us(={epoch_duration_us}) must be >= 1.")
    ranks = ZipfRanks(account_count, zipf_exponent)
    debit_user_of_rank = rng.permutation(account_count)
    credit_user_of_rank = rng.permutation(account_count)
    account_ids = sparse_ids(np.arange(account_count + 1), ID_DOMAIN_ACCOUNT)
    flags = np.full(account_count + 1, ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, np.uint16)
    flags[FUNDING_ACCOUNT_INDEX] = 0
    accounts = Accounts.from_columns(
        id=account_ids, ledger=np.full(account_count + 1, LEDGER_USD, np.uint32), flags=flags
    )

    funding_epoch_count = -(-account_count // rows_per_epoch)
    columns = _allocate(account_count + transfer_count)
    columns["debit_account"][:account_count] = account_ids[FUNDING_ACCOUNT_INDEX]
    columns["credit_account"][:account_count] = account_ids[1:]
    columns["amount"][:account_count] = _initial_funding_minor(
        rng, ranks, debit_user_of_rank, transfer_count
    )
    columns["code"][:account_count] = CODE["cash_in"]
    columns["code"][account_count:] = CODE["p2p"]
    _fill_epochs(columns, 0, account_count, 0, rows_per_epoch, epoch_duration_us)
    _fill_epochs(columns, account_count, transfer_count, funding_epoch_count, rows_per_epoch,
                 epoch_duration_us)
    for start in range(0, transfer_count, PLAIN_CHUNK_ROWS):
        stop = min(start + PLAIN_CHUNK_ROWS, transfer_count)
        rows = slice(account_count + start, account_count + stop)
        debit_users = debit_user_of_rank[ranks.draw(rng, stop - start)]
        credit_users = credit_user_of_rank[ranks.draw(rng, stop - start)]
        clash = credit_users == debit_users
        credit_users[clash] = (credit_users[clash] + 1) % account_count
        columns["debit_account"][rows] = account_ids[1 + debit_users]
        columns["credit_account"][rows] = account_ids[1 + credit_users]
        columns["amount"][rows] = lognormal_minor(
            rng, stop - start, P2P_MEDIAN_MINOR, P2P_SIGMA, P2P_MAX_MINOR
        )
    return accounts, Transfers.from_columns(**columns)


def _allocate(row_count: int) -> dict:
    """Output columns; ids filled here, the constant columns of a plain USD transfer too."""
    columns = {name: np.zeros(row_count, dtype) for name, dtype in TRANSFER_DTYPES.items()}
    for start in range(0, row_count, PLAIN_CHUNK_ROWS):
        stop = min(start + PLAIN_CHUNK_ROWS, row_count)
        columns["id"][start:stop] = sparse_ids(np.arange(start, stop), ID_DOMAIN_TRANSFER)
    columns["ledger"][:] = LEDGER_USD
    return columns


def _initial_funding_minor(
    rng: np.random.Generator, ranks: ZipfRanks, debit_user_of_rank: np.ndarray,
    transfer_count: int,
) -> np.ndarray:
    """Each user's cash_in: lognormal base + ceil(FUNDING_COVER * expected outflow)."""
    expected_outflow = np.empty(ranks.rank_count)
    expected_outflow[debit_user_of_rank] = (
        ranks.probabilities() * transfer_count * lognormal_mean_minor(P2P_MEDIAN_MINOR, P2P_SIGMA)
    )
    return funding_minor(rng, expected_outflow, FUNDING_COVER, FUNDING_BASE_MEDIAN_MINOR,
                         FUNDING_BASE_SIGMA)


def _fill_epochs(columns: dict, first_row: int, row_count: int, first_epoch: int,
                 rows_per_epoch: int, epoch_duration_us: int) -> None:
    """Epoch numbers and evenly spread sim_time_us of rows [first_row, first_row + row_count).

    Row j of an epoch of m rows arrives at start + j * epoch_duration_us // m.
    """
    for start in range(0, row_count, PLAIN_CHUNK_ROWS):
        stop = min(start + PLAIN_CHUNK_ROWS, row_count)
        local = np.arange(start, stop, dtype=np.int64)
        epoch_local = local // rows_per_epoch
        in_epoch = local - epoch_local * rows_per_epoch
        epoch_rows = np.minimum(rows_per_epoch, row_count - epoch_local * rows_per_epoch)
        epoch = epoch_local + first_epoch
        rows = slice(first_row + start, first_row + stop)
        columns["epoch"][rows] = epoch
        columns["sim_time_us"][rows] = (
            epoch * epoch_duration_us + in_epoch * epoch_duration_us // epoch_rows
        )
