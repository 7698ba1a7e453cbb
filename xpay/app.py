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
from xpay.memory import available_memory_bytes
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


# Bytes a run holds per account at its peak, all processes together, measured: x-scale-day at
# 60M users (74.5M accounts) used 16.9 GB at the end of the run, ~227 bytes an account (the
# driver's accounts and shard index, the shards' state and id window, and every balance
# gathered into the driver and written). Rows are streamed, so their count does not enter.
RUN_BYTES_PER_ACCOUNT = 230
# Bytes a materialised workload holds per row (columns and a concatenation copy): only
# scenario_workload materialises (sweeps, the API's in-memory runs).
RUN_BYTES_PER_ROW = 200


def check_memory(name: str, source, streamed: bool = False) -> None:
    """Refuse, before generating, a scenario whose run cannot fit in memory."""
    rows = 0 if streamed else source.expected_row_count()
    need = rows * RUN_BYTES_PER_ROW + source.account_count * RUN_BYTES_PER_ACCOUNT
    have = available_memory_bytes()
    if have is not None and need > 0.8 * have:
        what = "its accounts" if streamed else "materialised"
        raise InputRefused(
            f"scenario {name}: about {source.account_count:,} accounts and {source.expected_row_count():,.0f}"
            f" rows need about {need / 2**30:.0f} GiB ({what}); this machine has {have / 2**30:.0f} GiB"
            " available (run it on a bigger machine or a Ray cluster, or resize it: --users,"
            " --scale, --days)")


def check_replay_memory(accounts_path: Path, workload_path: Path) -> None:
    """Refuse, before reading anything, files whose run cannot fit in memory (the account
    count from the Parquet footer; rows are streamed; unreadable files are left to the
    strict readers)."""
    import pyarrow.parquet as pq

    try:
        accounts = pq.ParquetFile(accounts_path).metadata.num_rows
        rows = pq.ParquetFile(workload_path).metadata.num_rows
    except Exception:
        return
    need = accounts * RUN_BYTES_PER_ACCOUNT
    have = available_memory_bytes()
    if have is not None and need > 0.8 * have:
        raise InputRefused(
            f"{workload_path}: {accounts:,} accounts (and {rows:,} rows, streamed) need about"
            f" {need / 2**30:.0f} GiB in memory; this machine has {have / 2**30:.0f} GiB available"
            " (run it on a bigger machine or a Ray cluster)")


def write_workload(out: Path, accounts, transfers, source, scenario: str, seed: int) -> None:
    """A materialised workload into OUT (sweeps: generated once, replayed at every size)."""
    from sim import files
    from workloads.describe import CLOCK_FILE, write_clock

    out.mkdir(parents=True, exist_ok=True)
    files.write_accounts(out / "accounts.parquet", accounts)
    files.write_workload(out / "workload.parquet", transfers)
    write_clock(out / CLOCK_FILE, scenario, seed, source.model_seconds_per_sim_second,
                source.funding_epoch_count)


def generate_workload(out: Path, scenario: str, seed: int, size, show_progress: bool | None = None,
                      for_run: bool = True):
    """Stream a scenario into OUT/accounts.parquet and OUT/workload.parquet (and its clock):
    memory holds the accounts and one epoch. Returns (source, accounts, rows written, model
    hourly rows of the traffic epochs, seconds). for_run: refuse first a scenario whose run
    could not fit in memory (generating one needs only the accounts and an epoch)."""
    from sim import files
    from workloads.describe import CLOCK_FILE, HourlyRows, write_clock
    from workloads.registry import build_workload
    from xpay import progress

    started = time.perf_counter()
    source = build_workload(scenario, seed, size)
    if for_run:
        check_memory(scenario, source, streamed=True)
    out.mkdir(parents=True, exist_ok=True)
    accounts = source.accounts()
    files.write_accounts(out / "accounts.parquet", accounts)
    hourly = HourlyRows(source.model_seconds_per_sim_second, source.funding_epoch_count)
    epochs = source.epochs()
    if progress.show(show_progress):
        epochs = progress.bar(iterable=epochs, total=source.epoch_total, unit="epoch", desc="generate")
    with files.WorkloadWriter(out / "workload.parquet") as writer:
        for rows in epochs:
            writer.write(rows)
            hourly.add(rows)
    write_clock(out / CLOCK_FILE, scenario, seed, source.model_seconds_per_sim_second,
                source.funding_epoch_count)
    return source, accounts, writer.rows, hourly.rows_per_hour(), time.perf_counter() - started


def run_scenario(scenario: str, seed: int, size, options: RunOptions, out: Path | None = None,
                 fsync: str = "off", snapshot_every: int = 16) -> tuple[dict, Path]:
    """Generate a scenario into the run folder (streamed), then replay the files (streamed);
    returns (summary, run folder)."""
    from sim import files

    out = Path(out) if out is not None else default_out(scenario, seed)
    check_ray(options)
    source, accounts, rows, hourly, generate_seconds = generate_workload(out, scenario, seed, size,
                                                                         options.progress)
    data_dir = options.durability(out).data_dir
    write_run_toml(out, {
        "scenario": scenario, "seed": seed, "users": size.users, "scale": size.scale,
        "days": size.days, "epochs": size.epochs, "epoch_seconds": size.epoch_seconds,
        "shards": options.shards, "window_epochs": options.window_epochs,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "fsync": fsync, "snapshot_every": snapshot_every})
    configuration = {"command": "run", "scenario": scenario, "seed": seed,
                     "workload": source.configuration(), "generate_seconds": generate_seconds,
                     "workload_hourly": hourly}
    print(f"xpay run: {scenario}, seed {seed}: {len(accounts):,} accounts, {rows:,} rows"
          f" generated in {generate_seconds:.1f} s -> {out}", file=sys.stderr)
    started = time.perf_counter()
    workload = files.WorkloadReader(out / "workload.parquet")
    return replay(accounts, workload, out, options, time.perf_counter() - started, configuration), out


def replay_files(accounts_path: Path, workload_path: Path, options: RunOptions, out: Path) -> dict:
    """Read the accounts and open the workload for streaming (both checked whole first); a
    refused input leaves no results in `out`."""
    from sim import files

    started = time.perf_counter()
    try:
        check_ray(options)
        check_replay_memory(accounts_path, workload_path)
        accounts = files.read_accounts(accounts_path)
        workload = files.WorkloadReader(workload_path)
    except InputRefused:
        if Path(out).is_dir():
            remove_outputs(Path(out))
        raise
    configuration = {"command": "replay", "accounts_path": str(Path(accounts_path).resolve()),
                     "workload_path": str(Path(workload_path).resolve())}
    return replay(accounts, workload, out, options, time.perf_counter() - started, configuration)
