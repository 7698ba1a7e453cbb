"""Latency histograms: buckets tile the range, percentiles within 1/128 of the exact value."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.latency import (
    BUCKET_COUNT,
    SUB_BUCKETS,
    VALUE_BITS_MAX,
    Histogram,
    KindHistograms,
    bucket_bounds,
    bucket_index,
)


def test_buckets_tile_the_range_without_gaps_or_overlaps():
    low, high = bucket_bounds()
    assert low[0] == 0
    assert (low[1:] == high[:-1] + 1).all()
    assert high[-1] == (1 << VALUE_BITS_MAX) - 1
    width = high - low + 1
    assert (width[:SUB_BUCKETS] == 1).all()
    assert (width[SUB_BUCKETS:] <= low[SUB_BUCKETS:] / 128).all()
    assert len(low) == BUCKET_COUNT


@given(st.lists(st.integers(0, (1 << VALUE_BITS_MAX) - 1), min_size=1, max_size=300))
def test_every_value_lands_in_the_bucket_that_holds_it(values):
    values = np.array(values, np.int64)
    low, high = bucket_bounds()
    index = bucket_index(values)
    assert ((low[index] <= values) & (values <= high[index])).all()


@settings(max_examples=60)
@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=500),
       st.sampled_from([50.0, 90.0, 99.0, 99.9, 100.0]))
def test_percentiles_are_within_one_bucket_of_the_exact_value(values, percent):
    values = np.array(values, np.int64)
    histogram = Histogram()
    histogram.record(values)
    exact = int(np.percentile(values, percent, method="inverted_cdf"))
    reported = histogram.percentile_us(percent)
    assert exact <= reported <= max(exact + exact // 128, exact)
    assert histogram.max_us == int(values.max())
    assert histogram.total == len(values)


def test_histograms_add_up_to_the_histogram_of_everything():
    rng = np.random.default_rng(3)
    parts = [rng.lognormal(9, 1.5, 10_000).astype(np.int64) for _ in range(4)]
    whole, summed = Histogram(), Histogram()
    whole.record(np.concatenate(parts))
    for part in parts:
        one = Histogram()
        one.record(part)
        summed.add(one)
    assert (whole.counts == summed.counts).all()
    assert whole.summary_ms() == summed.summary_ms()


def test_kind_histograms_split_by_code_and_keep_the_total():
    codes = np.array([1, 2, 1, 15, 2, 1], np.uint16)
    values = np.array([10, 20, 30, 40, 50, 60_000], np.int64)
    kinds = KindHistograms()
    kinds.record(codes, values)
    assert {c: h.total for c, h in kinds.by_code.items()} == {1: 3, 2: 2, 15: 1}
    assert kinds.overall.max_us == 60_000
    assert kinds.by_code[1].max_us == 60_000 and kinds.by_code[2].max_us == 50
    columns = kinds.buckets()
    assert int(columns["count"][columns["code"] == -1].sum()) == 6
    assert int(columns["count"].sum()) == 12


def test_an_empty_histogram_reports_nothing_and_negative_values_are_refused():
    assert Histogram().summary_ms() == {"count": 0, "p50": None, "p90": None, "p99": None,
                                        "p99.9": None, "max": None}
    with pytest.raises(AssertionError, match="never negative"):
        Histogram().record(np.array([-1]))
