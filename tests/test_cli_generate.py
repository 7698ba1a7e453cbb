"""`xpay generate` and `xpay describe`, and scenario resolution shared with `xpay run`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim import files
from xpay.cli import main
from workloads.base import materialize
from workloads.quickstart import QuickstartConfig, QuickstartWorkload
from workloads.registry import QUICK, build_workload, scenario_names

TINY = ["--users", "300", "--epochs", "2", "--rows-per-epoch", "200"]


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


def test_generate_writes_the_quickstart_rows_in_the_spec_schema(tmp_path):
    assert generate(tmp_path) == 0
    accounts = files.read_accounts(tmp_path / "accounts.parquet")  # the strict spec readers
    transfers = files.read_workload(tmp_path / "workload.parquet")
    config = QuickstartConfig(user_count=300, epoch_count=2, rows_per_epoch=200)
    expected_accounts, expected = materialize(QuickstartWorkload(config, np.random.default_rng(4)))
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


def test_size_overrides_apply_to_quick_only(tmp_path, capsys):
    assert generate(tmp_path, scenario="other", sizes=["--users", "10"]) == 2
    assert "quick only" in one_line_refusal(capsys)
    assert generate(tmp_path, sizes=["--users", "1"]) == 2  # the config's own rule, as a refusal
    assert "user_count" in one_line_refusal(capsys)


def test_build_workload_quick_fallback_is_seeded():
    overrides = {"user_count": 200, "epoch_count": 1, "rows_per_epoch": 100, }
    a = materialize(build_workload(QUICK, 9, overrides))[1]
    b = materialize(build_workload(QUICK, 9, overrides))[1]
    assert np.array_equal(a.id, b.id)
    assert np.array_equal(a.amount, b.amount)
    assert QUICK in scenario_names()


def test_run_still_runs_quick_with_size_overrides(tmp_path):
    status = main(["run", "--seed", "2", *TINY, "--out", str(tmp_path), "--in-process",
                   "--no-strict-serial", "--shards", "2", "--quiet", "--no-progress"])
    assert status == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["configuration"]["scenario"] == QUICK
    assert summary["configuration"]["workload"]["config"]["user_count"] == 300


def test_scenario_files_resolve_through_the_scenario_model(monkeypatch, tmp_path, capsys):
    """With workloads.scenario and workloads.model present, names come from their files."""
    import sys
    import types

    from workloads.registry import workload_configuration

    quick = QuickstartConfig(user_count=300, epoch_count=1, rows_per_epoch=200)
    scenario = types.ModuleType("workloads.scenario")
    scenario.scenario_names = lambda: ["busy_day", "quick"]
    scenario.load_scenario = lambda name: {"busy_day": quick, "quick": quick}[name]
    model = types.ModuleType("workloads.model")
    model.ScenarioWorkload = QuickstartWorkload  # (scenario, rng), like the real model
    monkeypatch.setitem(sys.modules, "workloads.scenario", scenario)
    monkeypatch.setitem(sys.modules, "workloads.model", model)
    assert scenario_names() == ["busy_day", "quick"]
    source = build_workload("busy_day", 7)
    assert source.config == quick
    assert workload_configuration(source)["config"]["user_count"] == 300
    assert build_workload(QUICK, 7).config == quick  # quick.toml wins over the fallback
    assert build_workload(QUICK, 7, {"user_count": 400}).config.user_count == 400
    assert generate(tmp_path, scenario="busy_day", sizes=[]) == 0
    capsys.readouterr()
    assert main(["generate", "--scenario", "nope", "--out", str(tmp_path)]) == 2
    assert "busy_day, quick" in one_line_refusal(capsys)
