"""Calibrate the capacity model and validate it on runs it never saw: one command, ~10 minutes.

    python -m benchmarks.plan_validation [--out runs/plan-validation]     (make plan-validate)

Calibration runs: `quick` at 1, 2, 3 and 4 shards x 300, 1200 and 3600 s epochs, `mature`
(500k users: twice quick's two-phase rows) at 1, 2 and 4 shards x 900 and 3600 s epochs, and
plain Zipf P2P workloads (1M accounts, 20k- and 100k-row epochs) at 1, 2 and 4 shards.
Validation runs, none of them in the calibration: `quick` with 600 s epochs, `black-friday`
and `crypto-crash` (300k users, 600 s epochs), a plain workload of 2M accounts in 50k-row
epochs, each at 2 and 4 shards; the plain workload in 2k-row epochs at 4 shards; open-loop `quick` at 300k rows/s (300 s epochs, 2 and 4
shards) and 200k rows/s (120 s epochs, 4 shards).
Writes OUT/calibration.json and OUT/validation/ (validation.parquet, .md, .png).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

QUIET = ["--no-strict-serial", "--no-progress"]


def xpay(*args: str) -> None:
    command = [sys.executable, "-m", "xpay.cli", *args]
    print("+ xpay " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def plain(out: Path, name: str, accounts: int, transfers: int, rows_per_epoch: int, seed: int,
          shards: list[int]) -> list[Path]:
    workload = out / "workloads" / name
    xpay("bench", "--write-workload", str(workload), "--accounts", str(accounts),
         "--transfers", str(transfers), "--rows-per-epoch", str(rows_per_epoch), "--seed", str(seed))
    runs = []
    for k in shards:
        run = out / f"{name}-s{k}"
        xpay("replay", "--accounts", str(workload / "accounts.parquet"), "--workload",
             str(workload / "workload.parquet"), "--shards", str(k), "--out", str(run), "--quiet", *QUIET)
        runs.append(run)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/plan-validation"))
    args = parser.parse_args(argv)
    cal, val = args.out / "calibration-runs", args.out / "validation-runs"
    xpay("sweep", "--scenario", "quick", "--shards", "1", "2", "3", "4", "--epoch-seconds", "300",
         "1200", "3600", "--out", str(cal / "quick"), *QUIET)
    xpay("sweep", "--scenario", "mature", "--users", "500k", "--shards", "1", "2", "4", "--epoch-seconds",
         "900", "3600", "--out", str(cal / "mature"), *QUIET)
    calibration_runs = [cal / "quick", cal / "mature"]
    calibration_runs += plain(cal, "plain20k", 1_000_000, 4_000_000, 20_000, 3, [1, 2, 4])
    calibration_runs += plain(cal, "plain100k", 1_000_000, 4_000_000, 100_000, 4, [1, 2, 4])
    xpay("plan", "calibrate", *map(str, calibration_runs), "--out", str(args.out / "calibration.json"))
    xpay("sweep", "--scenario", "quick", "--shards", "2", "4", "--epoch-seconds", "600",
         "--out", str(val / "quick600"), *QUIET)
    for scenario in ("black-friday", "crypto-crash"):
        xpay("sweep", "--scenario", scenario, "--users", "300k", "--shards", "2", "4", "--epoch-seconds",
             "600", "--out", str(val / scenario), *QUIET)
    validation_runs = [val / "quick600", val / "black-friday", val / "crypto-crash"]
    validation_runs += plain(val, "plain2m", 2_000_000, 6_000_000, 50_000, 7, [2, 4])
    validation_runs += plain(val, "plain2k", 1_000_000, 2_200_000, 2_000, 5, [4])
    xpay("sweep", "--scenario", "quick", "--shards", "2", "4", "--epoch-seconds", "300", "--rate",
         "300000", "--out", str(val / "quick300-rate300k"), *QUIET)
    xpay("sweep", "--scenario", "quick", "--shards", "4", "--epoch-seconds", "120", "--rate",
         "200000", "--out", str(val / "quick120-rate200k"), *QUIET)
    validation_runs += [val / "quick300-rate300k", val / "quick120-rate200k"]
    xpay("plan", "validate", *map(str, validation_runs), "--calibration",
         str(args.out / "calibration.json"), "--out", str(args.out / "validation"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
