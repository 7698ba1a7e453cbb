"""The ``xpay`` command: replay a workload file, run a scenario end to end, generate or describe one.

    xpay replay --accounts A.parquet --workload W.parquet --out DIR   the engine on any workload
    xpay run --scenario NAME --seed S                                 generate, then replay
    xpay generate --scenario NAME --seed S --out DIR                  write the workload files only
    xpay describe DIR [--json]                                        realised statistics of DIR

Exit status (LEDGER_SPEC.md): 0 when the run completed and every invariant held; 2 with one
line and no results file when an input is refused; 1 with one line for any other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import decimal
import sys
import time
import traceback
from pathlib import Path

from sim.constants import IDEMPOTENCY_WINDOW_EPOCHS, SHARD_COUNT_MAX, SHARD_COUNT_MIN
from sim.errors import InputRefused, XpayError
from xpay.malloc_policy import keep_freed_memory

RUNS_DIR_DEFAULT = Path("runs")


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # the generator's epochs reuse freed heap memory (xpay/malloc_policy.py)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except InputRefused as error:
        _say(f"refused: {error}")
        return error.exit_status
    except XpayError as error:
        _say(str(error))
        return error.exit_status
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as error:  # one line for the user; the traceback on request
        if getattr(args, "debug", False):
            traceback.print_exc()
        _say(f"error: {type(error).__name__}: {error}")
        return 1


def _version() -> str:
    import importlib.metadata

    from xpay.report import versions

    commit = versions().get("git_commit")
    return importlib.metadata.version("xpay-sim") + (f" (commit {commit})" if commit else "")


class _Parser(argparse.ArgumentParser):
    """argparse that answers a bad command line with one line (exit 2), not a usage block."""

    def error(self, message: str):
        _say(f"{message} (see {self.prog} --help)")
        raise SystemExit(2)


def _say(message: str) -> None:
    print(f"xpay: {' '.join(str(message).split())}", file=sys.stderr)


def _int_in(low: int, high: int | None, label: str):
    """An argparse type: an integer in low..high (high None: no ceiling), refused naming
    the option, the value and the range."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            bound = f"in {low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{label}(={value}) must be {bound}")
        return value

    return parse


WINDOW_EPOCHS_MAX = 2**63 - 1  # epochs are uint64; the window is compared as int64 too
_shards = _int_in(SHARD_COUNT_MIN, SHARD_COUNT_MAX, "shards")
_window_epochs = _int_in(0, WINDOW_EPOCHS_MAX, "window epochs")
_positive = _int_in(1, None, "value")  # argparse's message names the option before it
_nonnegative = _int_in(0, None, "value")


COUNT_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9}


def count(text: str) -> int:
    """A whole number as people write it: 100000, 100_000, 100k, 1.5M, 2G (powers of 1000)."""
    cleaned = text.strip().replace("_", "").replace(",", "")
    factor = COUNT_SUFFIXES.get(cleaned[-1:].lower(), 1)
    number = cleaned[:-1] if factor != 1 else cleaned
    try:
        value = decimal.Decimal(number) * factor
    except (decimal.InvalidOperation, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (say 100000, 100k or 1.5M)") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(value)


def _rate(text: str) -> float:
    try:
        value = float(count(text)) if text.strip()[-1:].lower() in COUNT_SUFFIXES else float(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"rate(={text!r}) must be a number of rows per second") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"rate(={text}) must be > 0 and finite")
    return value


def _engine_options(p: argparse.ArgumentParser, shards_default: int) -> None:
    p.add_argument("--shards", type=_shards, default=shards_default,
                   help=f"shard actors, {SHARD_COUNT_MIN}..{SHARD_COUNT_MAX} (default {shards_default})")
    p.add_argument("--window-epochs", type=_window_epochs, default=IDEMPOTENCY_WINDOW_EPOCHS,
                   help=f"idempotency window in epochs (default {IDEMPOTENCY_WINDOW_EPOCHS})")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (default: $RAY_ADDRESS, else a local Ray, token auth on)")
    p.add_argument("--unauthenticated", action="store_true",
                   help="run Ray without token authentication (RAY_AUTH_MODE=disabled); without"
                        " it any RAY_AUTH_MODE other than token is refused")
    p.add_argument("--in-process", action="store_true",
                   help="run every shard in this process without Ray (one core's baseline)")
    p.add_argument("--rate", type=_rate, default=None, metavar="R",
                   help="offer R rows a second of wall time, open loop (sim time mapped onto wall"
                        " time; payment latency from each row's scheduled arrival); default: as"
                        " fast as possible, batch latency only")
    p.add_argument("--no-strict-serial", action="store_true",
                   help="skip the strict-serial divergence measurement")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    durable = p.add_argument_group("durability and fault injection")
    durable.add_argument("--data-dir", default=None, metavar="DIR",
                         help="durable shards: each logs every batch it receives (Arrow IPC) and"
                              " snapshots its state here; a killed shard recovers from it")
    durable.add_argument("--fsync", choices=("off", "call"), default="off",
                         help="off: log writes survive a killed process (page cache); call: fsync each"
                              " logged batch before applying it (survives a machine crash) (default off)")
    durable.add_argument("--snapshot-every", type=_positive, default=16, metavar="EPOCHS",
                         help="snapshot each shard every EPOCHS epochs (>= 2; default 16)")
    durable.add_argument("--kill-shards", type=_nonnegative, default=0, metavar="N",
                         help="kill shard actors N times at seeded random points (needs a data dir;"
                              " default OUT/data)")
    durable.add_argument("--fault-seed", type=int, default=0, metavar="S", help="seed of the fault plan")
    durable.add_argument("--delay-batches", type=_nonnegative, default=0, metavar="N",
                         help="hold one shard's batch back N times")
    durable.add_argument("--duplicate-batches", type=_nonnegative, default=0, metavar="N",
                         help="deliver a batch twice N times (it must not be applied twice)")
    durable.add_argument("--stale-batches", type=_nonnegative, default=0, metavar="N",
                         help="offer a restarted shard an old batch, up to N times (it must refuse it)")
    p.add_argument("--quiet", action="store_true", help="print no summary table")
    p.add_argument("--no-report", action="store_true",
                   help="skip report.html and plots/ (xpay report DIR draws them later)")
    p.add_argument("--debug", action="store_true", help="print tracebacks of unexpected errors")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xpay", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", allow_abbrev=False, help="run a workload file through the sharded engine")
    replay.add_argument("--accounts", type=Path, required=True, help="accounts.parquet")
    replay.add_argument("--workload", type=Path, required=True, help="workload.parquet")
    replay.add_argument("--out", type=Path, required=True, help="output folder")
    _engine_options(replay, shards_default=4)
    replay.set_defaults(handler=_replay)
    run = sub.add_parser("run", allow_abbrev=False, help="generate a scenario's workload and run it through the engine")
    _scenario_options(run)
    run.add_argument("--out", type=Path, default=None, help="run folder (default runs/SCENARIO-seedSEED)")
    run.add_argument("--resume", type=Path, default=None, metavar="DIR",
                     help="continue the run in DIR (started with --data-dir or fault injection) from its"
                          " last durable epoch; its scenario and engine settings come from DIR/run.toml")
    run.add_argument("--crash-driver-after", type=_nonnegative, default=None, metavar="N",
                     help="fault injection: the driver process dies after epoch index N (needs a data"
                          " dir); continue with --resume")
    _engine_options(run, shards_default=4)
    run.set_defaults(handler=_run)
    generate = sub.add_parser("generate", allow_abbrev=False, help="write a scenario's accounts.parquet and workload.parquet")
    _scenario_options(generate)
    generate.add_argument("--out", type=Path, required=True, help="folder for the two files")
    generate.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                          help="progress bar on stderr (default: when stderr is a terminal)")
    generate.set_defaults(handler=_generate)
    describe = sub.add_parser("describe", allow_abbrev=False, help="realised statistics of a workload folder")
    describe.add_argument("folder", type=Path, metavar="DIR", help="holds accounts.parquet and workload.parquet")
    describe.add_argument("--json", action="store_true", help="print the statistics as JSON")
    describe.add_argument("--model-seconds-per-sim-second", type=float, default=None, metavar="X",
                          help="the workload's clock for the hourly curve and bursts (default: from"
                               " DIR/workload.toml, written by xpay generate/run, else 1)")
    describe.set_defaults(handler=_describe)
    _sweep_parser(sub)
    _bench_parser(sub)
    from xpay.plan.commands import add_parser as add_plan_parser

    add_plan_parser(sub, count, _shards)
    report = sub.add_parser("report", allow_abbrev=False, help="write DIR/report.html and DIR/plots/*.png for a run folder")
    report.add_argument("folder", type=Path, metavar="DIR", help="a run folder (holds summary.json)")
    report.set_defaults(handler=_report)
    compare = sub.add_parser("compare", allow_abbrev=False, help="two run folders side by side in one report.html")
    compare.add_argument("folder_a", type=Path, metavar="DIR_A", help="a run folder")
    compare.add_argument("folder_b", type=Path, metavar="DIR_B", help="another run folder")
    compare.add_argument("--out", type=Path, default=None,
                         help="folder for report.html and plots/ (default runs/compare-A-vs-B)")
    compare.set_defaults(handler=_compare)
    return parser


def _sweep_parser(sub) -> None:
    sweep = sub.add_parser("sweep", allow_abbrev=False,
                           help="a grid of runs (shards x size x epoch length x seeds, repeats) in one"
                                " Ray session: sweep.parquet, cells.parquet with 95%% CIs, plots")
    sweep.add_argument("--scenario", default="quick", help="scenario name or TOML file (default quick)")
    sweep.add_argument("--shards", type=_shards, nargs="+", default=[1, 2, 4], metavar="K",
                       help="shard counts (default 1 2 4)")
    sweep.add_argument("--users", type=count, nargs="+", default=[None], metavar="N",
                       help="user counts (100k, 1.5M understood; default: the scenario's)")
    sweep.add_argument("--scale", type=float, nargs="+", default=[None], metavar="F",
                       help="scale factors instead of --users")
    sweep.add_argument("--epoch-seconds", type=float, nargs="+", default=[None], metavar="S",
                       help="model seconds per epoch (default: the scenario's)")
    sweep.add_argument("--seeds", type=int, nargs="+", default=[1], metavar="S", help="seeds (default 1)")
    sweep.add_argument("--repeats", type=_positive, default=1, help="runs per cell and seed (default 1)")
    sweep.add_argument("--rate", type=_rate, default=None, metavar="R",
                       help="offer R rows a wall second in every run (open loop)")
    sweep.add_argument("--in-process", action="store_true", help="shards in this process, no Ray")
    sweep.add_argument("--no-strict-serial", action="store_true", help="skip the divergence measurement")
    sweep.add_argument("--no-warm-up", action="store_true", help="record the first run too")
    sweep.add_argument("--out", type=Path, default=RUNS_DIR_DEFAULT / "sweep", help="sweep folder")
    sweep.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar on stderr (default: when stderr is a terminal)")
    sweep.set_defaults(handler=_sweep)


def _bench_parser(sub) -> None:
    bench = sub.add_parser("bench", allow_abbrev=False,
                           help="the engine against its peers on the same rows, the per-epoch"
                                " breakdown, and (--curves) throughput and latency curves")
    bench.add_argument("--size", choices=("smoke", "real"), default="real",
                       help="smoke: seconds; real: 4M accounts, 16M transfers (default)")
    bench.add_argument("--shards", type=_shards, default=4, help="the engine's shard count (default 4)")
    bench.add_argument("--accounts", type=count, default=None, metavar="N", help="user accounts (default: the size's)")
    bench.add_argument("--transfers", type=count, default=None, metavar="N", help="P2P rows (default: the size's)")
    bench.add_argument("--rows-per-epoch", type=count, default=None, metavar="N",
                       help="rows per epoch (default: the size's)")
    bench.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    bench.add_argument("--peers", nargs="*", default=None, metavar="NAME",
                       help="peers to run (default all of xpay.peers.PEERS; none with --peers alone)")
    bench.add_argument("--curves", action="store_true",
                       help="also throughput against shards, epoch size, skew and accounts, and"
                            " latency against offered load (many runs: minutes at smoke size, an"
                            " hour or more at real size)")
    bench.add_argument("--out", type=Path, default=RUNS_DIR_DEFAULT / "bench", help="output folder")
    bench.add_argument("--write-workload", type=Path, default=None, metavar="DIR",
                       help="only write the benchmark's workload to DIR (accounts.parquet,"
                            " workload.parquet), for xpay replay")
    bench.set_defaults(handler=_bench)


def _bench(args) -> int:
    from xpay import bench

    size = bench.SIZES[args.size]
    overrides = {name: getattr(args, name) for name in ("accounts", "transfers", "rows_per_epoch")
                 if getattr(args, name) is not None}
    if overrides:
        from dataclasses import replace

        size = replace(size, **overrides)
    if args.write_workload is not None:
        bench.write_workload(size, args.seed, args.write_workload)
        return 0
    if args.peers:
        from xpay.peers import PEERS

        unknown = sorted(set(args.peers) - set(PEERS))
        if unknown:
            raise InputRefused(f"--peers: unknown {', '.join(unknown)}; known: {', '.join(PEERS)}")
    report = bench.run_bench(size, args.shards, args.seed, args.out, peers=args.peers,
                             curves=args.curves, smoke=args.size == "smoke")
    print(bench.format_table(report))
    _say(f"bench: {args.out} (bench.parquet, bench.json, breakdown.parquet, plots/)")
    if not report["equal_results"]:
        _say("bench: some variants' results differ from the engine's (see 'equal' above)")
        return 1
    return 0


def _sweep(args) -> int:
    from xpay.api import sweep

    try:
        done = sweep(args.scenario, shards=args.shards, users=args.users, scale=args.scale,
                     epoch_seconds=args.epoch_seconds, seeds=args.seeds, repeats=args.repeats,
                     out=args.out, rate=args.rate, in_process=args.in_process,
                     strict_serial=not args.no_strict_serial, warm_up=not args.no_warm_up,
                     progress=args.progress)
    except ValueError as error:
        raise InputRefused(str(error)) from None
    columns = ["shards", "users", "scale", "epoch_seconds", "runs", "rows_per_s_mean", "rows_per_s_ci95"]
    print(done.cells[columns].to_string(index=False))
    _say(f"sweep: {len(done.runs)} runs -> {done.folder} (sweep.parquet, cells.parquet, plots/)")
    return 0


def _scenario_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default="quick",
                   help="scenario name: quick, or NAME of workloads/scenarios/NAME.toml (default quick)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    size = p.add_argument_group("resizing (any scenario; its mix and curves are kept)")
    size.add_argument("--users", type=count, default=None, metavar="N",
                      help="user count (>= 2; 100k, 1.5M and 2G are understood); the arrival rate"
                           " scales with it, so each user pays as often as in the scenario")
    size.add_argument("--scale", type=float, default=None, metavar="F",
                      help="users and arrival rate times F (instead of --users)")
    size.add_argument("--days", type=int, default=None, metavar="D",
                      help="modelled days (1..3650); bursts, holidays and a crash past the last"
                           " day are dropped")
    size.add_argument("--epochs", type=count, default=None, metavar="E",
                      help="traffic epochs over the days (each days*86400/E model seconds;"
                           " E >= days)")
    size.add_argument("--epoch-seconds", type=float, default=None, metavar="S",
                      help="model seconds per traffic epoch, 1..86400 (instead of --epochs)")


def _resize(args):
    from workloads.scenario import Resize

    return Resize(users=args.users, scale=args.scale, days=args.days, epochs=args.epochs,
                  epoch_seconds=args.epoch_seconds)


def _options(args):
    from xpay.runner import RunOptions

    if args.snapshot_every < 2:
        raise InputRefused(f"--snapshot-every(={args.snapshot_every}) must be >= 2 epochs")
    crash = getattr(args, "crash_driver_after", None)
    faulty = args.kill_shards or args.delay_batches or args.duplicate_batches or args.stale_batches
    if crash is not None and args.data_dir is None and not faulty:
        raise InputRefused("--crash-driver-after needs --data-dir (a crashed driver resumes from it)")
    return RunOptions(crash_driver_after=crash, shards=args.shards, window_epochs=args.window_epochs, address=args.address,
                      in_process=args.in_process, strict_serial=not args.no_strict_serial,
                      progress=args.progress, data_dir=args.data_dir, fsync=args.fsync,
                      snapshot_every_epochs=args.snapshot_every, kill_shards=args.kill_shards,
                      fault_seed=args.fault_seed, delay_batches=args.delay_batches,
                      duplicate_batches=args.duplicate_batches, stale_batches=args.stale_batches,
                      rate=args.rate, authenticated=not args.unauthenticated)


def _replay(args) -> int:
    from xpay.app import replay_files

    summary = replay_files(args.accounts, args.workload, _options(args), args.out)
    return _finish(summary, args.out, args)


def _run(args) -> int:
    from xpay.app import run_scenario

    if args.resume is not None:
        return _resume(args)
    summary, out = run_scenario(args.scenario, args.seed, _resize(args), _options(args), args.out,
                                args.fsync, args.snapshot_every)
    return _finish(summary, out, args)


def _resume(args) -> int:
    from sim import files
    from xpay.app import check_ray
    from xpay.run_folder import RUN_TOML_KEYS, read_run_toml
    from xpay.runner import replay

    folder = args.resume
    saved = read_run_toml(folder)
    check_ray(_options(args))
    for key in RUN_TOML_KEYS:
        setattr(args, key, saved[key])
    started = time.perf_counter()
    accounts = files.read_accounts(folder / "accounts.parquet")
    transfers = files.WorkloadReader(folder / "workload.parquet")
    configuration = {"command": "run --resume", "scenario": args.scenario, "seed": args.seed}
    print(f"xpay run --resume: {folder}: {len(accounts):,} accounts, {len(transfers):,} rows", file=sys.stderr)
    summary = replay(accounts, transfers, folder, _options(args), time.perf_counter() - started,
                     configuration, resume=True)
    return _finish(summary, folder, args)


def _generate(args) -> int:
    """Stream the scenario's epochs straight to workload.parquet: memory holds one epoch (and
    the accounts), so scenarios larger than memory can be written."""
    from xpay.app import generate_workload

    _, accounts, rows, _, seconds = generate_workload(args.out, args.scenario, args.seed, _resize(args),
                                                       args.progress, for_run=False)
    print(f"xpay generate: {args.scenario}, seed {args.seed}: {len(accounts):,} accounts,"
          f" {rows:,} rows in {seconds:.1f} s -> {args.out}", file=sys.stderr)
    return 0


def _describe(args) -> int:
    import json

    from workloads.describe import describe_dir, format_description

    description = describe_dir(args.folder, args.model_seconds_per_sim_second)
    print(json.dumps(description, indent=2) if args.json else format_description(description))
    return 0


def _report(args) -> int:
    from xpay.html_report import write_report

    with _refusing_missing_files():
        _say(f"report: {write_report(args.folder)}")
    return 0


def _compare(args) -> int:
    from xpay.html_report import write_comparison

    out = args.out or RUNS_DIR_DEFAULT / f"compare-{args.folder_a.name}-vs-{args.folder_b.name}"
    with _refusing_missing_files():
        _say(f"comparison: {write_comparison(args.folder_a, args.folder_b, out)}")
    return 0


@contextlib.contextmanager
def _refusing_missing_files():
    """A wrong path given on the command line is a refused input (exit 2), not an error."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError) as error:
        raise InputRefused(str(error)) from None


def _finish(summary: dict, out: Path, args) -> int:
    from xpay.report import format_table
    from xpay.runner import all_invariants_held

    if not args.no_report:
        from xpay.html_report import write_report

        write_report(out)
    if not args.quiet:
        print(format_table(summary))
        print(f"{'run folder':<24}  {out} (results.parquet, balances.parquet, summary.json"
              f"{'' if args.no_report else ', report.html'})")
    if not all_invariants_held(summary):
        first = summary["invariant_violations"][0]["message"] if summary["invariant_violations"] else "see summary.json"
        _say(f"an invariant broke: {first}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
