"""workloads.normals (ziggurat standard normals) and workloads.base.bernoulli_rows: their laws,
checked with tests that a wrong sampler fails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workloads import normals
from workloads.base import bernoulli_rows

DRAWS = 2_000_000
TAIL_DRAWS = 20_000_000
Z_LIMIT = 4.0  # a correct sampler exceeds this z-score with probability ~1e-4 (chi-square)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.frompyfunc(math.erf, 1, 1)(x / math.sqrt(2.0)).astype(np.float64))


def histogram_z(values: np.ndarray) -> float:
    """Pearson's chi-square over 168 equal bins on [-4.2, 4.2] and the two outer tails pooled
    (each expects ~27 of 2M values), as a z-score (chi-square's mean and sd for its degrees of
    freedom)."""
    edges = np.concatenate(([-np.inf], np.linspace(-4.2, 4.2, 169), [np.inf]))
    observed = np.histogram(values, edges)[0].astype(np.float64)
    expected = np.diff(normal_cdf(np.clip(edges, -40.0, 40.0))) * len(values)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    dof = len(expected) - 1
    return (chi2 - dof) / math.sqrt(2.0 * dof)


@pytest.fixture(scope="module")
def draws():
    return normals.NormalStream(np.random.default_rng(11)).take(DRAWS)


def test_histogram_matches_the_normal_law(draws):
    assert abs(histogram_z(draws)) < Z_LIMIT


def test_moments(draws):
    n = len(draws)
    assert abs(draws.mean()) < Z_LIMIT / math.sqrt(n)
    assert abs(draws.var() - 1.0) < Z_LIMIT * math.sqrt(2.0 / n)
    kurtosis = float(((draws - draws.mean()) ** 4).mean() / draws.var() ** 2)
    assert abs(kurtosis - 3.0) < Z_LIMIT * math.sqrt(24.0 / n)


def test_the_tail_beyond_r_has_its_mass_and_shape():
    """Values beyond R come only from the base layer's tail draws: 20M values, counted beyond
    cut-offs from R out to 5 (each expecting 10+), so a tail that is capped, unrejected or
    mis-scaled shows."""
    values = np.abs(normals.NormalStream(np.random.default_rng(12)).take(TAIL_DRAWS))
    for limit in (normals.R, 3.8, 4.2, 4.6, 5.0):
        expected = 2.0 * (1.0 - float(normal_cdf(np.array([limit]))[0])) * len(values)
        observed = int(np.sum(values > limit))
        assert expected > 10
        assert abs(observed - expected) < Z_LIMIT * math.sqrt(expected), (limit, observed, expected)


def test_a_broken_ziggurat_fails_the_same_check():
    """Accepting every point of a layer (no wedge or tail test) is visibly not normal."""
    out = np.empty(DRAWS)
    normals._fill(normals._X, np.ones_like(normals._RATIO), np.uint64(5), 0, out)
    assert histogram_z(out) > 3 * Z_LIMIT


def test_same_seed_same_values_however_the_calls_split():
    a = normals.NormalStream(np.random.default_rng(3)).take(1_000)
    stream = normals.NormalStream(np.random.default_rng(3))
    parts = np.concatenate([stream.take(n) for n in (10, 0, 333, 657)])
    assert np.array_equal(a, parts)  # value i depends only on the key and i
    assert not np.array_equal(a, normals.NormalStream(np.random.default_rng(4)).take(1_000))


def test_lognormal_amounts_do_not_depend_on_the_chunk_size(monkeypatch):
    from workloads import base

    whole = base.lognormal_minor(np.random.default_rng(8), 1_000, 3_000, 0.9, 10**8)
    monkeypatch.setattr(base, "DRAW_CHUNK_ROWS", 97)
    assert np.array_equal(base.lognormal_minor(np.random.default_rng(8), 1_000, 3_000, 0.9, 10**8),
                          whole)


def test_tables():
    x, ratio = normals.ziggurat_tables()
    assert x[1] == normals.R and x[-1] == 0.0
    assert np.all(np.diff(x[1:]) < 0)
    assert np.all((ratio >= 0) & (ratio < 1))
    # every layer has area V: x[i] * (f(x[i + 1]) - f(x[i])) for 1 <= i < 127, x[0] * f(R)
    # for the base; these hold by construction, so R and V are tied to the density by the two
    # that do not: the top layer, x[127] * (1 - f(x[127])), and the base layer as a rectangle
    # of width R plus the tail beyond it
    f = np.exp(-0.5 * x * x)
    areas = np.concatenate(([x[0] * f[1]], x[1:-1] * (f[2:] - f[1:-1])))
    assert np.allclose(areas[:-1], normals.V, rtol=1e-9)
    assert x[127] * (1.0 - f[127]) == pytest.approx(normals.V, rel=1e-8)
    tail = math.sqrt(math.pi / 2.0) * math.erfc(normals.R / math.sqrt(2.0))
    assert normals.R * math.exp(-0.5 * normals.R ** 2) + tail == pytest.approx(normals.V, rel=1e-8)


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
