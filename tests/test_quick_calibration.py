"""The quick scenario's realised statistics: seeded golden values and calibration targets.

Golden values change only when the generator changes (then recompute them on purpose and say
why in the commit). Calibration targets come from the public figures in the scenario files;
each check states its tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.constants import AMOUNT_MAX, CODE
from tests.scenario_helpers import generate, small, traffic
from workloads.describe import describe

PEAK_HOURS = [10, 11, 12, 17, 18, 19, 20]
NIGHT_HOURS = [2, 3, 4]


@pytest.fixture(scope="module")
def quick_traffic():
    workload, accounts, transfers = generate(small("quick"), 7)
    rows = transfers.take(np.flatnonzero(traffic(workload, transfers)))
    return rows, describe(accounts, rows, workload.scenario.time.compression)


def test_golden_values_of_small_quick_seed_7(quick_traffic):
    _, d = quick_traffic
    # recomputed when Zipf ranks came from workloads.zipf.BinnedZipf (table rejection, one key
    # per call) instead of numpy rejection-inversion; before that: 235_930 rows, p2p 122_128,
    # card_authorize 31_142, tip 8_635, crypto_buy 7_664, settles 800, p50 3_095, p99 38_605,
    # top 20% 0.6126522992270405, retries 1_236, hour 11 21_767
    assert d["rows"] == 236_603
    mix = {k: d["mix"][k]["rows"] for k in ("p2p", "card_authorize", "tip", "crypto_buy", "crypto_withdraw_settle")}
    assert mix == {"p2p": 122_328, "card_authorize": 31_162, "tip": 8_623, "crypto_buy": 7_970,
                   "crypto_withdraw_settle": 834}
    assert d["amount_minor"]["p2p"]["USD"]["p50"] == 3_122
    assert d["amount_minor"]["p2p"]["USD"]["p99"] == 41_070
    assert d["sender_concentration"]["top_20_percent_share_of_rows"] == pytest.approx(0.6109312667582238, abs=1e-12)
    assert d["retries"]["rows"] == 1_251
    assert d["hourly"]["rows_per_hour"][11] == 21_944


def test_p2p_median_is_20_to_50_dollars(quick_traffic):
    _, d = quick_traffic
    assert 2_000 <= d["amount_minor"]["p2p"]["USD"]["p50"] <= 5_000


def test_top_fifth_of_senders_make_50_to_80_percent(quick_traffic):
    _, d = quick_traffic
    assert 0.5 <= d["sender_concentration"]["top_20_percent_share_of_rows"] <= 0.8


def test_daily_peaks_are_2_to_3_times_the_mean(quick_traffic):
    _, d = quick_traffic
    hourly = np.array(d["hourly"]["rows_per_hour"], np.float64)
    peak = hourly[PEAK_HOURS].mean() / hourly.mean()
    assert 2.0 <= peak <= 3.0, peak  # tolerance: the target band itself
    assert hourly[NIGHT_HOURS].mean() / hourly.mean() < 0.5


def test_p2p_tail_is_pareto_with_alpha_2_to_2_5(quick_traffic):
    rows, _ = quick_traffic
    amounts = rows.amount[(rows.code == CODE["p2p"]) & (rows.amount <= AMOUNT_MAX // 2)].astype(np.float64)
    top = np.sort(amounts)[::-1]
    k = len(top) // 500  # Hill estimator over the top 0.2%
    alpha = 1.0 / np.mean(np.log(top[:k] / top[k]))
    assert 1.9 <= alpha <= 2.8, alpha  # target 2-2.5, +-0.3 for the estimator's noise at this k
