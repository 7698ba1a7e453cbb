"""Capacity planning: the fit recovers known costs, the model behaves like a cluster, and the
`xpay plan` commands answer (no Ray: run folders are synthesised with known costs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim import files
from tests.adversarial import adversarial_workload
from xpay.cli import main
from xpay.plan.calibration import Calibration, CalibrationError, _shard_features, fit
from xpay.plan.model import Cluster, simulate
from xpay.plan.shape import shape_of, uniform_shape

DRIVER = (0.002, 1.5e-7, 2e-7, 4e-4)  # per epoch, row, two-phase row, shard
SHARD_CPU = (0.0005, 4e-8, 3e-8, 2e-9)  # per epoch, row sent, two-phase row sent, row x log2(rows)
SHARD_BLOCKED = (0.001, 1e-8, 0.0, 1e-9)  # the same features


def known() -> Calibration:
    return Calibration(cores=2, driver_cpu_s=DRIVER,
                       driver_shares={"combine": 0.4, "plan": 0.3, "finish": 0.3},
                       shard_cpu_s=SHARD_CPU, shard_blocked_s=SHARD_BLOCKED,
                       shard_shares={"begin": 0.5, "evaluate": 0.2, "lookup": 0.3},
                       call_s=(0.0004, 0.0002, 0.0))


def fake_run(folder: Path, shards: int, rows_per_epoch: list[int], rng: np.random.Generator) -> Path:
    """A run folder whose epochs.parquet holds exactly the known costs, with epoch walls from
    the model itself (so the call cost fitted must come back as the known one)."""
    folder.mkdir(parents=True)
    rows = np.array(rows_per_epoch, np.int64)
    touches = np.stack([rng.multinomial(3 * n, np.full(shards, 1.0 / shards)) for n in rows])
    from xpay.plan.shape import Shape

    two_phase = rng.binomial(rows, 0.3)
    shape = Shape(rows, touches, two_phase)
    cal = known()
    modelled = simulate(cal, shape, Cluster(shards), jitter=False)
    epochs = {"epoch": np.arange(len(rows)), "rows": rows, "sim_start_us": np.arange(len(rows)) * 10**6,
              "sim_end_us": np.arange(len(rows)) * 10**6 + 999_999, "final_s": modelled.epoch_final_s,
              "two_phase_rows": two_phase,
              "driver_cpu_s": DRIVER[0] + DRIVER[1] * rows + DRIVER[2] * two_phase + DRIVER[3] * shards}
    for name, share in (("audit", 0.1), ("pre_status", 0.1), ("route_evaluate", 0.2), ("plan_next", 0.3),
                        ("look_ahead", 0.05), ("resolve", 0.1), ("route_commit", 0.1), ("record", 0.05)):
        epochs[f"driver_{name}_s"] = share * epochs["driver_cpu_s"]
    for s in range(shards):
        t = touches[:, s]
        features = _shard_features(t, two_phase / rows, rows)
        cpu = features @ np.array(SHARD_CPU)
        epochs[f"shard_rows_{s}"] = t
        epochs[f"shard_cpu_s_{s}"] = cpu
        epochs[f"shard_busy_s_{s}"] = cpu + features @ np.array(SHARD_BLOCKED)
        for name, share in (("commit", 0.2), ("open", 0.3), ("evaluate", 0.2), ("lookup", 0.3)):
            epochs[f"shard_{name}_s_{s}"] = share * cpu
    pd.DataFrame(epochs).to_parquet(folder / "epochs.parquet")
    (folder / "summary.json").write_text(json.dumps({
        "completed": True, "shards": shards, "accounts": 1000, "rows": int(rows.sum()),
        "hardware": {"cores": 2}, "versions": {}}))
    return folder


@pytest.fixture(scope="module")
def fake_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(5)
    for shards in (1, 2, 4):
        for size in (5_000, 60_000):
            sizes = list(rng.integers(size // 2, size * 2, 12))
            fake_run(root / "runs" / f"k{shards}-n{size}", shards, sizes, rng)
    return root


def test_the_fit_recovers_the_costs_it_was_made_from(fake_sweep):
    cal = fit([fake_sweep])
    assert cal.driver_cpu_s == pytest.approx(DRIVER, rel=1e-6)
    assert cal.shard_cpu_s == pytest.approx(SHARD_CPU, rel=1e-6)
    assert cal.shard_blocked_s == pytest.approx(SHARD_BLOCKED, rel=1e-6, abs=1e-12)  # k=1 runs
    assert cal.shard_shares == pytest.approx({"begin": 0.5, "evaluate": 0.2, "lookup": 0.3})
    assert cal.driver_shares["plan"] == pytest.approx(0.3)
    # the epoch walls came from the model with call costs 0.4 ms + 0.2 ms a shard
    assert cal.call_overhead_s(2, 10_000) == pytest.approx(0.0008, abs=5e-5)
    assert cal.call_overhead_s(4, 10_000) == pytest.approx(0.0012, abs=5e-5)
    assert cal.fit_error["max_abs"] < 0.02


def test_a_calibration_file_round_trips_and_bad_files_are_refused(tmp_path):
    cal = known()
    cal.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == cal
    (tmp_path / "bad.json").write_text('{"cores": 2}')
    with pytest.raises(CalibrationError, match="no driver_cpu_s"):
        Calibration.load(tmp_path / "bad.json")


def test_folders_without_the_new_columns_are_refused_by_name(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"completed": True, "shards": 2}))
    pd.DataFrame({"epoch": [0, 1, 2, 3], "rows": [1, 2, 3, 4]}).to_parquet(run / "epochs.parquet")
    with pytest.raises(CalibrationError, match="old: epochs.parquet has no driver_cpu_s"):
        fit([run])
    assert main(["plan", "calibrate", str(run), "--out", str(tmp_path / "c.json")]) == 2


def test_the_model_behaves_like_a_cluster():
    cal = known()
    even = uniform_shape(100_000, 30, 4)
    two_cores = simulate(cal, even, Cluster(4, node_cores=2), jitter=False)
    eight_cores = simulate(cal, even, Cluster(4, node_cores=8), jitter=False)
    assert eight_cores.rows_per_s > two_cores.rows_per_s * 1.05  # 5 jobs on 2 cores contend
    hot = simulate(cal, uniform_shape(100_000, 30, 4, imbalance=2.5), Cluster(4, node_cores=8), jitter=False)
    assert hot.rows_per_s < eight_cores.rows_per_s  # the hot shard is every barrier's last
    assert max(hot.shard_utilisation) == pytest.approx(hot.shard_utilisation[0])
    assert all(0 < u <= 1.0 + 1e-9 for u in two_cores.node_utilisation)
    # open loop below capacity: throughput is the offered rate, latency at least the epoch span
    rate = 0.5 * eight_cores.rows_per_s
    paced = simulate(cal, uniform_shape(20_000, 60, 4), Cluster(4, node_cores=8), rate=rate,
                     rng=np.random.default_rng(1))
    span_ms = 20_000 / rate * 1e3
    assert paced.latency_ms_p50 > span_ms / 2
    assert paced.latency_ms_p99 >= paced.latency_ms_p50
    # (the clock starts at the first release and ends after the last epoch's processing)
    assert paced.rows_per_s == pytest.approx(rate, rel=0.2)
    # over capacity the queue grows: p99 far above the same shape's below-capacity p99
    over = simulate(cal, uniform_shape(20_000, 60, 4), Cluster(4, node_cores=8),
                    rate=3 * eight_cores.rows_per_s, rng=np.random.default_rng(1))
    assert over.latency_ms_p99 > 3 * paced.latency_ms_p99


def test_shape_counts_what_each_shard_is_sent():
    accounts, transfers = adversarial_workload(3, 300, 5)
    shape = shape_of(transfers, 3)
    assert shape.rows.sum() == len(transfers)
    ids_checked = int((transfers.id != 0).sum())  # id 0 is refused before routing
    assert shape.touches.sum() == ids_checked + 2 * len(transfers)  # and two account sides a row
    assert shape.touches.shape == (len(transfers.epoch_bounds()), 3)


def test_xpay_plan_predict_and_plan_answer_in_json(tmp_path, capsys):
    accounts, transfers = adversarial_workload(9, 2_000, 20)
    files.write_accounts(tmp_path / "accounts.parquet", accounts)
    files.write_workload(tmp_path / "workload.parquet", transfers)
    assert main(["plan", "predict", "--workload", str(tmp_path / "workload.parquet"), "--shards", "2",
                 "--rate", "50000", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["rows"] == len(transfers) and answer["accounts"] == len(accounts)
    assert answer["rows_per_s"] > 0 and answer["latency_ms_p99"] >= answer["latency_ms_p50"] > 0
    assert len(answer["shard_utilisation"]) == 2
    assert main(["plan", "--scenario", "quick", "--peak", "15x", "--p99-ms", "200",
                 "--imbalance", "1.1", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert planned["answer"]["shards"] >= 1 and planned["answer"]["p99_ms"] <= 200
    assert planned["peak_rows_per_s"] == pytest.approx(15 * planned["mean_rows_per_s"])
    assert main(["plan", "--scenario", "quick", "--peak", "lots"]) == 2
    assert main(["plan", "--scenario", "quick", "--peak", "1e9", "--imbalance", "1.1", "--json"]) == 0
    impossible = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert impossible["answer"] is None and "capacity peaks at" in impossible["why"]
    assert len(impossible["tried"]) < 30  # it stops once capacity falls with more shards


def test_the_usl_fit_recovers_known_coefficients():
    from xpay.plan.calibration import fit_usl, usl

    shards = np.array([1, 2, 3, 4, 6, 8])
    fitted = fit_usl(shards, usl(shards, 1e6, 0.05, 0.02))
    assert fitted["lambda_rows_per_s"] == pytest.approx(1e6, rel=0.03)
    assert fitted["sigma"] == pytest.approx(0.05, rel=0.15)
    assert fitted["kappa"] == pytest.approx(0.02, rel=0.15)
    assert fitted["max_relative_error"] < 0.02
    assert fitted["peak_shards"] == pytest.approx(np.sqrt(0.95 / 0.02), rel=0.1)
