"""The Python API: what ``xpay run``, ``xpay replay`` and ``xpay sweep`` do, as functions that
return objects to analyse (pandas tables, figures) instead of printing.

    import xpay
    run = xpay.run(scenario="quick", users=100_000, shards=4, seed=3, out="runs/q")
    run.summary["rows_per_s"], run.results().status.value_counts(), run.report()

Every call in one process shares one Ray session (started by the first call that needs it,
left running for the next; `shutdown()` stops it). What is refused, and how:

- an unknown scenario, a nonsensical size (`users` < 2, `users` with `scale`, `epochs` with
  `epoch_seconds`, ...), a scenario or workload too big for this machine's memory, a bad
  input file: `sim.errors.InputRefused`, whose message names the value, file, row and rule;
- a `RAY_AUTH_MODE` other than token without ``unauthenticated=True``, an `address` that
  accepts no connection: `sim.errors.XpayError` (or InputRefused), before any work;
- a broken invariant stops the run: `sim.errors.InvariantViolation`; a balance that would
  pass 2**63-1: `sim.errors.BalanceOverflowError`; the run folder then holds a summary.json
  with ``completed: false`` and no results.
"""

from __future__ import annotations

from pathlib import Path

from sim.constants import IDEMPOTENCY_WINDOW_EPOCHS
from xpay.runs import Run, load_run


def _options(shards: int, rate: float | None, in_process: bool, strict_serial: bool,
             window_epochs: int, address: str | None, unauthenticated: bool, progress: bool | None):
    from sim.engine import check_shard_count
    from xpay.runner import RunOptions

    check_shard_count(shards)
    if rate is not None and not rate > 0:
        raise ValueError(f"rate(={rate}) must be > 0 rows per second, or None (as fast as possible)")
    return RunOptions(shards=shards, rate=rate, in_process=in_process, strict_serial=strict_serial,
                      window_epochs=window_epochs, address=address,
                      authenticated=not unauthenticated, progress=progress)


def _finish(out: Path, report: bool) -> Run:
    if report:
        from xpay.html_report import write_report

        write_report(out)
    return load_run(out)


def run(scenario: str = "quick", *, seed: int = 1, users: int | None = None,
        scale: float | None = None, days: int | None = None, epochs: int | None = None,
        epoch_seconds: float | None = None, shards: int = 4, out=None, rate: float | None = None,
        in_process: bool = False, strict_serial: bool = True,
        window_epochs: int = IDEMPOTENCY_WINDOW_EPOCHS, address: str | None = None,
        unauthenticated: bool = False, progress: bool | None = None, report: bool = True) -> Run:
    """Generate `scenario` (resized by users or scale, days, epochs or epoch_seconds; its mix
    and curves kept), run it through `shards` shards and return the run folder as a `Run`.

    out: the run folder (default runs/SCENARIO-seedSEED); rate: offer R rows a wall second,
    open loop (payment latency), else as fast as possible; in_process: every shard in this
    process, no Ray; report: draw report.html and plots/ into the folder.
    """
    from workloads.scenario import Resize
    from xpay.app import run_scenario

    size = Resize(users=users, scale=scale, days=days, epochs=epochs, epoch_seconds=epoch_seconds)
    options = _options(shards, rate, in_process, strict_serial, window_epochs, address,
                       unauthenticated, progress)
    _, folder = run_scenario(scenario, seed, size, options, None if out is None else Path(out))
    return _finish(folder, report)


def replay(accounts, workload, *, out, shards: int = 4, rate: float | None = None,
           in_process: bool = False, strict_serial: bool = True,
           window_epochs: int = IDEMPOTENCY_WINDOW_EPOCHS, address: str | None = None,
           unauthenticated: bool = False, progress: bool | None = None, report: bool = True) -> Run:
    """Run accounts.parquet and workload.parquet (any spec-conforming files) through the
    engine into `out`; the run folder records the input paths, so `Run.workload()` and
    `Run.accounts()` read them where they are."""
    from xpay.app import replay_files

    options = _options(shards, rate, in_process, strict_serial, window_epochs, address,
                       unauthenticated, progress)
    replay_files(Path(accounts), Path(workload), options, Path(out))
    return _finish(Path(out), report)


def sweep(scenario: str = "quick", *, shards=(1, 2, 4), users=(None,), scale=(None,),
          epoch_seconds=(None,), seeds=(1,), repeats: int = 1, out="runs/sweep",
          rate: float | None = None, in_process: bool = False, strict_serial: bool = True,
          warm_up: bool = True, progress: bool | None = None):
    """Every combination of shards x users (or scale) x epoch_seconds, for each seed, `repeats`
    times, after one discarded warm-up run; returns a `xpay.sweeps.Sweep` (runs and per-cell
    statistics as pandas, the folder). The workload of a size, epoch length and seed is
    generated once and replayed at every shard count."""
    from xpay.sweeps import Grid, execute

    grid = Grid(scenario=scenario, shards=tuple(shards), users=tuple(users), scale=tuple(scale),
                epoch_seconds=tuple(epoch_seconds), seeds=tuple(seeds), repeats=repeats, rate=rate,
                in_process=in_process, warm_up=warm_up, options={"strict_serial": strict_serial})
    return execute(grid, Path(out), progress)


def plain_workload(out, *, accounts: int, transfers: int, rows_per_epoch: int = 200_000,
                   zipf: float = 1.2, seed: int = 1) -> tuple[Path, Path]:
    """Write a plain Zipf P2P workload (funded users, then P2P rows whose senders and receivers
    follow Zipf(`zipf`); 0 is uniform) as OUT/accounts.parquet and OUT/workload.parquet, for
    `replay`: the engine's core path without the scenario model's kinds. Streams epoch by
    epoch; returns the two paths."""
    import numpy as np

    from sim import files
    from workloads.plain import PlainP2P

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = PlainP2P(accounts, transfers, rows_per_epoch, zipf, np.random.default_rng(seed))
    files.write_accounts(out / "accounts.parquet", source.accounts())
    with files.WorkloadWriter(out / "workload.parquet") as writer:
        for rows in source.epochs():
            writer.write(rows)
    return out / "accounts.parquet", out / "workload.parquet"


def shutdown() -> None:
    """Stop the Ray session the calls above started (a new call starts another)."""
    from actors.ray_hosts import stop_ray

    stop_ray()
