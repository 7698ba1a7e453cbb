"""When payments arrive: a non-homogeneous Poisson process over the modelled days.

The rate (arrivals per model second) is `mean_per_s * scale` times a daily shape: night,
day and peak levels (two peaks by default, 10:00-13:00 and 17:00-21:30) normalised so that
an ordinary day's mean is 1, times `saturday_uplift` on Saturdays and `holiday_multiplier` on
holidays. Bursts add their own rate on top: a linear ramp to `peak_multiplier * mean` over
`ramp_s`, then exponential decay with time constant `decay_s`; a burst's arrivals are all of
its kind (tips to one creator, or card authorisations at one merchant).

Per tick the expected count is the integral of the rate over the tick (midpoint rule on
`INTEGRAL_STEPS_PER_TICK_MIN`+ sub-intervals of at most `INTEGRAL_STEP_MAX_S`); the count is
drawn with `rng.poisson`, and times are uniform within the tick, then sorted.
"""

from __future__ import annotations

import math

import numpy as np

from workloads.scenario import SECONDS_PER_DAY, Burst, Scenario

INTEGRAL_STEPS_PER_TICK_MIN = 8
INTEGRAL_STEP_MAX_S = 15.0
SATURDAY = 5
SECONDS_PER_HOUR = 3_600.0


class RateCurve:
    """The arrival rate of a scenario as a function of model time (seconds from day 0)."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        rate = scenario.rate
        self.mean_per_s = rate.mean_per_s * rate.scale
        self.shape_norm = 1.0 / self._raw_day_mean()

    def _raw_shape(self, hour: np.ndarray) -> np.ndarray:
        rate = self.scenario.rate
        level = np.where(hour < rate.night_end_hour, rate.night_level, rate.day_level)
        for start, stop in rate.peaks:
            level = np.where((hour >= start) & (hour < stop), rate.peak_level, level)
        return level

    def _raw_day_mean(self) -> float:
        hours = (np.arange(86_400) + 0.5) / SECONDS_PER_HOUR
        mean = float(self._raw_shape(hours).mean())
        assert mean > 0.0, "rate levels are all zero"
        return mean

    def day_multiplier(self, day: np.ndarray) -> np.ndarray:
        time = self.scenario.time
        weekday = (day + time.start_weekday) % 7
        multiplier = np.where(weekday == SATURDAY, self.scenario.rate.saturday_uplift, 1.0)
        holiday = np.isin(day, np.asarray(time.holidays, np.int64))
        return np.where(holiday, multiplier * self.scenario.rate.holiday_multiplier, multiplier)

    def base_rate(self, t_s: np.ndarray) -> np.ndarray:
        """Ordinary arrivals per model second at model times `t_s`."""
        day = np.floor_divide(t_s, SECONDS_PER_DAY).astype(np.int64)
        hour = (t_s - day * SECONDS_PER_DAY) / SECONDS_PER_HOUR
        shape = self._raw_shape(hour) * self.shape_norm
        return self.mean_per_s * shape * self.day_multiplier(day)

    def burst_rate(self, burst: Burst, t_s: np.ndarray) -> np.ndarray:
        """Extra arrivals per model second of one burst."""
        start = burst.day * SECONDS_PER_DAY + burst.start_hour * SECONDS_PER_HOUR
        since = t_s - start
        ramp = np.clip(since / burst.ramp_s, 0.0, 1.0)
        decay = np.exp(-np.maximum(since - burst.ramp_s, 0.0) / burst.decay_s)
        return np.where(since >= 0.0, self.mean_per_s * burst.peak_multiplier * ramp * decay,
                        0.0)

    def expected_counts(self, start_s: float, stop_s: float) -> tuple[float, list[float]]:
        """(ordinary, [per burst]) expected arrivals in [start_s, stop_s)."""
        span = stop_s - start_s
        steps = max(INTEGRAL_STEPS_PER_TICK_MIN, math.ceil(span / INTEGRAL_STEP_MAX_S))
        t_s = start_s + (np.arange(steps) + 0.5) * (span / steps)
        base = float(self.base_rate(t_s).mean()) * span
        bursts = [float(self.burst_rate(b, t_s).mean()) * span for b in self.scenario.bursts]
        return base, bursts

    def tick_expectations(self) -> tuple[np.ndarray, np.ndarray]:
        """Expected ordinary arrivals per tick (float64) and per burst per tick (2-D)."""
        time = self.scenario.time
        tick_count = math.ceil(time.days * SECONDS_PER_DAY / time.tick_s - 1e-9)
        base = np.zeros(tick_count)
        bursts = np.zeros((len(self.scenario.bursts), tick_count))
        for tick in range(tick_count):
            start = tick * time.tick_s
            stop = min(start + time.tick_s, time.days * SECONDS_PER_DAY)
            base[tick], burst_counts = self.expected_counts(start, stop)
            bursts[:, tick] = burst_counts
        return base, bursts


def draw_times_us(rng: np.random.Generator, count: int, start_us: int, stop_us: int) -> np.ndarray:
    """`count` sorted times uniform in [start_us, stop_us) (int64 microseconds)."""
    times = rng.integers(start_us, max(stop_us, start_us + 1), count, np.int64)
    times.sort()
    return times
