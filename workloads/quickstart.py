"""Quickstart: the first built-in workload, small enough for `xpay run` on a laptop.

One SimPy process steps simulated time one tick (one epoch) at a time; inside each tick numpy
draws all of the epoch's payments at once. A payment is never a SimPy event.

Accounts (all with sparse ids, see `workloads.base.sparse_ids`), in this index order:
- system accounts (flags 0), for USD then EUR: funding (treasury), outside world, FX liquidity;
- one USD account per user (DEBITS_MUST_NOT_EXCEED_CREDITS);
- one EUR account per EUR holder, a random `eur_holder_share` of the users (flagged);
- merchants: USD accounts (flagged), one per `users_per_merchant` users.

Epochs:
- funding epochs first: one cash_in (code 8) per user account, from its ledger's funding
  account, `rows_per_epoch` per epoch, USD accounts then EUR accounts. Each user is funded
  with a lognormal base plus `funding_cover` times the outflow their activity rank implies,
  so that hot senders do not run dry in the first traffic epoch;
- then `epoch_count` traffic epochs of `rows_per_epoch` rows each, built in this order:
  the captures (code 3, POST; some partial) and voids (code 4, VOID, amount 0) of earlier
  card authorisations that fall due, merchant payouts (code 7, merchant -> outside world)
  of 90% of what each merchant captured in the epoch before, then the rest of the rows shared
  by `card_authorize_share` (code 2, PENDING with a timeout), `fx_share` (two-leg exchange
  chains, `FX_EXCHANGE_CODE`), `top_up_share` (cash_in, code 8) and P2P (code 1, the rest).
  Senders of P2P, card payments and top-ups follow one Zipf law over users, receivers
  another; ranks map to users through fixed random permutations, so the hot users are
  scattered over the index and id space.

Integer rules: amounts are lognormal draws rounded half up (`lognormal_minor`); a partial
capture is floor(authorised * ppm / 1e6) with ppm uniform in [300000, 1000000), at least 1;
an exchange credits floor(debited * rate_ppm / 1e6) (the house keeps the remainder).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from typing import Iterator

import numpy as np
import simpy

from sim.columns import TRANSFER_DTYPES, Accounts, Transfers
from sim.constants import (
    ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS,
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
    pump_epochs,
    ID_DOMAIN_ACCOUNT,
    ID_DOMAIN_TRANSFER,
    ZipfRanks,
    funding_minor,
    lognormal_mean_minor,
    lognormal_minor,
    sparse_ids,
)

# LEDGER_SPEC.md has no currency-exchange code yet (16-99 are free): exchange legs carry 0.
FX_EXCHANGE_CODE = CODE["unspecified"]

# --- account layout ----------------------------------------------------------------------
SYSTEM_LEDGERS = (LEDGER_USD, LEDGER_EUR)
SYSTEM_ROLES = ("funding", "outside_world", "fx_liquidity")
SYSTEM_ACCOUNT_COUNT = len(SYSTEM_LEDGERS) * len(SYSTEM_ROLES)


def system_account_index(ledger: int, role: str) -> int:
    """Index (into `accounts()`) of a system account."""
    return SYSTEM_LEDGERS.index(ledger) * len(SYSTEM_ROLES) + SYSTEM_ROLES.index(role)


# --- amounts (minor units) ---------------------------------------------------------------
TRANSFER_MAX_MINOR = 100_000_000  # one draw is never above 1M USD / EUR
P2P_MEDIAN_MINOR, P2P_SIGMA = 2_000, 1.0
CARD_MEDIAN_MINOR, CARD_SIGMA = 3_500, 0.9
FX_MEDIAN_MINOR, FX_SIGMA, FX_MIN_MINOR = 10_000, 0.8, 100
TOP_UP_MEDIAN_MINOR, TOP_UP_SIGMA = 10_000, 0.7
FUNDING_BASE_MEDIAN_MINOR, FUNDING_BASE_SIGMA = 50_000, 0.5
PARTIAL_CAPTURE_PPM_MIN = 300_000
MERCHANT_PAYOUT_PPM = 900_000
PPM = 1_000_000


@dataclass(frozen=True)
class QuickstartConfig:
    user_count: int = 1_000_000
    epoch_count: int = 8  # traffic epochs, after the funding epochs
    rows_per_epoch: int = 200_000
    tick_us: int = 1_000_000  # simulated length of one epoch
    zipf_exponent: float = 1.0  # of sender, receiver and merchant activity
    eur_holder_share: float = 0.10
    users_per_merchant: int = 1_000
    card_authorize_share: float = 0.20  # shares of a traffic epoch's new rows; P2P the rest
    fx_share: float = 0.06
    top_up_share: float = 0.02
    card_capture_share: float = 0.85  # fates of authorisations; the rest expire
    card_void_share: float = 0.10
    partial_capture_share: float = 0.20
    capture_delay_epochs_max: int = 3
    funding_cover: float = 1.5
    usd_to_eur_ppm: int = 920_000
    eur_to_usd_ppm: int = 1_080_000

    def __post_init__(self):
        for name, low in (("user_count", 2), ("rows_per_epoch", 1), ("tick_us", 1),
                          ("users_per_merchant", 1), ("capture_delay_epochs_max", 1),
                          ("usd_to_eur_ppm", 1), ("eur_to_usd_ppm", 1), ("epoch_count", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}(={getattr(self, name)}) must be >= {low}.")
        for field in fields(self):
            if field.name.endswith("_share") and not 0.0 <= getattr(self, field.name) <= 1.0:
                raise ValueError(f"{field.name}(={getattr(self, field.name)}) must be in [0, 1].")
        if self.p2p_share < -1e-12:
            raise ValueError(
                f"card_authorize_share + fx_share + top_up_share"
                f"(={1.0 - self.p2p_share}) must be <= 1."
            )
        if self.card_capture_share + self.card_void_share > 1.0 + 1e-12:
            total = self.card_capture_share + self.card_void_share
            raise ValueError(f"card_capture_share + card_void_share(={total}) must be <= 1.")
        if self.funding_cover < 0.0:
            raise ValueError(f"funding_cover(={self.funding_cover}) must be >= 0.")

    @property
    def p2p_share(self) -> float:
        return 1.0 - self.card_authorize_share - self.fx_share - self.top_up_share

    @property
    def eur_holder_count(self) -> int:
        return int(self.user_count * self.eur_holder_share)

    @property
    def merchant_count(self) -> int:
        return max(1, self.user_count // self.users_per_merchant)

    @property
    def authorization_timeout_s(self) -> int:
        """Long enough that no authorisation expires before its latest capture or void."""
        span_us = (self.capture_delay_epochs_max + 1) * self.tick_us
        return -(-span_us // MICROSECONDS_PER_SECOND)

    @property
    def funding_epoch_count(self) -> int:
        return -(-(self.user_count + self.eur_holder_count) // self.rows_per_epoch)


class QuickstartWorkload:
    """A `WorkloadSource`: users, merchants and system accounts; funding then traffic epochs.

    Everything random comes from `rng`: the set of EUR holders and the activity permutations
    are drawn here, and the seed of the epochs' draws too, so `epochs()` replays identically.
    """

    name = "quickstart"

    def __init__(self, config: QuickstartConfig, rng: np.random.Generator):
        self.config = config
        user_count = config.user_count
        self.eur_holder_users = np.sort(
            rng.choice(user_count, size=config.eur_holder_count, replace=False)
        )
        self.sender_user_of_rank = rng.permutation(user_count)
        self.receiver_user_of_rank = rng.permutation(user_count)
        self.merchant_of_rank = rng.permutation(config.merchant_count)
        self._epochs_entropy = [int(v) for v in rng.integers(0, 2**63, size=4)]
        self.user_ranks = ZipfRanks(user_count, config.zipf_exponent)
        self.merchant_ranks = ZipfRanks(config.merchant_count, config.zipf_exponent)
        self.user_usd_base = SYSTEM_ACCOUNT_COUNT
        self.user_eur_base = self.user_usd_base + user_count
        self.merchant_base = self.user_eur_base + config.eur_holder_count
        self.account_count = self.merchant_base + config.merchant_count
        self.account_ids = sparse_ids(np.arange(self.account_count), ID_DOMAIN_ACCOUNT)
        self.epoch_total = config.funding_epoch_count + config.epoch_count
        self.tick_count = 0  # ticks of the SimPy process in the latest `epochs()` run
        self.simpy_event_count = 0  # SimPy events processed in the latest `epochs()` run

    def accounts(self) -> Accounts:
        ledger = np.full(self.account_count, LEDGER_USD, np.uint32)
        flags = np.full(self.account_count, ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, np.uint16)
        for ledger_code in SYSTEM_LEDGERS:
            for role in SYSTEM_ROLES:
                index = system_account_index(ledger_code, role)
                ledger[index] = ledger_code
                flags[index] = 0
        ledger[self.user_eur_base : self.merchant_base] = LEDGER_EUR
        return Accounts.from_columns(id=self.account_ids, ledger=ledger, flags=flags)

    def system_account_id(self, ledger: int, role: str) -> np.uint64:
        return self.account_ids[system_account_index(ledger, role)]

    def epochs(self) -> Iterator[Transfers]:
        run = _QuickstartRun(self, np.random.default_rng(self._epochs_entropy))
        return pump_epochs(self, lambda env, ready: self._tick_process(env, run, ready))

    def _tick_process(self, env: simpy.Environment, run: "_QuickstartRun", ready: deque):
        """The SimPy process: one tick per epoch; each tick draws that epoch's rows."""
        for epoch in range(self.epoch_total):
            ready.append(run.draw_epoch(epoch, int(env.now)))
            self.tick_count += 1
            if epoch + 1 < self.epoch_total:
                yield env.timeout(self.config.tick_us)


# --- the generator's record of card authorisations not yet resolved -------------------------
@dataclass
class Authorizations:
    """One row per authorisation not yet resolved, numpy columns (no per-row objects).

    `resolve_flags` is POST, VOID or 0 (left to expire); `due_epoch` is when the capture or
    void is sent, or, for those left to expire, an epoch by which the hold has expired.
    """

    pending_id: np.ndarray  # uint64
    debit_account: np.ndarray  # uint64
    credit_account: np.ndarray  # uint64
    amount: np.ndarray  # int64, authorised
    resolve_amount: np.ndarray  # int64, captured (POST) or 0
    resolve_flags: np.ndarray  # uint16
    due_epoch: np.ndarray  # int64

    @classmethod
    def empty(cls) -> "Authorizations":
        dtypes = (np.uint64, np.uint64, np.uint64, np.int64, np.int64, np.uint16, np.int64)
        return cls(*(np.zeros(0, d) for d in dtypes))

    def __len__(self) -> int:
        return len(self.pending_id)

    def _columns(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def append(self, other: "Authorizations") -> None:
        for name, column in other._columns().items():
            setattr(self, name, np.concatenate((getattr(self, name), column)))

    def pop_due(self, epoch: int) -> "Authorizations":
        """Remove and return the rows due at or before `epoch`."""
        due = self.due_epoch <= epoch
        popped = Authorizations(**{n: c[due] for n, c in self._columns().items()})
        for name, column in self._columns().items():
            setattr(self, name, column[~due])
        return popped


# --- one replay of the epochs ------------------------------------------------------------
_BLOCK_COLUMNS = tuple(n for n in TRANSFER_DTYPES if n not in ("id", "epoch"))


def _block(sim_time_us, debit_account, credit_account, amount, ledger, code,
           flags=0, pending_id=0, timeout_s=0) -> dict:
    """Rows of one kind, as columns (scalars broadcast to the row count)."""
    values = dict(sim_time_us=sim_time_us, debit_account=debit_account,
                  credit_account=credit_account, amount=amount, ledger=ledger, code=code,
                  flags=flags, pending_id=pending_id, timeout_s=timeout_s)
    count = len(sim_time_us)
    return {n: np.broadcast_to(np.asarray(values[n], TRANSFER_DTYPES[n]), (count,))
            for n in _BLOCK_COLUMNS}


class _QuickstartRun:
    """The mutable state of one pass over the epochs: rng, id counter, open authorisations."""

    def __init__(self, workload: QuickstartWorkload, rng: np.random.Generator):
        self.workload = workload
        self.config = workload.config
        self.rng = rng
        self.transfer_index = 0
        self.authorizations = Authorizations.empty()
        self.payout_merchants = np.zeros(0, np.uint64)
        self.payout_minor = np.zeros(0, np.int64)
        self.initial_funding_minor = self._initial_funding_minor()

    def draw_epoch(self, epoch: int, start_us: int) -> Transfers:
        if epoch < self.config.funding_epoch_count:
            blocks = [self._funding(epoch, start_us)]
        else:
            blocks = self._traffic(epoch, start_us)
        transfers = self._assemble(blocks, epoch)
        if epoch >= self.config.funding_epoch_count:
            self._record_authorizations(transfers, epoch)
            self._record_captures(transfers)
        return transfers

    def _times(self, count: int, start_us: int) -> np.ndarray:
        return self.rng.integers(start_us, start_us + self.config.tick_us, count, np.int64)

    def _assemble(self, blocks: list[dict], epoch: int) -> Transfers:
        """Blocks joined and stably sorted by time (chain legs stay adjacent), ids assigned."""
        columns = {n: np.concatenate([b[n] for b in blocks]) for n in _BLOCK_COLUMNS}
        order = np.argsort(columns["sim_time_us"], kind="stable")
        count = len(order)
        index = np.arange(self.transfer_index, self.transfer_index + count)
        self.transfer_index += count
        return Transfers.from_columns(
            id=sparse_ids(index, ID_DOMAIN_TRANSFER),
            epoch=np.full(count, epoch, np.uint64),
            **{n: c[order] for n, c in columns.items()},
        )

    # --- funding -------------------------------------------------------------------------
    def _initial_funding_minor(self) -> np.ndarray:
        """Initial cash_in of every user account (USD accounts then EUR accounts)."""
        config, workload = self.config, self.workload
        traffic_rows = config.epoch_count * config.rows_per_epoch
        sends_per_rank = workload.user_ranks.probabilities() * traffic_rows
        spend_per_send = (
            config.p2p_share * lognormal_mean_minor(P2P_MEDIAN_MINOR, P2P_SIGMA)
            + config.card_authorize_share * lognormal_mean_minor(CARD_MEDIAN_MINOR, CARD_SIGMA)
        )
        outflow = np.empty(config.user_count + config.eur_holder_count)
        outflow[workload.sender_user_of_rank] = sends_per_rank * spend_per_send
        if config.eur_holder_count:
            chains_per_holder = traffic_rows * config.fx_share / 2 / config.eur_holder_count
            fx_outflow = chains_per_holder / 2 * lognormal_mean_minor(FX_MEDIAN_MINOR, FX_SIGMA)
            outflow[workload.eur_holder_users] += fx_outflow
            outflow[config.user_count :] = fx_outflow
        return funding_minor(self.rng, outflow, config.funding_cover,
                             FUNDING_BASE_MEDIAN_MINOR, FUNDING_BASE_SIGMA)

    def _funding(self, epoch: int, start_us: int) -> dict:
        config, workload = self.config, self.workload
        first = epoch * config.rows_per_epoch
        last = min(first + config.rows_per_epoch, len(self.initial_funding_minor))
        account_index = np.arange(first, last) + workload.user_usd_base
        is_eur = account_index >= workload.user_eur_base
        ledger = np.where(is_eur, LEDGER_EUR, LEDGER_USD)
        funding_index = np.where(
            is_eur,
            system_account_index(LEDGER_EUR, "funding"),
            system_account_index(LEDGER_USD, "funding"),
        )
        ids = workload.account_ids
        return _block(self._times(last - first, start_us), ids[funding_index],
                      ids[account_index], self.initial_funding_minor[first:last], ledger,
                      CODE["cash_in"])

    # --- traffic -------------------------------------------------------------------------
    def _traffic(self, epoch: int, start_us: int) -> list[dict]:
        config = self.config
        blocks = [self._resolutions(epoch, start_us), self._payouts(start_us)]
        budget = max(0, config.rows_per_epoch - sum(len(b["amount"]) for b in blocks))
        fx_chain_count = int(budget * config.fx_share) // 2
        if config.eur_holder_count == 0:
            fx_chain_count = 0
        top_up_count = int(budget * config.top_up_share)
        authorize_count = int(budget * config.card_authorize_share)
        p2p_count = budget - 2 * fx_chain_count - top_up_count - authorize_count
        blocks.append(self._p2p(p2p_count, start_us))
        blocks.append(self._card_authorize(authorize_count, start_us))
        blocks.append(self._fx_chains(fx_chain_count, start_us))
        blocks.append(self._top_ups(top_up_count, start_us))
        return blocks

    def _senders(self, count: int) -> np.ndarray:
        """USD account ids of `count` Zipf-drawn senders."""
        users = self.workload.sender_user_of_rank[self.workload.user_ranks.draw(self.rng, count)]
        return self.workload.account_ids[self.workload.user_usd_base + users]

    def _p2p(self, count: int, start_us: int) -> dict:
        workload, user_count = self.workload, self.config.user_count
        senders = workload.sender_user_of_rank[workload.user_ranks.draw(self.rng, count)]
        receivers = workload.receiver_user_of_rank[workload.user_ranks.draw(self.rng, count)]
        receivers = np.where(receivers == senders, (receivers + 1) % user_count, receivers)
        ids = workload.account_ids[workload.user_usd_base :]
        amount = lognormal_minor(self.rng, count, P2P_MEDIAN_MINOR, P2P_SIGMA,
                                 TRANSFER_MAX_MINOR)
        return _block(self._times(count, start_us), ids[senders], ids[receivers], amount,
                      LEDGER_USD, CODE["p2p"])

    def _card_authorize(self, count: int, start_us: int) -> dict:
        workload = self.workload
        debit = self._senders(count)
        merchants = workload.merchant_of_rank[workload.merchant_ranks.draw(self.rng, count)]
        credit = workload.account_ids[workload.merchant_base + merchants]
        amount = lognormal_minor(self.rng, count, CARD_MEDIAN_MINOR, CARD_SIGMA,
                                 TRANSFER_MAX_MINOR)
        return _block(self._times(count, start_us), debit, credit, amount, LEDGER_USD,
                      CODE["card_authorize"], flags=FLAG_PENDING,
                      timeout_s=self.config.authorization_timeout_s)

    def _top_ups(self, count: int, start_us: int) -> dict:
        funding = self.workload.system_account_id(LEDGER_USD, "funding")
        amount = lognormal_minor(self.rng, count, TOP_UP_MEDIAN_MINOR, TOP_UP_SIGMA,
                                 TRANSFER_MAX_MINOR)
        return _block(self._times(count, start_us), funding, self._senders(count), amount,
                      LEDGER_USD, CODE["cash_in"])

    def _fx_chains(self, count: int, start_us: int) -> dict:
        """Exchange chains: leg 1 (LINKED) user -> source liquidity; leg 2 target liquidity
        -> user, for floor(amount * rate_ppm / 1e6). Half USD->EUR, half EUR->USD."""
        config, workload = self.config, self.workload
        holder = self.rng.integers(0, config.eur_holder_count, count)
        to_eur = self.rng.random(count) < 0.5
        user_usd = workload.account_ids[workload.user_usd_base + workload.eur_holder_users[holder]]
        user_eur = workload.account_ids[workload.user_eur_base + holder]
        source = lognormal_minor(self.rng, count, FX_MEDIAN_MINOR, FX_SIGMA, TRANSFER_MAX_MINOR)
        source = np.maximum(source, FX_MIN_MINOR)
        rate_ppm = np.where(to_eur, config.usd_to_eur_ppm, config.eur_to_usd_ppm)
        target = np.maximum(source * rate_ppm // PPM, 1)
        usd_liquidity = workload.system_account_id(LEDGER_USD, "fx_liquidity")
        eur_liquidity = workload.system_account_id(LEDGER_EUR, "fx_liquidity")
        source_ledger = np.where(to_eur, LEDGER_USD, LEDGER_EUR)
        legs = dict(
            debit=(np.where(to_eur, user_usd, user_eur),
                   np.where(to_eur, eur_liquidity, usd_liquidity)),
            credit=(np.where(to_eur, usd_liquidity, eur_liquidity),
                    np.where(to_eur, user_eur, user_usd)),
            amount=(source, target),
            ledger=(source_ledger, np.where(to_eur, LEDGER_EUR, LEDGER_USD)),
            flags=(np.full(count, FLAG_LINKED), np.zeros(count, np.int64)),
        )
        interleave = {k: np.stack(np.broadcast_arrays(*v), axis=1).ravel() for k, v in legs.items()}
        time = np.repeat(self._times(count, start_us), 2)
        return _block(time, interleave["debit"], interleave["credit"], interleave["amount"],
                      interleave["ledger"], FX_EXCHANGE_CODE, flags=interleave["flags"])

    def _resolutions(self, epoch: int, start_us: int) -> dict:
        """Captures and voids of authorisations due now; those left to expire send nothing."""
        due = self.authorizations.pop_due(epoch)
        sent = due.resolve_flags != 0
        code = np.where(due.resolve_flags[sent] == FLAG_POST_PENDING_TRANSFER,
                        CODE["card_capture"], CODE["card_void"])
        return _block(self._times(int(sent.sum()), start_us), due.debit_account[sent],
                      due.credit_account[sent], due.resolve_amount[sent], LEDGER_USD, code,
                      flags=due.resolve_flags[sent], pending_id=due.pending_id[sent])

    def _payouts(self, start_us: int) -> dict:
        outside = self.workload.system_account_id(LEDGER_USD, "outside_world")
        amount = self.payout_minor * MERCHANT_PAYOUT_PPM // PPM
        keep = amount > 0
        return _block(self._times(int(keep.sum()), start_us), self.payout_merchants[keep],
                      outside, amount[keep], LEDGER_USD, CODE["merchant_payout"])

    # --- the generator's own books -------------------------------------------------------
    def _record_authorizations(self, transfers: Transfers, epoch: int) -> None:
        """Decide each new authorisation's fate (capture, partial capture, void, expiry)."""
        config, rng = self.config, self.rng
        new = np.flatnonzero(transfers.flags == FLAG_PENDING)
        count = len(new)
        amount = transfers.amount[new]
        fate = rng.random(count)
        capture = fate < config.card_capture_share
        void = ~capture & (fate < config.card_capture_share + config.card_void_share)
        partial = capture & (rng.random(count) < config.partial_capture_share)
        partial_ppm = rng.integers(PARTIAL_CAPTURE_PPM_MIN, PPM, count)
        resolve_amount = np.where(partial, np.maximum(amount * partial_ppm // PPM, 1), amount)
        resolve_amount[~capture] = 0
        resolve_flags = np.zeros(count, np.uint16)
        resolve_flags[capture] = FLAG_POST_PENDING_TRANSFER
        resolve_flags[void] = FLAG_VOID_PENDING_TRANSFER
        due_epoch = epoch + rng.integers(1, config.capture_delay_epochs_max + 1, count)
        expired_by = -(-config.authorization_timeout_s * MICROSECONDS_PER_SECOND
                       // config.tick_us)
        due_epoch[resolve_flags == 0] = epoch + 1 + expired_by
        self.authorizations.append(Authorizations(
            transfers.id[new], transfers.debit_account[new], transfers.credit_account[new],
            amount, resolve_amount, resolve_flags, due_epoch))

    def _record_captures(self, transfers: Transfers) -> None:
        """What each merchant captured this epoch: paid out (in part) in the next epoch."""
        captured = transfers.code == CODE["card_capture"]
        merchants, which = np.unique(transfers.credit_account[captured], return_inverse=True)
        total_minor = np.zeros(len(merchants), np.int64)
        np.add.at(total_minor, which, transfers.amount[captured])
        self.payout_merchants = merchants
        self.payout_minor = total_minor
