"""What a workload is to the engine, and the vectorised draws every workload shares.

A workload source hands over its accounts once and then its transfers one epoch at a time
(`WorkloadSource`); `materialize` joins the epochs into one column set for writing a workload
file. The helpers below it are the building blocks of the built-in workloads:

- `sparse_ids`: a fixed bijection from row or account indices to ids in [1, 2**63), so no
  module downstream can come to rely on ids being 1..N;
- `ZipfRanks`: bounded Zipf ranks, drawn in O(1) per draw by rejection-inversion;
- `lognormal_minor`: lognormal amounts in minor units, with the float-to-integer rule stated
  (its normals from `workloads.normals`);
- `funding_minor`: initial balances that cover each account's expected activity;
- `bernoulli_rows`: the rows an independent coin per row picks, at O(picked) cost.

Everything random takes a `numpy.random.Generator` argument; nothing here holds random state.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Iterator, Protocol, runtime_checkable

import numpy as np
import simpy

from sim.columns import Accounts, Transfers
from sim.constants import AMOUNT_MAX
from workloads.normals import NormalStream

# Draws are made in chunks of this many values, so that temporaries are reused from the heap
# instead of being page-faulted in afresh for every large array (the dominant cost otherwise).
DRAW_CHUNK_ROWS = 1 << 16


@runtime_checkable
class WorkloadSource(Protocol):
    """Accounts once, then each epoch's transfers in order.

    `epochs()` yields one `Transfers` per epoch: every row of it carries the same epoch number,
    epoch numbers strictly increase from one yield to the next, and `sim_time_us` never
    decreases, within an epoch or across epochs. Rows of one linked chain are adjacent.
    Calling `epochs()` again starts the same sequence again.
    """

    name: str

    def accounts(self) -> Accounts: ...

    def epochs(self) -> Iterator[Transfers]: ...


def pump_epochs(owner, tick_process) -> Iterator[Transfers]:
    """Step a SimPy environment whose process `tick_process(env, ready)` appends each tick's
    epoch to `ready`, and yield the epochs as they come. SimPy schedules ticks, never payments;
    the owner's simpy_event_count counts every event stepped, tick_count is its own to keep."""
    env = simpy.Environment()
    ready: deque[Transfers] = deque()
    env.process(tick_process(env, ready))
    owner.tick_count = 0
    owner.simpy_event_count = 0
    while True:
        while not ready and env.peek() != math.inf:
            env.step()
            owner.simpy_event_count += 1
        if not ready:
            return
        yield ready.popleft()


def materialize(source: WorkloadSource) -> tuple[Accounts, Transfers]:
    """All of a source's rows in one column set (for writing a workload file)."""
    accounts = source.accounts()
    parts = []
    epoch_last = -1
    sim_time_us_last = np.iinfo(np.int64).min
    for part in source.epochs():
        if len(part) == 0:
            continue
        epoch = int(part.epoch[0])
        assert np.all(part.epoch == part.epoch[0]), f"{source.name}: epoch {epoch} mixes epochs"
        assert epoch > epoch_last, f"{source.name}: epoch {epoch} follows epoch {epoch_last}"
        assert int(part.sim_time_us[0]) >= sim_time_us_last, f"{source.name}: time went back"
        assert np.all(np.diff(part.sim_time_us) >= 0), f"{source.name}: epoch {epoch} unsorted"
        epoch_last = epoch
        sim_time_us_last = int(part.sim_time_us[-1])
        parts.append(part)
    return accounts, Transfers.concat(parts)


# --- sparse ids ----------------------------------------------------------------------------
ID_BITS = 63
ID_MASK = np.uint64((1 << ID_BITS) - 1)
ID_DOMAIN_SHIFT = 56  # indices below 2**56 per domain; the domain tag sits above them
ID_INDEX_MAX = (1 << ID_DOMAIN_SHIFT) - 2
ID_DOMAIN_ACCOUNT = 1
ID_DOMAIN_TRANSFER = 2
_MIX_MULTIPLIER_1 = np.uint64(0xBF58476D1CE4E5B9)  # odd: invertible modulo 2**63
_MIX_MULTIPLIER_2 = np.uint64(0x94D049BB133111EB)  # odd


def _mix63(values: np.ndarray) -> np.ndarray:
    """A bijection of [0, 2**63) onto itself (splitmix64's finaliser, cut to 63 bits).

    Each step is invertible on 63-bit values: x ^ (x >> k), and multiplication by an odd
    constant modulo 2**63. It maps 0 to 0, so non-zero inputs give non-zero outputs.
    """
    x = values & ID_MASK
    x ^= x >> np.uint64(31)
    x *= _MIX_MULTIPLIER_1
    x &= ID_MASK
    x ^= x >> np.uint64(29)
    x *= _MIX_MULTIPLIER_2
    x &= ID_MASK
    x ^= x >> np.uint64(32)
    return x


def sparse_ids(index: np.ndarray, domain: int) -> np.ndarray:
    """Ids for indices 0, 1, 2, ... of one domain: unique, in [1, 2**63), scattered.

    Index i of domain d maps to mix63(d * 2**56 + i + 1); distinct (domain, index) pairs give
    distinct ids because mix63 is a bijection, and no id is 0 because no input is 0.
    """
    index = np.asarray(index)
    assert 1 <= domain < (1 << (ID_BITS - ID_DOMAIN_SHIFT)), f"domain(={domain}) out of range"
    if len(index):
        assert int(index.min()) >= 0, "indices must be >= 0"
        assert int(index.max()) <= ID_INDEX_MAX, f"indices must be <= {ID_INDEX_MAX}"
    tagged = index.astype(np.uint64) + np.uint64((domain << ID_DOMAIN_SHIFT) + 1)
    return _mix63(tagged)


# --- Zipf ranks --------------------------------------------------------------------------
def _log1p_over_x(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.log1p(x) / x
    series = 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    return np.where(np.abs(x) > 1e-8, exact, series)


def _expm1_over_x(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        exact = np.expm1(x) / x
    series = 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    return np.where(np.abs(x) > 1e-8, exact, series)


class ZipfRanks:
    """Bounded Zipf ranks 0..n-1 with P(rank r) proportional to (r + 1) ** -exponent.

    Rank 0 is the hottest. Drawn by rejection-inversion (Hörmann and Derflinger 1996, as in
    Apache Commons RNG's RejectionInversionZipfSampler): O(1) work and memory per draw, exact
    for any n, and about 999 draws in 1000 accepted at the first try. exponent 0 is uniform.
    """

    def __init__(self, rank_count: int, exponent: float):
        if rank_count < 1:
            raise ValueError(f"rank_count(={rank_count}) must be >= 1.")
        if not 0.0 <= exponent <= 10.0:
            raise ValueError(f"zipf exponent(={exponent}) must be in [0, 10].")
        self.rank_count = int(rank_count)
        self.exponent = float(exponent)
        self._h_integral_x1 = float(self._h_integral(np.array([1.5]))[0]) - 1.0
        self._h_integral_n = float(self._h_integral(np.array([rank_count + 0.5]))[0])
        inner = self._h_integral(np.array([2.5])) - self._h(np.array([2.0]))
        self._squeeze = 2.0 - float(self._h_integral_inverse(inner)[0])

    def _h(self, x: np.ndarray) -> np.ndarray:
        return np.exp(-self.exponent * np.log(x))

    def _h_integral(self, x: np.ndarray) -> np.ndarray:
        log_x = np.log(x)
        return _expm1_over_x((1.0 - self.exponent) * log_x) * log_x

    def _h_integral_inverse(self, x: np.ndarray) -> np.ndarray:
        t = np.maximum(x * (1.0 - self.exponent), -1.0)
        return np.exp(_log1p_over_x(t) * x)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """`size` ranks (int64, in [0, rank_count))."""
        out = np.empty(size, np.int64)
        if self.exponent == 0.0:
            out[:] = rng.integers(0, self.rank_count, size)
            return out
        for start in range(0, size, DRAW_CHUNK_ROWS):
            stop = min(start + DRAW_CHUNK_ROWS, size)
            out[start:stop] = self._draw_chunk(rng, stop - start)
        return out

    def _draw_chunk(self, rng: np.random.Generator, size: int) -> np.ndarray:
        ranks = np.empty(size, np.int64)
        todo = np.arange(size)
        while len(todo):
            u = self._h_integral_n + rng.random(len(todo)) * (
                self._h_integral_x1 - self._h_integral_n
            )
            x = self._h_integral_inverse(u)
            k = np.clip(np.floor(x + 0.5), 1.0, float(self.rank_count))
            accept = k - x <= self._squeeze
            check = ~accept
            k_check = k[check]
            accept[check] = u[check] >= self._h_integral(k_check + 0.5) - self._h(k_check)
            ranks[todo[accept]] = k[accept].astype(np.int64) - 1
            todo = todo[~accept]
        return ranks

    def probabilities(self) -> np.ndarray:
        """P(rank r) for every rank (float64, n values): for sizing, never for drawing."""
        weights = np.arange(1, self.rank_count + 1, dtype=np.float64) ** -self.exponent
        return weights / weights.sum()


# --- amounts -----------------------------------------------------------------------------
def lognormal_minor(
    rng: np.random.Generator, size: int, median_minor: int, sigma: float, max_minor: int
) -> np.ndarray:
    """Lognormal amounts in minor units (int64): median `median_minor`, log-sd `sigma`.

    Rounding rule: the float draw is rounded half up to an integer (floor(x + 0.5)), then
    clipped to [1, max_minor]. No float leaves this function.
    """
    assert 1 <= median_minor <= max_minor
    out = np.empty(size, np.int64)
    normals = NormalStream(rng)  # one key per call: the values do not depend on the chunking
    for start in range(0, size, DRAW_CHUNK_ROWS):
        stop = min(start + DRAW_CHUNK_ROWS, size)
        draw = normals.take(stop - start)  # then in place: the same float steps,
        draw *= sigma                               # sigma * z + log(median), exp, + 0.5,
        draw += np.log(median_minor)                # floor, clip, without temporaries
        np.exp(draw, out=draw)
        draw += 0.5
        np.floor(draw, out=draw)
        np.clip(draw, 1.0, float(max_minor), out=draw)
        out[start:stop] = draw
    return out


def funding_minor(
    rng: np.random.Generator, expected_outflow_minor: np.ndarray, cover: float,
    base_median_minor: int, base_sigma: float,
) -> np.ndarray:
    """Initial cash_in per account: a lognormal base plus ceil(cover * expected outflow).

    The expected outflow is a float quantity (activity share times mean amount); it becomes
    money by rounding up. Capped at AMOUNT_MAX.
    """
    base = lognormal_minor(rng, len(expected_outflow_minor), base_median_minor, base_sigma,
                           AMOUNT_MAX)
    return np.minimum(base + ceil_minor(expected_outflow_minor * cover), AMOUNT_MAX)


def ceil_minor(estimate: np.ndarray) -> np.ndarray:
    """A float sizing estimate (never a balance) as money: rounded up, capped at AMOUNT_MAX
    (2**53, exact in float64), int64. Any sum with other amounts is then done in integers."""
    return np.minimum(np.ceil(estimate), AMOUNT_MAX).astype(np.int64)


def lognormal_mean_minor(median_minor: int, sigma: float) -> float:
    """The mean of `lognormal_minor`'s distribution before clipping (a float, for sizing)."""
    return float(median_minor * np.exp(sigma * sigma / 2.0))


def bernoulli_rows(rng: np.random.Generator, count: int, share: float) -> np.ndarray:
    """Indices (int64, increasing) of the rows out of `count` that a coin of probability
    `share` picks, each row independently: the law of np.flatnonzero(rng.random(count) <
    share), drawn as a Binomial(count, share) number of rows and a uniformly random subset of
    that size, so a small share costs O(picked) rather than O(count)."""
    picked = int(rng.binomial(count, share)) if count else 0
    if picked == 0:
        return np.zeros(0, np.int64)
    rows = rng.choice(count, picked, replace=False, shuffle=False)
    rows.sort()
    return rows
