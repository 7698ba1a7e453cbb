"""Driver memory against run length: `xpay replay` of the same plain P2P stream at two lengths.

The workloads share everything but their row count (accounts, epoch size, skew, seed), so
the shards hold the same state and any growth of the driver with the run's length shows as
the difference. Each workload streams from `workloads.plain.PlainP2P` into Parquet
(`sim.files.WorkloadWriter`, never whole in memory), then `xpay replay` runs it in a child
process and its summary.json gives the driver's peak resident memory (VmHWM from the run's
start) and the sampled peak of all processes together. The strict-serial measurement is off
(it holds the whole workload by design and is measured on its own).

    python -m benchmarks.streaming_memory                        # 10M and 500M rows (~25 min, ~20 GB disk)
    python -m benchmarks.streaming_memory --rows 2M 20M --keep   # any lengths; keep the files
    python -m benchmarks.streaming_memory --smoke                # seconds; runs in the test suite

Writes streaming_memory.json and .md into --out (default runs/streaming-memory).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sim import files
from workloads.plain import PlainP2P
from xpay.report import hardware, versions

ROWS_REAL = (10_000_000, 500_000_000)
ROWS_SMOKE = (20_000, 80_000)
ACCOUNTS_REAL, ACCOUNTS_SMOKE = 1_000_000, 2_000
ROWS_PER_EPOCH_REAL, ROWS_PER_EPOCH_SMOKE = 200_000, 2_000
ZIPF_EXPONENT = 1.1
FLAT_WITHIN = 0.10  # the target: driver peak within 10% between lengths


def count(text: str) -> int:
    scale = {"k": 10**3, "M": 10**6, "B": 10**9}
    value = int(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1 row")
    return value


def write_plain(folder: Path, accounts: int, rows: int, rows_per_epoch: int, seed: int) -> float:
    """Stream the plain workload into folder/{accounts,workload}.parquet; returns seconds."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    source = PlainP2P(accounts, rows - accounts, rows_per_epoch, ZIPF_EXPONENT,
                      np.random.default_rng(seed))
    files.write_accounts(folder / "accounts.parquet", source.accounts())
    written, next_report = 0, 0
    with files.WorkloadWriter(folder / "workload.parquet") as writer:
        for epoch in source.epochs():
            writer.write(epoch)
            written += len(epoch)
            if written >= next_report:
                print(f"  wrote {written:,} of {rows:,} rows", file=sys.stderr, flush=True)
                next_report += max(rows // 10, 1)
    return time.perf_counter() - started


def replay(folder: Path, shards: int, in_process: bool) -> dict:
    out = folder / "run"
    command = [str(Path(sys.executable).with_name("xpay")), "replay", "--accounts", str(folder / "accounts.parquet"),
               "--workload", str(folder / "workload.parquet"), "--out", str(out),
               "--shards", str(shards), "--no-strict-serial", "--no-report", "--quiet"]
    if in_process:
        command.append("--in-process")
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    memory = summary["memory"]
    return {"rows": summary["rows"], "epochs": summary["epochs"],
            "rows_per_s": summary["rows_per_s"], "wall_s": wall,
            "workload_bytes": (folder / "workload.parquet").stat().st_size,
            "driver_peak_rss_bytes": memory["driver_peak_rss_bytes"],
            "peak_all_processes_bytes": memory["peak_all_processes_bytes"],
            "result_sha256": summary.get("result_sha256")}


def table(points: list[dict]) -> str:
    lines = ["| rows | epochs | workload file | rows/s | wall | driver peak RSS | all processes (Pss) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        lines.append(f"| {p['rows']:,} | {p['epochs']:,} | {p['workload_bytes'] / 2**30:.2f} GiB "
                     f"| {p['rows_per_s'] / 1e6:.2f}M | {p['wall_s']:.0f} s "
                     f"| {p['driver_peak_rss_bytes'] / 2**20:,.0f} MiB "
                     f"| {p['peak_all_processes_bytes'] / 2**20:,.0f} MiB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=count, nargs="+", default=None, metavar="N",
                        help="run lengths in rows, e.g. 10M 500M (default: 10M 500M)")
    parser.add_argument("--shards", type=int, default=2, help="shards (default 2)")
    parser.add_argument("--in-process", action="store_true", help="shards in the replay's process, no Ray")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/streaming-memory/work"),
                        help="folder for the generated workloads")
    parser.add_argument("--out", type=Path, default=Path("runs/streaming-memory"))
    parser.add_argument("--keep", action="store_true", help="keep the workload files")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    args = parser.parse_args(argv)
    rows_list = args.rows or (ROWS_SMOKE if args.smoke else ROWS_REAL)
    accounts = ACCOUNTS_SMOKE if args.smoke else ACCOUNTS_REAL
    rows_per_epoch = ROWS_PER_EPOCH_SMOKE if args.smoke else ROWS_PER_EPOCH_REAL
    if min(rows_list) <= accounts:
        parser.error(f"--rows must exceed the {accounts:,} funding rows")
    points = []
    for rows in sorted(rows_list):
        folder = args.work / f"rows-{rows}"
        print(f"writing {rows:,} rows to {folder}", file=sys.stderr, flush=True)
        write_s = write_plain(folder, accounts, rows, rows_per_epoch, args.seed)
        print(f"replaying {rows:,} rows ({args.shards} shards)", file=sys.stderr, flush=True)
        point = replay(folder, args.shards, args.in_process)
        point["write_s"] = write_s
        points.append(point)
        print(table(points[-1:]), file=sys.stderr, flush=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    drivers = [p["driver_peak_rss_bytes"] for p in points]
    growth = drivers[-1] / drivers[0] - 1  # longest run against shortest
    result = {"accounts": accounts, "rows_per_epoch": rows_per_epoch, "zipf_exponent": ZIPF_EXPONENT,
              "shards": args.shards, "in_process": args.in_process, "seed": args.seed,
              "points": points, "driver_peak_growth": growth,
              "flat_within_10_percent": growth <= FLAT_WITHIN,
              "hardware": hardware(), "versions": versions(),
              "command": " ".join(["python -m benchmarks.streaming_memory", *(argv if argv is not None else sys.argv[1:])])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "streaming_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    text = (f"# Driver memory against run length\n\n`{result['command']}`\n\n"
            f"{accounts:,} accounts, {rows_per_epoch:,}-row epochs, Zipf {ZIPF_EXPONENT}, "
            f"{args.shards} {'in-process' if args.in_process else 'Ray'} shards.\n\n{table(points)}\n\n"
            f"Driver peak growth from the shortest to the longest run: {growth:+.1%} "
            f"({'within' if growth <= FLAT_WITHIN else 'outside'} 10%).\n")
    (args.out / "streaming_memory.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
