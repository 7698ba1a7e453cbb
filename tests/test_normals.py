"""workloads.normals (ziggurat standard normals) and workloads.base.bernoulli_rows: their laws,
checked with tests that a wrong sampler fails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workloads import normals
from workloads.base import bernoulli_rows

DRAWS = 2_000_000
Z_LIMIT = 4.0  # a correct sampler exceeds this z-score with probability ~3e-5


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.frompyfunc(math.erf, 1, 1)(x / math.sqrt(2.0)).astype(np.float64))


def histogram_z(values: np.ndarray) -> float:
    """Pearson's chi-square over 200 equal bins on [-5, 5] plus both outer tails, as a z-score
    (chi-square's mean and sd for its degrees of freedom)."""
    edges = np.concatenate(([-np.inf], np.linspace(-5.0, 5.0, 201), [np.inf]))
    observed = np.histogram(values, edges)[0].astype(np.float64)
    expected = np.diff(normal_cdf(np.clip(edges, -40.0, 40.0))) * len(values)
    keep = expected > 5.0
    chi2 = float((((observed - expected) ** 2)[keep] / expected[keep]).sum())
    dof = int(keep.sum()) - 1
    return (chi2 - dof) / math.sqrt(2.0 * dof)


@pytest.fixture(scope="module")
def draws():
    return normals.standard_normals(np.random.default_rng(11), DRAWS)


def test_histogram_matches_the_normal_law(draws):
    assert abs(histogram_z(draws)) < Z_LIMIT


def test_moments(draws):
    n = len(draws)
    assert abs(draws.mean()) < Z_LIMIT / math.sqrt(n)
    assert abs(draws.var() - 1.0) < Z_LIMIT * math.sqrt(2.0 / n)
    kurtosis = float(((draws - draws.mean()) ** 4).mean() / draws.var() ** 2)
    assert abs(kurtosis - 3.0) < Z_LIMIT * math.sqrt(24.0 / n)


def test_the_tail_beyond_r_has_its_mass(draws):
    """Values beyond R come only from the base layer's tail draws."""
    for limit in (normals.R, 4.5):
        p = 2.0 * (1.0 - float(normal_cdf(np.array([limit]))[0]))
        expected = p * len(draws)
        observed = int(np.sum(np.abs(draws) > limit))
        assert abs(observed - expected) < Z_LIMIT * math.sqrt(expected) + 1, (limit, observed)


def test_a_broken_ziggurat_fails_the_same_check():
    """Accepting every point of a layer (no wedge or tail test) is visibly not normal."""
    out = np.empty(DRAWS)
    normals._fill(normals._X, np.ones_like(normals._RATIO), np.uint64(5), out)
    assert histogram_z(out) > 3 * Z_LIMIT


def test_same_seed_same_values_and_prefixes_agree():
    a = normals.standard_normals(np.random.default_rng(3), 1_000)
    b = normals.standard_normals(np.random.default_rng(3), 10)
    assert np.array_equal(a[:10], b)  # value i depends only on the key and i
    assert not np.array_equal(a, normals.standard_normals(np.random.default_rng(4), 1_000))


def test_tables():
    x, ratio = normals.ziggurat_tables()
    assert x[1] == normals.R and x[-1] == 0.0
    assert np.all(np.diff(x[1:]) < 0)
    assert np.all((ratio >= 0) & (ratio < 1))
    # every layer has area V: x[i] * (f(x[i + 1]) - f(x[i])) for i >= 1, x[0] * f(R) for 0
    f = np.exp(-0.5 * x * x)
    areas = np.concatenate(([x[0] * f[1]], x[1:-1] * (f[2:] - f[1:-1])))
    assert np.allclose(areas[:-1], normals.V, rtol=1e-9)


# --- bernoulli_rows -------------------------------------------------------------------------
def test_bernoulli_rows_edges():
    rng = np.random.default_rng(1)
    assert len(bernoulli_rows(rng, 0, 0.5)) == 0
    assert len(bernoulli_rows(rng, 100, 0.0)) == 0
    assert np.array_equal(bernoulli_rows(rng, 100, 1.0), np.arange(100))
    rows = bernoulli_rows(rng, 10_000, 0.3)
    assert rows.dtype == np.int64
    assert np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < 10_000


def test_bernoulli_rows_picks_each_row_independently_with_the_share():
    """Per-row frequencies match the share (chi-square), the count is Binomial, and two rows
    are picked together with probability share squared (independence, not a fixed count)."""
    rng = np.random.default_rng(7)
    rows, share, calls = 40, 0.15, 20_000
    hits = np.zeros(rows)
    counts = np.empty(calls)
    both = 0
    for c in range(calls):
        picked = bernoulli_rows(rng, rows, share)
        hits[picked] += 1
        counts[c] = len(picked)
        both += (3 in picked) and (17 in picked)
    expected = calls * share
    chi2 = float(((hits - expected) ** 2 / (expected * (1 - share))).sum())
    assert abs((chi2 - rows) / math.sqrt(2 * rows)) < Z_LIMIT
    assert abs(counts.mean() - rows * share) < Z_LIMIT * math.sqrt(rows * share * (1 - share) / calls)
    assert abs(counts.var() - rows * share * (1 - share)) < 0.1 * rows * share * (1 - share)
    p2 = share * share
    assert abs(both - calls * p2) < Z_LIMIT * math.sqrt(calls * p2 * (1 - p2))
