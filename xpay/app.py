"""One run end to end, as the command line and the Python API both do it.

`run_scenario` generates a scenario's workload (resized), writes it and ``run.toml`` into the
run folder and replays it; `replay_files` replays two Parquet files written by anyone. Both
check Ray's settings and the machine's memory before any work, and return the summary dict
that ``summary.json`` holds. `xpay.cli` parses arguments and prints; `xpay.api` takes keyword
arguments and returns a `xpay.runs.Run`; neither holds run logic of its own.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sim.errors import InputRefused
from xpay.run_folder import write_run_toml
from xpay.runner import RunOptions, remove_outputs, replay

RUNS_DIR_DEFAULT = Path("runs")


def default_out(scenario: str, seed: int) -> Path:
    return RUNS_DIR_DEFAULT / f"{Path(scenario).stem}-seed{seed}"


def check_ray(options: RunOptions) -> None:
    """Refuse a bad RAY_AUTH_MODE and fail on an unreachable cluster before any work is done."""
    if options.in_process:
        return
    from actors.ray_hosts import check_ray_settings

    check_ray_settings(options.address, authenticated=options.authenticated)


def scenario_workload(scenario: str, seed: int, size):
    """The scenario's source, materialised: (source, accounts, transfers, generate seconds)."""
    from workloads.base import materialize
    from workloads.registry import build_workload

    started = time.perf_counter()
    source = build_workload(scenario, seed, size)
    check_memory(scenario, source)
    accounts, transfers = materialize(source)
    return source, accounts, transfers, time.perf_counter() - started


# Bytes a materialised run holds per row (columns, a concatenation copy, results and
# routing) and per account (columns, the shards, balances out), measured loosely on quick.
RUN_BYTES_PER_ROW = 200
RUN_BYTES_PER_ACCOUNT = 120


def check_memory(name: str, source) -> None:
    """Refuse, before generating, a scenario whose materialised run cannot fit in memory."""
    rows = source.expected_row_count()
    need = rows * RUN_BYTES_PER_ROW + source.account_count * RUN_BYTES_PER_ACCOUNT
    have = available_memory_bytes()
    if have is not None and need > 0.8 * have:
        raise InputRefused(
            f"scenario {name}: about {source.account_count:,} accounts and {rows:,.0f} rows need"
            f" about {need / 2**30:.0f} GiB materialised; this machine has {have / 2**30:.0f} GiB"
            " available (run it on a bigger machine or a Ray cluster, or resize it: --users,"
            " --scale, --days)")


def check_replay_memory(accounts_path: Path, workload_path: Path) -> None:
    """Refuse, before reading anything, files whose run cannot fit in memory (row counts from
    the Parquet footers; unreadable files are left to the strict readers)."""
    import pyarrow.parquet as pq

    try:
        accounts = pq.ParquetFile(accounts_path).metadata.num_rows
        rows = pq.ParquetFile(workload_path).metadata.num_rows
    except Exception:
        return
    need = rows * RUN_BYTES_PER_ROW + accounts * RUN_BYTES_PER_ACCOUNT
    have = available_memory_bytes()
    if have is not None and need > 0.8 * have:
        raise InputRefused(
            f"{workload_path}: {accounts:,} accounts and {rows:,} rows need about {need / 2**30:.0f} GiB"
            f" in memory; this machine has {have / 2**30:.0f} GiB available (run it on a bigger"
            " machine or a Ray cluster, or split the workload)")


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def write_workload(out: Path, accounts, transfers, source, scenario: str, seed: int) -> None:
    from sim import files
    from workloads.describe import CLOCK_FILE, write_clock

    out.mkdir(parents=True, exist_ok=True)
    files.write_accounts(out / "accounts.parquet", accounts)
    files.write_workload(out / "workload.parquet", transfers)
    write_clock(out / CLOCK_FILE, scenario, seed, source.model_seconds_per_sim_second,
                source.funding_epoch_count)


def run_scenario(scenario: str, seed: int, size, options: RunOptions, out: Path | None = None,
                 fsync: str = "off", snapshot_every: int = 16) -> tuple[dict, Path]:
    """Generate, write and replay a scenario; returns (summary, run folder)."""
    from workloads.describe import hourly_rows

    out = Path(out) if out is not None else default_out(scenario, seed)
    check_ray(options)
    source, accounts, transfers, generate_seconds = scenario_workload(scenario, seed, size)
    write_workload(out, accounts, transfers, source, scenario, seed)
    data_dir = options.durability(out).data_dir
    write_run_toml(out, {
        "scenario": scenario, "seed": seed, "users": size.users, "scale": size.scale,
        "days": size.days, "epochs": size.epochs, "epoch_seconds": size.epoch_seconds,
        "shards": options.shards, "window_epochs": options.window_epochs,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "fsync": fsync, "snapshot_every": snapshot_every})
    configuration = {"command": "run", "scenario": scenario, "seed": seed,
                     "workload": source.configuration(), "generate_seconds": generate_seconds,
                     "workload_hourly": hourly_rows(transfers, source.model_seconds_per_sim_second,
                                                    source.funding_epoch_count)}
    print(f"xpay run: {scenario}, seed {seed}: {len(accounts):,} accounts, {len(transfers):,} rows"
          f" generated in {generate_seconds:.1f} s -> {out}", file=sys.stderr)
    return replay(accounts, transfers, out, options, 0.0, configuration), out


def replay_files(accounts_path: Path, workload_path: Path, options: RunOptions, out: Path) -> dict:
    """Read and replay two workload files; a refused input leaves no results in `out`."""
    from sim import files

    started = time.perf_counter()
    try:
        check_ray(options)
        check_replay_memory(accounts_path, workload_path)
        accounts = files.read_accounts(accounts_path)
        transfers = files.read_workload(workload_path)
    except InputRefused:
        if Path(out).is_dir():
            remove_outputs(Path(out))
        raise
    configuration = {"command": "replay", "accounts_path": str(Path(accounts_path).resolve()),
                     "workload_path": str(Path(workload_path).resolve())}
    return replay(accounts, transfers, out, options, time.perf_counter() - started, configuration)
