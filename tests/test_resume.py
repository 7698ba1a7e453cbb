"""A crashed driver: `xpay run --resume DIR` continues from the last durable epoch and writes
the same files as an uninterrupted run (the driver really dies: a subprocess, os._exit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from xpay.cli import main
from xpay.runner import DRIVER_CRASH_EXIT_STATUS

SIZE = ["--users", "1500", "--epochs", "10"]


def xpay(*args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "xpay.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_resume_after_driver_crash_gives_the_same_files(tmp_path):
    crashed = tmp_path / "crashed"
    done = xpay("run", *SIZE, "--shards", "3", "--out", str(crashed), "--data-dir", str(crashed / "data"),
                "--snapshot-every", "2", "--crash-driver-after", "5", "--no-strict-serial", "--quiet",
                "--kill-shards", "2", "--fault-seed", "4")
    assert done.returncode == DRIVER_CRASH_EXIT_STATUS, done.stderr[-2000:]
    assert not (crashed / "results.parquet").exists()
    resumed = xpay("run", "--resume", str(crashed), "--no-strict-serial", "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    plain = tmp_path / "plain"
    assert main(["run", *SIZE, "--shards", "3", "--in-process", "--out", str(plain), "--no-strict-serial",
                 "--quiet", "--no-progress"]) == 0
    for name in ("results.parquet", "balances.parquet", "audit.parquet"):
        assert (crashed / name).read_bytes() == (plain / name).read_bytes(), name
    summary = json.loads((crashed / "summary.json").read_text())
    assert summary["configuration"]["resumed"]["after_epoch_index"] == 5
    assert summary["configuration"]["resumed"]["shard_call"] == 12
    assert summary["invariant_boundaries_checked"] == summary["epochs"]


def test_resume_refuses_a_folder_without_a_data_dir(tmp_path, capsys):
    assert main(["run", *SIZE, "--in-process", "--out", str(tmp_path), "--no-strict-serial", "--quiet",
                 "--no-progress"]) == 0
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "no data dir" in capsys.readouterr().err
    (tmp_path / "run.toml").write_text('scenario = "quick"\nseed = 1\nbogus = 3\n')
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--crash-driver-after", "1"]])
def test_driver_crash_needs_a_data_dir(tmp_path, capsys, flag):
    assert main(["run", *SIZE, "--out", str(tmp_path), *flag]) == 2
    assert "--data-dir" in capsys.readouterr().err
