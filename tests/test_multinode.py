"""Two Ray nodes (ray.cluster_utils.Cluster, both on this machine): shards spread over them,
the object store carries the remote shards' batches, results equal the reference ledger, and
summary.json records each shard's node.

The cluster runs with token authentication, as `docs/multinode.md` tells users to start theirs.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from sim import files
from sim.engine import Engine, split_epochs, table_hint
from sim.reference import run_reference
from tests.adversarial import adversarial_workload

WINDOW = 3
NODE_CPUS = 2


@pytest.fixture(scope="module")
def cluster():
    """A head node and one more node, 2 CPUs each, with token authentication; the test
    process is the driver on the head node."""
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    from actors.ray_hosts import SINGLE_NODE_ENV, start_ray, stop_ray

    stop_ray()
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", SINGLE_NODE_ENV)}
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    # A local session of an earlier test module made Ray single-node (loopback only); starting
    # a cluster of two nodes needs Ray's multi-node mode back (its nodes bind 127.0.0.1 still).
    os.environ[SINGLE_NODE_ENV] = "1"
    ray_constants.ENABLE_RAY_CLUSTER = True
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    _reload_auth_settings()
    two = Cluster(initialize_head=True, head_node_args={
        "num_cpus": NODE_CPUS, "object_store_memory": 256 * 1024**2, "include_dashboard": False,
        "node_ip_address": "127.0.0.1"})
    two.add_node(num_cpus=NODE_CPUS, object_store_memory=256 * 1024**2, node_ip_address="127.0.0.1")
    two.wait_for_nodes()
    start_ray(two.address)  # joins it: a loopback address keeps Ray on loopback
    try:
        yield two
    finally:
        stop_ray()
        two.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _reload_auth_settings()  # later modules' local sessions use their own token again


def _reload_auth_settings() -> None:
    """Ray caches the auth mode and token per process: reread them from the environment."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.mark.parametrize("shards", [2, 4])
def test_shards_spread_over_two_nodes_and_equal_the_reference(cluster, shards):
    from actors.ray_hosts import RayHosts

    accounts, transfers = adversarial_workload(31 + shards, 400, 8)
    expected = run_reference(accounts, transfers, window_epochs=WINDOW)
    hosts = RayHosts(accounts, shards, WINDOW, table_hint(transfers, WINDOW, shards))
    try:
        placement = hosts.placement()
        result = Engine(accounts, hosts, WINDOW).run(split_epochs(transfers))
    finally:
        hosts.close()
    assert placement["nodes"] == 2
    by_node = {}
    for shard in placement["shards"]:
        by_node.setdefault(shard["node"], []).append(shard)
    remote = [s for node, on in by_node.items() if node != placement["driver_node"] for s in on]
    assert remote and all(s["transport"] == "object_store" for s in remote)
    local = by_node.get(placement["driver_node"], [])
    assert all(s["transport"] == "arena" for s in local)
    np.testing.assert_array_equal(result.status, expected.status)
    assert result.balances.equals(expected.balances)
    assert result.metrics.invariant_violations == []


def test_xpay_replay_joins_the_cluster_and_records_placement(cluster, tmp_path):
    accounts, transfers = adversarial_workload(77, 600, 9)
    files.write_accounts(tmp_path / "accounts.parquet", accounts)
    files.write_workload(tmp_path / "workload.parquet", transfers)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "xpay.cli", "replay",
               "--accounts", str(tmp_path / "accounts.parquet"),
               "--workload", str(tmp_path / "workload.parquet"), "--shards", "3",
               "--window-epochs", str(WINDOW), "--out", str(out), "--quiet", "--no-progress",
               "--address", cluster.address]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    configuration = summary["configuration"]
    assert configuration["ray"] == {"address": cluster.address, "local": False, "auth": "token"}
    placement = configuration["placement"]
    assert placement["nodes"] == 2 and len(placement["shards"]) == 3
    assert configuration["transport"] == "mixed"
    assert {s["node_ip"] for s in placement["shards"]} == {"127.0.0.1"}
    expected = run_reference(accounts, transfers, window_epochs=WINDOW)
    results = pq.read_table(out / "results.parquet")
    np.testing.assert_array_equal(results["status"].to_numpy(), expected.status)
    assert files.read_balances(out / "balances.parquet").equals(expected.balances)
    assert all(summary["invariants"].values())
