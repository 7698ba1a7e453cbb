"""Security and hygiene (issue 11): what a local run exposes, hostile environments and files,
and what a run may delete or leave behind. One test (or more) per defect of the issue."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from sim import files
from sim.columns import Accounts, Transfers
from sim.errors import InputRefused
from tests.adversarial import adversarial_workload
from xpay.cli import main

ROOT = Path(__file__).resolve().parents[1]


def xpay(*args: str, env: dict | None = None, timeout: float = 240, umask: int | None = None):
    """`python -m xpay.cli ARGS` in a subprocess: (completed process, seconds it took)."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    for name, value in list(environ.items()):
        if value is None:
            del environ[name]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "xpay.cli", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    return done, time.perf_counter() - started


def write_inputs(folder: Path, rows: int = 40) -> list[str]:
    accounts, transfers = adversarial_workload(21, rows, 5)
    files.write_accounts(folder / "accounts.parquet", accounts)
    files.write_workload(folder / "workload.parquet", transfers)
    return ["--accounts", str(folder / "accounts.parquet"), "--workload", str(folder / "workload.parquet")]


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def closed_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the socket is: nothing listens there


# --- 2: a local run listens on loopback only --------------------------------------------------


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat_line = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat_line.rsplit(")", 1)[1].split()[1]), []).append(int(name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def listening_sockets(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process name) of every listening TCP socket of these processes."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        if {int(p) for p in re.findall(r"pid=(\d+)", line)} & pids:
            names = re.findall(r'"([^"]+)"', line)
            found.append((line.split()[3], names[0] if names else "?"))
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host.startswith(("127.", "::ffff:127.")) or host == "::1"


@pytest.mark.skipif(subprocess.run(["which", "ss"], capture_output=True).returncode != 0,
                    reason="needs ss (iproute2)")
def test_a_local_run_listens_on_loopback_only(ray_session):
    from actors.ray_hosts import RayHosts

    accounts, _ = adversarial_workload(21, 40, 5)
    hosts = RayHosts(accounts, 2, 100)  # shard workers up, each with its gRPC server
    try:
        sockets = listening_sockets(_descendants(os.getpid()))
    finally:
        hosts.close()
    names = {name for _, name in sockets}
    assert "gcs_server" in names and "raylet" in names, sockets  # the test sees the session
    exposed = [(a, n) for a, n in sockets if not is_loopback(a)]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_the_node_address_stays_loopback(ray_session):
    import ray

    assert ray._private.worker.global_worker.node.node_ip_address == "127.0.0.1"


# --- 1: token authentication cannot be switched off without an explicit option -----------------


@pytest.mark.parametrize("value", ["", "none", "off", " disabled", "disabled", "Token"])
def test_any_auth_mode_but_token_is_refused(tmp_path, value):
    done, _ = xpay("replay", *write_inputs(tmp_path), "--out", str(tmp_path / "out"),
                   env={"RAY_AUTH_MODE": value})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--unauthenticated" in one_line(done.stderr)
    assert not (tmp_path / "out" / "summary.json").exists()


def test_unauthenticated_only_when_asked_and_reported_as_such():
    code = ("from actors.ray_hosts import start_ray; import json;"
            " print(json.dumps(start_ray(num_cpus=1, object_store_bytes=128 * 2**20,"
            " authenticated=False)))")
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "off"}
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["auth"] == "disabled"


def test_the_summary_reports_the_mode_ray_runs_with(ray_session):
    from actors.ray_hosts import _auth_mode_running

    assert _auth_mode_running() == "token"


# --- 3, 9 and the auth warning: a cluster already running is not joined; files follow the umask


def test_a_running_cluster_is_left_alone_and_outputs_follow_the_umask(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="xr-")  # short: Ray's socket paths live under it
    ray_cli = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "disabled",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # its node address stays on loopback
    port = closed_loopback_port()
    start = [ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
             "--num-cpus=1", "--include-dashboard=false"]  # RAY_TMPDIR: where ray.init() looks
    try:
        up = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stderr[-2000:]
        out = tmp_path / "out"
        done, _ = xpay("replay", *write_inputs(tmp_path), "--out", str(out), "--shards", "2",
                       "--quiet", env={"RAY_TMPDIR": ray_tmp, "RAY_ADDRESS": None,
                                       "RAY_AUTH_MODE": None}, umask=0o077)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Token authentication is enabled" not in done.stderr  # advice xpay contradicts
        ray_info = json.loads((out / "summary.json").read_text())["configuration"]["ray"]
        assert ray_info["local"] and ray_info["auth"] == "token" and ray_info["node_ip"] == "127.0.0.1"
        for name in ("results.parquet", "balances.parquet", "audit.parquet", "summary.json"):
            assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
        assert "already running" not in done.stderr
    finally:
        stop_cluster_in(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def stop_cluster_in(ray_tmp: str) -> None:
    """Stop the processes of the cluster under ray_tmp only, by pid (`ray stop` would stop
    every Ray on the machine): the ones naming the folder and their descendants."""
    import signal

    roots = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if ray_tmp.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    roots.add(int(name))
            except OSError:
                continue
    pids = set().union(*(_descendants(pid) for pid in roots)) if roots else set()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in sorted(pids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


def test_written_files_follow_the_umask(tmp_path):
    accounts, transfers = adversarial_workload(21, 40, 5)
    old = os.umask(0o027)
    try:
        files.write_accounts(tmp_path / "a.parquet", accounts)
        with files.WorkloadWriter(tmp_path / "w.parquet") as writer:
            writer.write(transfers)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.parquet").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "w.parquet").stat().st_mode) == 0o640


def test_transport_files_are_private():
    from actors.transport import Arena, arenas_available

    if not arenas_available():
        pytest.skip("no /dev/shm")
    old = os.umask(0o022)
    arena = Arena("security-test")
    try:
        arena.ensure(100)
        assert stat.S_IMODE(os.stat(arena.path).st_mode) == 0o600
    finally:
        arena.close()
        os.umask(old)


# --- 4: a wrong address fails fast, before any work --------------------------------------------


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_wrong_address_fails_within_30_s_before_generating(tmp_path, how):
    address = f"127.0.0.1:{closed_loopback_port()}"
    option = ["--address", address] if how == "option" else []
    env = {"RAY_ADDRESS": address} if how == "environment" else {"RAY_ADDRESS": None}
    out = tmp_path / "run"
    done, seconds = xpay("run", "--users", "200", "--epochs", "2", "--out", str(out), *option,
                         env=env, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert address in one_line(done.stderr)
    assert seconds < 30
    assert not (out / "workload.parquet").exists()


# --- 5: more ledgers than the engine has slots for ----------------------------------------------


def test_more_than_255_ledgers_is_refused_with_one_line(tmp_path):
    n = 256
    accounts = Accounts.from_columns(id=np.arange(1, n + 1), ledger=np.arange(1, n + 1), flags=np.zeros(n))
    transfers = Transfers.from_columns(
        id=[1], epoch=[0], sim_time_us=[0], debit_account=[1], credit_account=[2], amount=[5],
        ledger=[1], code=[1], flags=[0], pending_id=[0], timeout_s=[0])
    files.write_accounts(tmp_path / "accounts.parquet", accounts)
    files.write_workload(tmp_path / "workload.parquet", transfers)
    for extra in ([], ["--in-process"]):
        done, _ = xpay("replay", "--accounts", str(tmp_path / "accounts.parquet"), "--workload",
                       str(tmp_path / "workload.parquet"), "--out", str(tmp_path / "out"), *extra)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "256 distinct ledgers" in one_line(done.stderr)


# --- 6: the data dir holds only what xpay wrote --------------------------------------------------


def test_a_data_dir_with_foreign_files_is_refused_and_kept(tmp_path):
    from sim.durability import DataDirRefused, Durability, prepare_data_dir

    root = tmp_path / "data"
    (root / "shard-000").mkdir(parents=True)
    precious = root / "shard-000" / "thesis.tex"
    precious.write_text("years of work")
    with pytest.raises(DataDirRefused, match="shard-000"):
        prepare_data_dir(Durability(str(root)), 2, fresh=True)
    assert precious.read_text() == "years of work"


def test_a_marked_data_dir_loses_only_xpay_files(tmp_path):
    from sim.durability import DataDirRefused, Durability, prepare_data_dir

    root = tmp_path / "data"
    prepare_data_dir(Durability(str(root)), 1, fresh=True)  # new: marked
    wal = root / "shard-000" / "wal-000000000001-abcd1234.arrows"
    wal.write_bytes(b"old run")
    prepare_data_dir(Durability(str(root)), 1, fresh=True)
    assert not wal.exists()
    (root / "shard-000" / "notes.txt").write_text("mine")
    with pytest.raises(DataDirRefused, match="notes.txt"):
        prepare_data_dir(Durability(str(root)), 1, fresh=True)
    assert (root / "shard-000" / "notes.txt").exists()


def test_xpay_refuses_a_foreign_data_dir_with_exit_2(tmp_path):
    data = tmp_path / "mine"
    (data / "shard-001").mkdir(parents=True)
    (data / "shard-001" / "photo.jpg").write_bytes(b"\xff\xd8")
    done, _ = xpay("replay", *write_inputs(tmp_path), "--out", str(tmp_path / "out"),
                   "--data-dir", str(data), "--shards", "2")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "shard-001" in one_line(done.stderr)
    assert (data / "shard-001" / "photo.jpg").read_bytes() == b"\xff\xd8"


# --- 7: a footer whose row counts disagree with its pages ----------------------------------------


def _zigzag_varint(value: int) -> bytes:
    v, out = (value << 1) ^ (value >> 63), b""
    while True:
        low, v = v & 0x7F, v >> 7
        if not v:
            return out + bytes([low])
        out += bytes([low | 0x80])


def lie_about_rows(path: Path, true_rows: int, told_rows: int, which: slice = slice(None)) -> None:
    """Rewrite the footer's i64 counts (Thrift compact field header 0x16, then the zigzag
    varint) equal to true_rows to told_rows: file, row group and column-chunk counts."""
    data = bytearray(path.read_bytes())
    length = struct.unpack("<I", data[-8:-4])[0]
    start = len(data) - 8 - length
    old, new = b"\x16" + _zigzag_varint(true_rows), b"\x16" + _zigzag_varint(told_rows)
    assert len(old) == len(new)
    footer = bytes(data[start:start + length])
    hits = [i for i in range(length) if footer.startswith(old, i)][which]
    assert hits
    for i in hits:
        data[start + i:start + i + len(old)] = new
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", [slice(None), slice(0, 1), slice(1, 2)],
                         ids=["every count", "file count", "one column"])
def test_a_footer_that_disagrees_with_its_pages_is_refused(tmp_path, which):
    _, transfers = adversarial_workload(21, 168, 5)
    rows = len(transfers)
    path = tmp_path / "workload.parquet"
    files.write_workload(path, transfers)
    lie_about_rows(path, rows, rows - 7, which)
    with pytest.raises(InputRefused, match="metadata and data disagree"):
        files.read_workload(path)


def test_xpay_refuses_a_lying_footer_with_exit_2(tmp_path):
    args = write_inputs(tmp_path, rows=168)
    path = tmp_path / "workload.parquet"
    rows = len(files.read_workload(path))
    lie_about_rows(path, rows, rows - 7)
    done, _ = xpay("replay", *args, "--out", str(tmp_path / "out"), "--in-process")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "disagree" in one_line(done.stderr)


def test_honest_files_of_other_writers_pass_the_page_count(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sim.parquet_pages import count_problem

    table = pa.table({"a": np.arange(50_000) % 7, "s": [f"x{i % 5}" for i in range(50_000)],
                      "n": pa.array([None if i % 3 else i for i in range(50_000)], pa.int64())})
    for options in ({}, {"data_page_version": "2.0"}, {"use_dictionary": False, "data_page_size": 999}):
        pq.write_table(table, tmp_path / "t.parquet", row_group_size=12_345, **options)
        assert count_problem(tmp_path / "t.parquet", pq.read_metadata(tmp_path / "t.parquet")) is None


# --- 8: no stale outputs beside a failed or refused run -----------------------------------------


def overflow_inputs():
    from sim.constants import AMOUNT_MAX

    accounts = Accounts.from_columns(id=[7, 9], ledger=[1, 1], flags=[0, 0])
    n = 1100  # 1024 transfers of 2**53 reach 2**63
    transfers = Transfers.from_columns(
        id=np.arange(1, n + 1), epoch=np.arange(n) // 100, sim_time_us=np.arange(n),
        debit_account=np.full(n, 7), credit_account=np.full(n, 9), amount=np.full(n, AMOUNT_MAX),
        ledger=np.ones(n), code=np.zeros(n), flags=np.zeros(n), pending_id=np.zeros(n),
        timeout_s=np.zeros(n))
    return accounts, transfers


OUTPUTS = ("results.parquet", "balances.parquet", "audit.parquet")


def test_a_stopped_run_leaves_no_earlier_results(tmp_path, capsys):
    (tmp_path / "good").mkdir()
    good = write_inputs(tmp_path / "good")
    out = tmp_path / "out"
    assert main(["replay", *good, "--out", str(out), "--in-process", "--quiet"]) == 0
    assert all((out / name).exists() for name in OUTPUTS)
    accounts, transfers = overflow_inputs()
    files.write_accounts(tmp_path / "accounts.parquet", accounts)
    files.write_workload(tmp_path / "workload.parquet", transfers)
    bad = ["--accounts", str(tmp_path / "accounts.parquet"), "--workload", str(tmp_path / "workload.parquet")]
    assert main(["replay", *bad, "--out", str(out), "--in-process", "--quiet"]) == 1
    assert not any((out / name).exists() for name in OUTPUTS)
    assert json.loads((out / "summary.json").read_text())["completed"] is False
    assert not list(tmp_path.glob(".out.partial-*"))


def test_a_refused_run_leaves_no_earlier_audit(tmp_path):
    args = write_inputs(tmp_path)
    out = tmp_path / "out"
    assert main(["replay", *args, "--out", str(out), "--in-process", "--quiet"]) == 0
    (tmp_path / "workload.parquet").write_bytes(b"not parquet")
    assert main(["replay", *args, "--out", str(out), "--in-process", "--quiet"]) == 2
    assert not any((out / name).exists() for name in (*OUTPUTS, "summary.json"))


# --- frictions: one line for a bad command line --------------------------------------------------


@pytest.mark.parametrize("argv", [["replay", "--bogus"], ["replay", "--window-epochs", "-1"],
                                  ["replay", "--window-epochs", str(2**70)], ["nonsense"]])
def test_a_bad_command_line_gets_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert one_line(capsys.readouterr().err).startswith("xpay: ")
