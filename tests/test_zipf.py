"""workloads.zipf.Zipf (bounded Zipf ranks by table rejection): its tables and its law,
checked with tests that a wrong sampler fails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workloads import zipf
from workloads.zipf import Zipf

DRAWS = 1_000_000
Z_LIMIT = 4.0  # a correct sampler exceeds this z-score with probability ~1e-4 (chi-square)


def pmf(rank_count: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, rank_count + 1, dtype=np.float64) ** -exponent
    return weights / weights.sum()


def chi_square_z(ranks: np.ndarray, probabilities: np.ndarray, min_expected: float = 20.0) -> float:
    """Pearson's chi-square of the rank counts against `probabilities`, as a z-score. Ranks are
    pooled in order into groups that expect at least `min_expected` draws each."""
    observed = np.bincount(ranks, minlength=len(probabilities)).astype(np.float64)
    expected = probabilities * len(ranks)
    groups, total_o, total_e = [], 0.0, 0.0
    for o, e in zip(observed, expected):
        total_o, total_e = total_o + o, total_e + e
        if total_e >= min_expected:
            groups.append((total_o, total_e))
            total_o, total_e = 0.0, 0.0
    if total_e > 0.0:  # the remainder joins the last group
        o, e = groups.pop()
        groups.append((o + total_o, e + total_e))
    o, e = np.array(groups).T
    chi2 = float(((o - e) ** 2 / e).sum())
    dof = len(e) - 1
    return (chi2 - dof) / math.sqrt(2.0 * dof)


@pytest.mark.parametrize("rank_count, exponent", [
    (1, 0.7), (2, 1.0), (300, 0.0), (300, 0.7), (5_000, 1.1), (40_000, 1.2), (3_000, 3.0),
    (1_000, 10.0),
])
def test_ranks_follow_the_bounded_zipf_law(rank_count, exponent):
    ranks = Zipf(rank_count, exponent).draw(np.random.default_rng(rank_count), DRAWS)
    assert ranks.dtype == np.int64
    assert 0 <= ranks.min() and ranks.max() < rank_count
    if rank_count > 1:
        assert abs(chi_square_z(ranks, pmf(rank_count, exponent))) < Z_LIMIT


def test_a_million_ranks_at_the_sender_exponent():
    """quick's senders: 1M ranks at 0.7. Every bin is wider than one rank past rank 254, so the
    in-bin acceptance shapes nearly all of the mass; counts are checked over the pooled law."""
    ranks = Zipf(1_000_000, 0.7).draw(np.random.default_rng(5), 4 * DRAWS)
    assert abs(chi_square_z(ranks, pmf(1_000_000, 0.7), min_expected=200.0)) < Z_LIMIT


@pytest.mark.parametrize("exponent", [0.7, 1.2, 3.0])
def test_coarse_bins_keep_the_law_through_the_acceptance_test(monkeypatch, exponent):
    """With bins up to half their first rank + 1 wide, the pmf falls by up to 1.5 ** exponent
    inside a bin, so the squeeze often fails and the power decides: the law must still hold."""
    monkeypatch.setattr(zipf, "BIN_RATIO_INVERSE", 2)
    sampler = Zipf(20_000, exponent)
    assert sampler.widths.max() > 3_000
    ranks = sampler.draw(np.random.default_rng(3), DRAWS)
    assert abs(chi_square_z(ranks, pmf(20_000, exponent))) < Z_LIMIT


def test_a_sampler_without_the_acceptance_test_fails_the_same_check(monkeypatch):
    """The majorant alone (every proposal accepted) is a staircase, not the Zipf law: with the
    coarse bins above, the same check sees it at once."""
    monkeypatch.setattr(zipf, "BIN_RATIO_INVERSE", 2)
    sampler = Zipf(20_000, 1.2)
    for side in (zipf.SLOT_LOW, zipf.SLOT_ALIAS):
        sampler.slots[:, side + 2] = 1.0  # squeeze 1: every proposal accepted
    ranks = sampler.draw(np.random.default_rng(3), DRAWS)
    assert chi_square_z(ranks, pmf(20_000, 1.2)) > 10 * Z_LIMIT


@pytest.mark.parametrize("rank_count", [1, 2, 254, 255, 256, 1_000, 123_457, 550_000_000])
def test_bins_tile_the_ranks_with_bounded_widths(rank_count):
    lows, widths = zipf.zipf_bins(rank_count)
    assert lows[0] == 0 and (widths >= 1).all()
    assert (lows[1:] == lows[:-1] + widths[:-1]).all()
    assert lows[-1] + widths[-1] == rank_count
    assert (widths <= np.maximum(1, (lows + 1) // zipf.BIN_RATIO_INVERSE)).all()
    assert len(lows) < 2_300  # a few thousand bins even at 550M ranks: the table fits in L2


@pytest.mark.parametrize("seed", range(4))
def test_alias_table_gives_each_bin_its_mass(seed):
    weights = np.random.default_rng(seed).pareto(1.5, 1 + 97 * seed) + 1e-6
    prob, alias = zipf.alias_table(weights)
    count = len(weights)
    assert ((0.0 <= prob) & (prob <= 1.0)).all() and ((0 <= alias) & (alias < count)).all()
    mass = prob.copy()
    np.add.at(mass, alias, 1.0 - prob)
    np.testing.assert_allclose(mass / count, weights / weights.sum(), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("exponent", [0.0, 0.7, 1.2, 10.0])
def test_squeeze_never_exceeds_the_acceptance_probability(exponent):
    sampler = Zipf(3_000, exponent)
    lows, widths = sampler.lows, sampler.widths
    squeeze = np.exp(-exponent * np.log((lows + widths) / (lows + 1.0)))
    for low, width, s in zip(lows, widths, squeeze):
        ranks = np.arange(low, low + width)
        accept = ((ranks + 1.0) / (low + 1.0)) ** -exponent
        assert s <= accept.min() * (1 + 1e-12)


def implied_pmf(sampler: Zipf) -> np.ndarray:
    """The law the tables give, computed exactly from `slots`: each alias slot picked with
    1/slots, its own bin with probability PROB else its alias's bin, a rank uniform in that
    bin, kept with probability ((rank + 1) / (first + 1)) ** -exponent; normalised."""
    slots, n, s = sampler.slots, sampler.rank_count, sampler.exponent
    law = np.zeros(n)
    for row in slots:
        for side, share in ((zipf.SLOT_LOW, row[zipf.SLOT_PROB]),
                            (zipf.SLOT_ALIAS, 1.0 - row[zipf.SLOT_PROB])):
            low, width = int(row[side]), int(row[side + 1])
            ranks = np.arange(low, low + width)
            accept = np.exp(-s * np.log((ranks + 1.0) / (low + 1.0)))
            assert row[side + 2] <= accept.min() * (1 + 1e-12)  # the squeeze never over-accepts
            law[low:low + width] += share / width * accept
    return law / law.sum()


@pytest.mark.parametrize("rank_count", [1, 2, 300, 5_000, 100_000])
@pytest.mark.parametrize("exponent", [0.0, 0.7, 1.2, 10.0])
def test_the_tables_imply_the_zipf_law_exactly(rank_count, exponent):
    """A deterministic check of every table entry: a wrong alias probability, width or squeeze
    shows here even where a chi-square of a million draws would not see it."""
    sampler = Zipf(rank_count, exponent)
    expected = pmf(rank_count, exponent)
    np.testing.assert_allclose(implied_pmf(sampler), expected, rtol=1e-11, atol=1e-300)


@pytest.mark.parametrize("column", ["prob", "width", "squeeze"])
def test_the_exact_check_sees_one_wrong_table_entry(column):
    sampler = Zipf(5_000, 1.1)
    slots = sampler.slots
    if column == "prob":  # an alias probability 2% low
        slots[7, zipf.SLOT_PROB] *= 0.98
    elif column == "width":  # a bin half as wide as it is
        row = int(np.flatnonzero(slots[:, zipf.SLOT_WIDTH] > 4)[0])
        slots[row, zipf.SLOT_WIDTH] = np.floor(slots[row, zipf.SLOT_WIDTH] / 2)
    else:  # a squeeze 1% above its bin's smallest acceptance probability
        row = int(np.flatnonzero(slots[:, zipf.SLOT_WIDTH] > 4)[0])
        slots[row, zipf.SLOT_SQUEEZE] *= 1.01
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(implied_pmf(sampler), pmf(5_000, 1.1), rtol=1e-11)


def test_slot_rows_start_on_cache_lines():
    assert Zipf(1_000_000, 0.7).slots.ctypes.data % 64 == 0


def test_slots_hold_both_bins_of_each_alias_slot():
    sampler = Zipf(10_000, 1.1)
    slots = sampler.slots
    own = np.arange(len(sampler.lows))
    np.testing.assert_array_equal(slots[:, zipf.SLOT_LOW], sampler.lows[own])
    np.testing.assert_array_equal(slots[:, zipf.SLOT_WIDTH], sampler.widths[own])
    alias_lows = slots[:, zipf.SLOT_ALIAS].astype(np.int64)
    bins = np.searchsorted(sampler.lows, alias_lows)
    np.testing.assert_array_equal(sampler.lows[bins], alias_lows)  # an alias is a bin's start
    np.testing.assert_array_equal(slots[:, zipf.SLOT_ALIAS + 1], sampler.widths[bins])


def test_same_seed_same_ranks_other_seed_other_ranks():
    sampler = Zipf(100_000, 0.7)
    a = sampler.draw(np.random.default_rng(1), 10_000)
    b = sampler.draw(np.random.default_rng(1), 10_000)
    c = sampler.draw(np.random.default_rng(2), 10_000)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.9


def test_a_draw_takes_exactly_one_value_from_the_generator():
    rng, twin = np.random.default_rng(9), np.random.default_rng(9)
    Zipf(1_000, 1.0).draw(rng, 12_345)
    twin.integers(0, 2**64, dtype=np.uint64)
    assert rng.random() == twin.random()


def test_empty_draw_and_refusals():
    assert Zipf(10, 1.0).draw(np.random.default_rng(0), 0).shape == (0,)
    with pytest.raises(ValueError, match="rank_count"):
        Zipf(0, 1.0)
    with pytest.raises(ValueError, match="exponent"):
        Zipf(10, -0.1)
    with pytest.raises(ValueError, match="exponent"):
        Zipf(10, 10.5)
