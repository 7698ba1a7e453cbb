"""`xpay generate` and `xpay describe`, and scenario resolution and resizing shared with `xpay
run`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim import files
from xpay.cli import main
from workloads.base import materialize
from workloads.registry import QUICK, build_workload
from workloads.scenario import Resize, scenario_names

TINY = ["--users", "300", "--epochs", "2"]


def generate(folder, seed: int = 4, scenario: str = QUICK, sizes=TINY) -> int:
    return main(["generate", "--scenario", scenario, "--seed", str(seed), "--out", str(folder), *sizes])


def one_line_refusal(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("xpay: refused: ")
    return err


def test_generate_same_seed_same_bytes(tmp_path):
    assert generate(tmp_path / "a") == 0
    assert generate(tmp_path / "b") == 0
    for name in ("accounts.parquet", "workload.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert generate(tmp_path / "c", seed=5) == 0
    assert (tmp_path / "a" / "workload.parquet").read_bytes() != (tmp_path / "c" / "workload.parquet").read_bytes()


def test_generate_writes_the_resized_scenario_rows_in_the_spec_schema(tmp_path):
    assert generate(tmp_path) == 0
    accounts = files.read_accounts(tmp_path / "accounts.parquet")  # the strict spec readers
    transfers = files.read_workload(tmp_path / "workload.parquet")
    expected_accounts, expected = materialize(build_workload(QUICK, 4, Resize(users=300, epochs=2)))
    assert np.array_equal(accounts.id, expected_accounts.id)
    for name, column in expected.columns().items():
        assert np.array_equal(transfers.columns()[name], column), name


def test_describe_generated_folder(tmp_path, capsys):
    assert generate(tmp_path) == 0
    capsys.readouterr()
    assert main(["describe", str(tmp_path), "--json"]) == 0
    description = json.loads(capsys.readouterr().out)
    assert description["rows"] == sum(m["rows"] for m in description["mix"].values())
    assert description["accounts"]["count"] > 300
    assert main(["describe", str(tmp_path)]) == 0
    assert "p2p" in capsys.readouterr().out


def test_describe_missing_folder_is_refused(tmp_path, capsys):
    assert main(["describe", str(tmp_path / "nowhere")]) == 2
    assert "file not found" in one_line_refusal(capsys)


def test_describe_bad_file_is_refused(tmp_path, capsys):
    assert generate(tmp_path) == 0
    (tmp_path / "workload.parquet").write_bytes(b"not parquet")
    capsys.readouterr()
    assert main(["describe", str(tmp_path), "--json"]) == 2
    assert "workload.parquet" in one_line_refusal(capsys)


@pytest.mark.parametrize("command", ["generate", "run"])
def test_unknown_scenario_is_refused_naming_the_available_ones(tmp_path, capsys, command):
    status = main([command, "--scenario", "no-such-scenario", "--out", str(tmp_path / "x")])
    assert status == 2
    err = one_line_refusal(capsys)
    assert "no-such-scenario" in err
    assert all(name in err for name in scenario_names())
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("sizes, named", [
    (["--users", "1"], "users(=1)"),
    (["--users", "10", "--scale", "0.5"], "give one"),
    (["--scale", "1e-9"], "scale(=1e-09) leaves 0 users"),
    (["--days", "0"], "days(=0)"),
    (["--epochs", "0"], "epochs(=0)"),
    (["--days", "2", "--epochs", "1"], "epochs(=1) must be in [days(=2)"),
    (["--epochs", "4", "--epoch-seconds", "60"], "give one"),
    (["--epoch-seconds", "90000"], "epoch_seconds(=90000.0)"),
    (["--epoch-seconds", "nan"], "epoch_seconds(=nan)"),
])
def test_nonsense_sizes_are_refused_naming_the_override(tmp_path, capsys, sizes, named):
    assert generate(tmp_path, scenario="mature", sizes=sizes) == 2
    assert named in one_line_refusal(capsys)
    assert not (tmp_path / "workload.parquet").exists()


def test_a_resize_that_breaks_a_scenario_rule_says_so(tmp_path, capsys):
    # black-friday's checkout holds last 6 model hours: a 12-hour epoch would outlast them
    assert generate(tmp_path, scenario="black-friday", sizes=["--epochs", "2"]) == 2
    err = one_line_refusal(capsys)
    assert "authorization_timeout_s must be > 2 * time.tick_s" in err
    assert "after resizing to epochs=2" in err


@pytest.mark.parametrize("name", ["mature", "viral-burst", "crypto-crash", "black-friday"])
def test_every_scenario_resizes(tmp_path, name):
    assert generate(tmp_path, scenario=name, sizes=["--users", "400", "--epochs", "24"]) == 0
    clock = (tmp_path / "workload.toml").read_text()
    assert "funding_epochs = 1" in clock
    transfers = files.read_workload(tmp_path / "workload.parquet")
    assert transfers.epoch.max() == 24  # one funding epoch, then 24 traffic epochs
    accounts = files.read_accounts(tmp_path / "accounts.parquet")
    assert 400 < len(accounts) < 700


def test_build_workload_is_seeded():
    a = materialize(build_workload(QUICK, 9, Resize(users=200, epochs=2)))[1]
    b = materialize(build_workload(QUICK, 9, Resize(users=200, epochs=2)))[1]
    assert np.array_equal(a.id, b.id)
    assert np.array_equal(a.amount, b.amount)
    assert QUICK in scenario_names()


def test_run_runs_quick_resized(tmp_path):
    status = main(["run", "--seed", "2", *TINY, "--out", str(tmp_path), "--in-process",
                   "--no-strict-serial", "--shards", "2", "--quiet", "--no-progress"])
    assert status == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["configuration"]["scenario"] == QUICK
    scenario = summary["configuration"]["workload"]["scenario"]
    assert scenario["population"]["users"] == 300
    assert scenario["time"]["tick_s"] == 43_200.0
    assert scenario["rate"]["scale"] == pytest.approx(300 / 1_000_000)


def test_run_toml_carries_the_size_overrides(tmp_path):
    from xpay.run_folder import RUN_TOML_KEYS, read_run_toml, write_run_toml

    values = {key: None for key in RUN_TOML_KEYS}
    values.update(scenario="mature", seed=3, scale=0.25, days=2, epoch_seconds=1800.0, shards=2,
                  window_epochs=16, fsync="off", snapshot_every=4, data_dir=str(tmp_path / "data"))
    write_run_toml(tmp_path, values)
    saved = read_run_toml(tmp_path)
    assert {k: saved[k] for k in ("scale", "days", "epoch_seconds", "users", "epochs")} == {
        "scale": 0.25, "days": 2, "epoch_seconds": 1800.0, "users": None, "epochs": None}
