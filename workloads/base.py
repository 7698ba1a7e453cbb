"""What a workload is to the engine, and the vectorised draws every workload shares.

A workload source hands over its accounts once and then its transfers one epoch at a time
(`WorkloadSource`); `materialize` joins the epochs into one column set for writing a workload
file. The helpers below it are the building blocks of the built-in workloads (ids are in
`workloads.ids`, Zipf ranks in `workloads.zipf`):

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


PPM = 1_000_000  # parts per million: shares of money are integer ppm, applied as x * ppm // PPM


@runtime_checkable
class WorkloadSource(Protocol):
    """Accounts once, then each epoch's transfers in order.

    `epochs()` yields one `Transfers` per epoch: every row of it carries the same epoch number,
    epoch numbers strictly increase from one yield to the next, and `sim_time_us` never
    decreases, within an epoch or across epochs. Rows of one linked chain are adjacent.
    Calling `epochs()` again starts the same sequence again.

    - `account_count`: len(accounts()), known before the accounts are built;
    - `funding_epoch_count`: how many of the first epochs only fund accounts;
    - `epoch_total`: how many epochs `epochs()` yields (None: it never stops);
    - `model_seconds_per_sim_second`: the clock (describe's hourly curve reads it);
    - `expected_row_count()`: an estimate of the rows over all epochs, for sizing memory;
    - `configuration()`: what configured the source, as JSON-safe data.
    """

    name: str
    account_count: int
    funding_epoch_count: int
    epoch_total: int | None
    model_seconds_per_sim_second: float

    def expected_row_count(self) -> float: ...

    def configuration(self) -> dict: ...

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
