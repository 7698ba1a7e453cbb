"""Latency histograms: HDR-style log-linear buckets in whole microseconds, recorded in bulk.

A value v >= 0 falls in a bucket whose width is at most 1/128 of its lower bound (values
below 256 us have a bucket each), so every percentile read back is within 0.8% of the true
value, and a histogram of every payment of a billion-row run is a few thousand int64 counts.
Recording is one vectorised pass (`np.frexp` for the exponent, `np.bincount` for the counts),
never a Python loop over payments, and histograms add: the run's histogram is the sum of its
epochs'. The layout is HdrHistogram's with 2 significant decimal digits; percentiles report
the highest value equivalent to the bucket (HdrHistogram's convention), the maximum is exact.

`KindHistograms` keeps one histogram per business code and one over all payments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SUB_BUCKET_BITS = 8
SUB_BUCKETS = 1 << SUB_BUCKET_BITS  # values below this have a bucket each
HALF_SUB_BUCKETS = SUB_BUCKETS // 2
VALUE_BITS_MAX = 44  # 2**44 us is 203 days: any latency a run can have
BUCKET_COUNT = (VALUE_BITS_MAX - SUB_BUCKET_BITS + 2) * HALF_SUB_BUCKETS
PERCENTILES_REPORTED = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def bucket_index(values_us: np.ndarray) -> np.ndarray:
    """The bucket of each value (int64 microseconds, >= 0, < 2**VALUE_BITS_MAX)."""
    values = np.asarray(values_us, dtype=np.int64)
    assert values.size == 0 or int(values.min()) >= 0, "latencies are never negative"
    assert values.size == 0 or int(values.max()) < (1 << VALUE_BITS_MAX), "latency out of range"
    bits = np.frexp(values.astype(np.float64))[1].astype(np.int64)  # bit length, exact < 2**53
    shift = np.maximum(bits - SUB_BUCKET_BITS, 0)
    return np.where(shift == 0, values,
                    (shift + 1) * HALF_SUB_BUCKETS + (values >> shift) - HALF_SUB_BUCKETS)


def bucket_bounds() -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) value of every bucket, int64 microseconds, both inclusive."""
    index = np.arange(BUCKET_COUNT, dtype=np.int64)
    shift = np.maximum(index // HALF_SUB_BUCKETS - 1, 0)
    low = np.where(index < SUB_BUCKETS, index, (index - shift * HALF_SUB_BUCKETS) << shift)
    return low, low + (np.int64(1) << shift) - 1


@dataclass
class Histogram:
    counts: np.ndarray = field(default_factory=lambda: np.zeros(BUCKET_COUNT, np.int64))
    max_us: int = 0

    def record(self, values_us: np.ndarray) -> None:
        values = np.asarray(values_us, dtype=np.int64)
        if values.size == 0:
            return
        self.counts += np.bincount(bucket_index(values), minlength=BUCKET_COUNT)
        self.max_us = max(self.max_us, int(values.max()))

    def add(self, other: "Histogram") -> None:
        self.counts += other.counts
        self.max_us = max(self.max_us, other.max_us)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def percentile_us(self, percent: float) -> int | None:
        """The highest value equivalent to the bucket holding the given percentile."""
        total = self.total
        if total == 0:
            return None
        rank = max(1, int(np.ceil(percent / 100.0 * total)))
        bucket = int(np.searchsorted(np.cumsum(self.counts), rank))
        return min(int(bucket_bounds()[1][bucket]), self.max_us)

    def summary_ms(self) -> dict:
        """p50/p90/p99/p99.9/max in milliseconds and the count, for summary.json."""
        out: dict = {"count": self.total}
        for name, percent in PERCENTILES_REPORTED:
            value = self.percentile_us(percent)
            out[name] = None if value is None else value / 1_000.0
        out["max"] = self.max_us / 1_000.0 if self.total else None
        return out


@dataclass
class KindHistograms:
    """One histogram per business code and one over all payments."""

    by_code: dict = field(default_factory=dict)
    overall: Histogram = field(default_factory=Histogram)

    def record(self, codes: np.ndarray, values_us: np.ndarray) -> None:
        assert len(codes) == len(values_us)
        self.overall.record(values_us)
        order = np.argsort(codes, kind="stable")
        sorted_codes = np.asarray(codes)[order]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        for start, stop in zip(starts, np.r_[starts[1:], len(order)]):
            if start == stop:
                continue
            code = int(sorted_codes[start])
            self.by_code.setdefault(code, Histogram()).record(np.asarray(values_us)[order[start:stop]])

    def buckets(self) -> dict[str, np.ndarray]:
        """Tidy columns for latency.parquet: kind (code or -1 for all), bucket bounds, count;
        only buckets with a count."""
        low, high = bucket_bounds()
        parts = [(-1, self.overall)] + sorted(self.by_code.items())
        kinds, lows, highs, counts = [], [], [], []
        for code, histogram in parts:
            used = np.flatnonzero(histogram.counts)
            kinds.append(np.full(len(used), code, np.int32))
            lows.append(low[used])
            highs.append(high[used])
            counts.append(histogram.counts[used])
        return {"code": np.concatenate(kinds), "low_us": np.concatenate(lows),
                "high_us": np.concatenate(highs), "count": np.concatenate(counts)}
