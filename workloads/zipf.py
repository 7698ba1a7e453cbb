"""The bounded Zipf law of ranks: the one sampler every generator draws from (`Zipf`, by table
rejection) and its pmf (`zipf_probability`, for sizing, never for drawing).
`python -m pytest tests/test_zipf.py` checks the law; timings are in the README's generator
section.

P(rank r) is proportional to (r + 1) ** -exponent for r in [0, n). The ranks are cut into
bins, each at most 1/`BIN_RATIO_INVERSE` of its first rank + 1 wide (so ranks 0..254 have a
bin each), and the pmf falls by a factor of at most (1 + 1/BIN_RATIO_INVERSE) ** exponent
inside a bin: a few thousand bins even for n = 550M. The majorant gives every rank of bin b
the pmf of its first rank, p(lo_b). A try picks a bin by Walker's alias table (Vose's
construction) over the majorant masses width_b * p(lo_b), a rank r uniformly inside the bin,
and accepts it with probability p(r) / p(lo_b); a rejected try starts again. The squeeze
p(hi_b - 1) / p(lo_b), the smallest acceptance probability in the bin, settles all but at
most 1 - (1 + 1/128) ** -exponent of the tries (under 1% at exponent 1.2) without a power.
Exact for the Zipf law up to float rounding, like any rejection under the pmf: the tables
are float64 (the implied pmf is within 4e-14 relative of the true one; tested to 1e-11),
the alias coin keeps 53 - log2(bins) ~ 42 bits of its uniform and the acceptance uniform
53 - log2(width) bits (31 at 550M ranks), so a bin or rank whose probability is below
~2**-42 of its neighbours' is drawn with a relative error that is large for it and
negligible in all.

Speed comes from the layout: one 64-byte row per alias slot holds what a try needs of both
bins it may take, so a try reads one cache line, and the rare full test runs in a second pass
(see `workloads.normals` for why). The random stream is `workloads.normals`': the caller's
Generator draws one 64-bit key per call, and try a of value i reads draws 2a and 2a + 1.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from workloads.normals import stream_bits, unit_interval

BIN_RATIO_INVERSE = 128  # a bin's width is at most (first rank + 1) / 128, and at least 1
EXPONENT_MAX = 10.0


def zipf_bins(rank_count: int) -> tuple[np.ndarray, np.ndarray]:
    """(first rank, width) of every bin, int64: ranks 0..254 one bin each, then geometric."""
    firsts, widths = [], []
    rank = 0
    while rank < rank_count:
        width = min(max(1, (rank + 1) // BIN_RATIO_INVERSE), rank_count - rank)
        firsts.append(rank)
        widths.append(width)
        rank += width
    return np.array(firsts, np.int64), np.array(widths, np.int64)


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table by Vose's method: (prob, alias) such that picking bin b uniformly
    and keeping it when a uniform falls below prob[b], else taking alias[b], picks b with
    probability weights[b] / sum(weights)."""
    count = len(weights)
    scaled = [float(w) * count for w in weights / weights.sum()]
    prob = np.ones(count, np.float64)
    alias = np.arange(count, dtype=np.int64)
    small = [b for b, p in enumerate(scaled) if p < 1.0]
    large = [b for b, p in enumerate(scaled) if p >= 1.0]
    while small and large:
        less, more = small.pop(), large.pop()
        prob[less] = scaled[less]
        alias[less] = more
        scaled[more] = (scaled[more] + scaled[less]) - 1.0
        (small if scaled[more] < 1.0 else large).append(more)
    for b in small + large:  # what float rounding leaves is 1 up to rounding
        prob[b] = 1.0
    return prob, alias


# One row of 8 float64 (a cache line) per alias slot: what a draw needs of both bins it may
# take, so that a try reads one line. Ranks and widths are below 2**53: exact as float64.
SLOT_PROB, SLOT_LOW, SLOT_WIDTH, SLOT_SQUEEZE, SLOT_ALIAS = 0, 1, 2, 3, 4  # + 3: the alias's


@numba.njit(inline="always", cache=True)
def _propose(key, value, attempt, slots):
    """(rank, first rank of its bin, squeeze of its bin, g) of try `attempt` of value `value`:
    a bin by the alias table, a rank uniform inside it, and g, the uniform that the
    acceptance test compares."""
    bins = slots.shape[0]
    x = unit_interval(stream_bits(key, value, 2 * attempt)) * bins
    b = min(np.int64(x), bins - 1)
    side = SLOT_LOW if x - b < slots[b, SLOT_PROB] else SLOT_ALIAS
    low = slots[b, side]
    width = slots[b, side + 1]
    squeeze = slots[b, side + 2]
    y = unit_interval(stream_bits(key, value, 2 * attempt + 1)) * width
    k = min(math.floor(y), width - 1.0)
    return np.int64(low + k), low, squeeze, y - k


@numba.njit(cache=True)
def _slow(key, value, slots, exponent):
    """Value `value` by the full method, from its first try."""
    attempt = 0
    while True:
        rank, low, squeeze, g = _propose(key, value, attempt, slots)
        if g < squeeze or g < math.exp(-exponent * math.log((rank + 1.0) / (low + 1.0))):
            return rank
        attempt += 1


@numba.njit("void(uint64, int64, float64[:, ::1], float64, int64[::1])", cache=True, nogil=True)
def _fill(key, first, slots, exponent, out):
    """out[j] = rank number first + j of stream `key`. Two passes (as in `workloads.normals`):
    the first try's squeeze for every value (-1 where it does not settle), then the full
    method for those."""
    count = out.shape[0]
    for j in range(count):
        rank, low, squeeze, g = _propose(key, first + j, 0, slots)
        out[j] = rank if g < squeeze else -1
    for j in range(count):
        if out[j] < 0:
            out[j] = _slow(key, first + j, slots, exponent)


def _cache_aligned_rows(count: int) -> np.ndarray:
    """A zeroed (count, 8) float64 array whose rows start on 64-byte boundaries (one cache
    line each): a slice of a slightly larger buffer."""
    buffer = np.zeros(count * 8 + 8, np.float64)
    skip = (-buffer.ctypes.data % 64) // 8
    return buffer[skip:skip + count * 8].reshape(count, 8)


class Zipf:
    """Bounded Zipf ranks 0..n-1, P(r) proportional to (r + 1) ** -exponent (rank 0 hottest),
    by table rejection (module doc). `draw(rng, size)` takes one key from `rng`."""

    def __init__(self, rank_count: int, exponent: float):
        if rank_count < 1:
            raise ValueError(f"rank_count(={rank_count}) must be >= 1.")
        if not 0.0 <= exponent <= EXPONENT_MAX:
            raise ValueError(f"zipf exponent(={exponent}) must be in [0, {EXPONENT_MAX:g}].")
        self.rank_count, self.exponent = int(rank_count), float(exponent)
        self.lows, self.widths = zipf_bins(self.rank_count)
        last = self.lows + self.widths  # the last rank of a bin + 1
        # in logs, so that no power under- or overflows: mass_b = width_b * (lo_b + 1) ** -s
        log_mass = np.log(self.widths) - self.exponent * np.log(self.lows + 1.0)
        prob, alias = alias_table(np.exp(log_mass - log_mass.max()))
        squeeze = np.exp(-self.exponent * np.log(last / (self.lows + 1.0)))
        slots = _cache_aligned_rows(len(prob))
        slots[:, SLOT_PROB] = prob
        for side, bins in ((SLOT_LOW, np.arange(len(prob))), (SLOT_ALIAS, alias)):
            slots[:, side] = self.lows[bins]
            slots[:, side + 1] = self.widths[bins]
            slots[:, side + 2] = squeeze[bins]
        self.slots = slots

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """`size` ranks (int64, in [0, rank_count))."""
        out = np.empty(size, np.int64)
        key = rng.integers(0, 2**64, dtype=np.uint64)
        _fill(key, 0, self.slots, self.exponent, out)
        return out

    def probability(self, rank: np.ndarray) -> np.ndarray:
        """P(rank) of this law (float64), for sizing."""
        return zipf_probability(rank, self.rank_count, self.exponent)


# Up to this many ranks the normaliser is summed exactly; beyond, the tail is an integral.
NORMALISER_EXACT_RANKS = 1 << 20


def zipf_probability(rank: np.ndarray, rank_count: int, exponent: float) -> np.ndarray:
    """P(rank) of the bounded Zipf law that `Zipf(rank_count, exponent)` draws (float64)."""
    return (np.asarray(rank).astype(np.float64) + 1.0) ** -exponent / _zipf_normaliser(
        int(rank_count), float(exponent))


@functools.lru_cache(maxsize=64)
def _zipf_normaliser(rank_count: int, exponent: float) -> float:
    """Sum of (r + 1) ** -exponent over the ranks: the first NORMALISER_EXACT_RANKS terms
    exactly, the rest by the integral over [exact + 0.5, rank_count + 0.5] (relative error
    below 1e-12 for the tail's terms, which are tiny and smooth there); memoised."""
    exact_count = min(rank_count, NORMALISER_EXACT_RANKS)
    head = float(np.sum(np.arange(1, exact_count + 1, dtype=np.float64) ** -exponent))
    tail = 0.0
    if rank_count > exact_count:
        low, high = exact_count + 0.5, rank_count + 0.5
        if abs(exponent - 1.0) < 1e-12:
            tail = math.log(high / low)
        else:
            tail = (high ** (1 - exponent) - low ** (1 - exponent)) / (1 - exponent)
    return head + tail
