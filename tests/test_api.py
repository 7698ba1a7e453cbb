"""The public Python API: xpay.run / replay / sweep / load_run, one Ray session for many calls."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import xpay
from sim.errors import InputRefused

SMALL = {"users": 3_000, "epochs": 4, "seed": 5}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    return xpay.run("quick", shards=2, out=out, in_process=True, **SMALL)


def test_run_returns_the_run_folder_as_pandas(local_run):
    assert isinstance(local_run, xpay.Run)
    summary = local_run.summary
    assert summary["completed"] and summary["shards"] == 2
    results = local_run.results()
    assert isinstance(results.status.dtype, pd.CategoricalDtype)
    assert len(results) == summary["rows"] == len(local_run.workload())
    assert set(local_run.workload().code.unique()) >= {"p2p", "card_authorize", "tip"}
    assert (local_run.folder / "report.html").is_file()
    assert xpay.load_run(local_run.folder).summary == summary


def test_replay_reads_its_inputs_where_they_are(local_run, tmp_path):
    again = xpay.replay(local_run.folder / "accounts.parquet", local_run.folder / "workload.parquet",
                        out=tmp_path / "replayed", shards=3, in_process=True, report=False)
    assert again.summary["result_sha256"] == local_run.summary["result_sha256"]
    assert len(again.workload()) == again.summary["rows"]  # from the recorded input path
    assert not (tmp_path / "replayed" / "report.html").exists()


@pytest.mark.parametrize("kwargs,error", [
    ({"users": 3_000, "scale": 0.5}, InputRefused),
    ({"users": 1}, InputRefused),
    ({"scenario": "no-such-scenario"}, InputRefused),
    ({"shards": 0}, ValueError),
    ({"rate": -5.0}, ValueError),
])
def test_refusals_name_the_rule(tmp_path, kwargs, error):
    arguments = {"epochs": 2, "in_process": True, "out": tmp_path / "x", **kwargs}
    scenario = arguments.pop("scenario", "quick")
    with pytest.raises(error):
        xpay.run(scenario, **arguments)


def test_calls_share_one_ray_session(tmp_path):
    import ray

    first = xpay.run("quick", shards=2, out=tmp_path / "a", report=False, strict_serial=False, **SMALL)
    node = ray.get_runtime_context().get_node_id()
    second = xpay.run("quick", shards=3, out=tmp_path / "b", report=False, strict_serial=False, **SMALL)
    assert ray.is_initialized() and ray.get_runtime_context().get_node_id() == node
    assert first.summary["result_sha256"] == second.summary["result_sha256"]  # shards don't matter
    xpay.shutdown()
    assert not ray.is_initialized()


def test_sweep_runs_the_grid_and_summarises_each_cell(tmp_path):
    done = xpay.sweep("quick", shards=(1, 2), users=(2_000,), epoch_seconds=(21_600.0,), seeds=(1, 2),
                      repeats=2, out=tmp_path / "sweep", in_process=True, strict_serial=False)
    assert len(done.runs) == 2 * 2 * 2
    assert len(done.cells) == 2 and (done.cells.runs == 4).all()
    assert not (tmp_path / "sweep" / "warm-up").exists()  # the warm-up run is discarded
    # one workload per seed, replayed at every shard count: the same results at each
    assert done.runs.groupby("seed").result_sha256.nunique().eq(1).all()
    assert done.runs.result_sha256.nunique() == 2
    for shards, frame in done.runs.groupby("shards"):
        cell = done.cells.set_index("shards").loc[shards]
        assert cell.rows_per_s_mean == pytest.approx(frame.rows_per_s.mean())
        assert cell.rows_per_s_ci95 > 0 and not math.isnan(cell.rows_per_s_ci95)
    assert (tmp_path / "sweep" / "sweep.parquet").is_file()
    assert (tmp_path / "sweep" / "plots" / "throughput.png").is_file()
    assert len(pd.read_parquet(tmp_path / "sweep" / "cells.parquet")) == 2


def test_the_api_functions_survive_importing_every_xpay_module():
    """A submodule named like an API function replaces it on the package once imported (a
    second xpay.sweep(...) in a notebook failed: 'module' object is not callable)."""
    import importlib
    import pkgutil

    import xpay

    for module in pkgutil.walk_packages(xpay.__path__, "xpay."):
        importlib.import_module(module.name)
    for name in ("run", "replay", "sweep", "plain_workload", "load_run", "shutdown"):
        assert callable(getattr(xpay, name)), name
