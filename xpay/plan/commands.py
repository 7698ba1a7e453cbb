"""`xpay plan`: calibrate, predict, validate, and plan a cluster for a scenario's peak."""

from __future__ import annotations

import json
from pathlib import Path



def add_parser(sub, count, shards_type) -> None:
    plan = sub.add_parser(
        "plan", allow_abbrev=False,
        help="capacity planning: the smallest cluster for a scenario's peak (calibrate, predict,"
             " validate as subcommands)",
        description="Without a subcommand: the smallest cluster (shards, nodes) that carries a"
                    " scenario's peak with a p99 target, memory included.")
    plan.add_argument("--scenario", default="x-scale-day", help="scenario name or TOML (default x-scale-day)")
    plan.add_argument("--peak", default="15x", help="peak load: a multiple of the mean rate (15x) or rows/s")
    plan.add_argument("--p99-ms", type=float, default=100.0, help="payment latency p99 target (default 100)")
    plan.add_argument("--epoch-ms", type=float, default=20.0,
                      help="wall milliseconds of arrivals per epoch at the peak (default 20)")
    plan.add_argument("--window-epochs", type=count, default=100, help="idempotency window (default 100)")
    plan.add_argument("--node-cores", type=count, default=16, help="cores per node (default 16)")
    plan.add_argument("--node-memory-gb", type=float, default=64.0, help="memory per node (default 64)")
    plan.add_argument("--imbalance", type=float, default=None,
                      help="busiest shard's rows over the mean (default: measured on a 100k-user,"
                           " one-day slice of the scenario, at 16 shards)")
    plan.add_argument("--calibration", type=Path, default=None, help="calibration JSON (default: the shipped one)")
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.set_defaults(handler=_plan)
    actions = plan.add_subparsers(dest="action", metavar="{calibrate,predict,validate}")

    calibrate = actions.add_parser("calibrate", allow_abbrev=False, help="fit the model to measured runs")
    calibrate.add_argument("runs", nargs="+", type=Path, help="run folders or xpay sweep folders")
    calibrate.add_argument("--out", type=Path, required=True, help="calibration JSON to write")
    calibrate.set_defaults(handler=_calibrate)

    predict = actions.add_parser("predict", allow_abbrev=False, help="predict one configuration")
    predict.add_argument("--workload", required=True,
                         help="workload.parquet (its accounts.parquet beside it), or a scenario name")
    predict.add_argument("--accounts", type=count, default=None, help="accounts (default: the workload's)")
    predict.add_argument("--users", type=count, default=None, help="resize a scenario to N users")
    predict.add_argument("--epoch-seconds", type=float, default=None, help="a scenario's model seconds per epoch")
    predict.add_argument("--seed", type=int, default=1, help="a scenario's seed (default 1)")
    predict.add_argument("--shards", type=shards_type, required=True)
    predict.add_argument("--nodes", type=count, default=1)
    predict.add_argument("--node-cores", type=count, default=None, help="default: the calibration machine's")
    predict.add_argument("--rate", type=float, default=None, help="offered rows/s, open loop")
    predict.add_argument("--calibration", type=Path, default=None)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=_predict)

    validate = actions.add_parser("validate", allow_abbrev=False,
                                  help="predictions against measured runs: a table and a plot")
    validate.add_argument("runs", nargs="+", type=Path, help="run folders or xpay sweep folders")
    validate.add_argument("--calibration", type=Path, default=None)
    validate.add_argument("--out", type=Path, default=Path("runs/plan-validate"),
                          help="folder for validation.parquet, validation.md and validation.png")
    validate.set_defaults(handler=_validate)


def _calibrate(args) -> int:
    from xpay.plan.calibration import fit

    calibration = fit(args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    calibration.save(args.out)
    print(f"calibration: {len(calibration.runs)} runs -> {args.out}; in-sample epoch time error"
          f" at most {calibration.fit_error['max_abs']:.1%}")
    return 0


def _predict(args) -> int:
    from workloads.scenario import Resize
    from xpay.plan.model import Cluster
    from xpay.plan.planning import check_in_range, load_calibration, predict, workload_shape
    from xpay.runner import json_default

    calibration = load_calibration(args.calibration)
    resize = Resize(users=args.users, epoch_seconds=args.epoch_seconds)
    shape, accounts = workload_shape(args.workload, args.shards, args.seed, resize)
    accounts = args.accounts or accounts
    cluster = Cluster(args.shards, nodes=args.nodes, node_cores=args.node_cores)
    result = predict(calibration, shape, cluster, rate=args.rate).as_dict()
    result.update(shards=args.shards, nodes=args.nodes, accounts=accounts,
                  shard_imbalance=shape.imbalance(), warnings=check_in_range(calibration, accounts))
    if args.json:
        print(json.dumps(result, default=json_default))
        return 0
    print(f"predicted: {result['rows_per_s']:,.0f} rows/s over {result['rows']:,} rows in"
          f" {result['epochs']} epochs ({args.shards} shards, {args.nodes} node(s))")
    if result["latency_ms_p99"] is not None:
        print(f"payment latency at {args.rate:,.0f} rows/s offered: p50 {result['latency_ms_p50']:.1f} ms,"
              f" p99 {result['latency_ms_p99']:.1f} ms")
    print(f"utilisation: driver {result['driver_utilisation']:.0%}, shards "
          + " ".join(f"{u:.0%}" for u in result["shard_utilisation"]))
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    return 0


def _validate(args) -> int:
    from xpay.plan.planning import load_calibration, plot_validation, validate

    calibration = load_calibration(args.calibration)
    table = validate(calibration, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out / "validation.parquet", index=False)
    shown = table.copy()
    for column in ("rows_per_epoch", "rate", "measured_rows_per_s", "predicted_rows_per_s",
                   "measured_p99_ms", "predicted_p99_ms"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "" if v is None or v != v else f"{v:,.0f}")
    shown["two_phase_share"] = shown["two_phase_share"].map(lambda v: f"{v:.0%}")
    for column in ("throughput_error", "p99_error"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "" if v != v else f"{v:+.1%}")
    (args.out / "validation.md").write_text(_markdown(shown))
    plot_validation(table, args.out / "validation.png")
    print(shown.to_string(index=False))
    unseen = table[~table["in_calibration"]]
    closed = unseen[unseen["rate"].isna()]  # open loop below capacity, rows/s is the rate offered
    within = (closed["throughput_error"].abs() <= 0.10).sum()
    print(f"\nthroughput within 10% on {within} of {len(closed)} closed-loop runs the calibration never saw")
    if "p99_error" in unseen:
        lat = unseen.dropna(subset=["p99_error"])
        print(f"p99 within 20% on {(lat['p99_error'].abs() <= 0.20).sum()} of {len(lat)} open-loop runs")
    print(f"-> {args.out}/validation.parquet, validation.md, validation.png")
    return 0


def _markdown(table) -> str:
    """A pandas table as a Markdown table (no tabulate dependency)."""
    cells = [[str(v) for v in table.columns]] + [["" if v is None else str(v) for v in row]
                                               for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines) + "\n"


def _plan(args) -> int:
    from xpay.plan.planning import load_calibration, plan_scenario
    from xpay.runner import json_default

    out = plan_scenario(load_calibration(args.calibration), args.scenario, args.peak, args.p99_ms,
                        epoch_ms=args.epoch_ms, window_epochs=args.window_epochs,
                        node_cores=args.node_cores, node_memory_gb=args.node_memory_gb,
                        imbalance=args.imbalance)
    if args.json:
        print(json.dumps(out, default=json_default))
        return 0
    print(f"{args.scenario}: {out['accounts']:,} accounts, mean {out['mean_rows_per_s']:,.0f} rows/s,"
          f" peak {out['peak_rows_per_s']:,.0f} rows/s, p99 <= {args.p99_ms:g} ms,"
          f" {out['rows_per_epoch']:,} rows an epoch")
    best = out["answer"]
    if best is None:
        print(f"no cluster found: {out['why']}")
    else:
        print(f"answer: {best['shards']} shards on {best['nodes']} node(s) of {args.node_cores} cores:"
              f" capacity {best['capacity_rows_per_s']:,.0f} rows/s, p99 {best['p99_ms']:.1f} ms at the peak,"
              f" {best['memory_gb_per_node']:.1f} GB of shard state a node;"
              f" saturates first: {out['bottleneck']}")
        print(f"hot accounts: in a {out['slice_users']:,}-user slice the hottest account is on"
              f" {out['hot_accounts_in_a_slice'][0]['share_of_sides']:.1%} of account sides; at 16"
              f" shards its shard gets {out['shard_imbalance']:.2f}x the mean rows")
        print("envelope (predicted capacity, rows/s):")
        print(f"  {'shards':>6}  {'hardware':<22} {'as the keys fall':>16} {'hot account split':>18}"
              f" {'driver':>7} {'busiest shard':>14}")
        for e in out["envelope"]:
            print(f"  {e['quantity']:>6}  {e['hardware']:<22} {e['rows_per_s']:>16,.0f}"
                  f" {e['rows_per_s_hot_account_split']:>18,.0f} {e['driver_utilisation']:>7.0%}"
                  f" {e['busiest_shard_utilisation']:>14.0%}")
    for line in out["assumptions"]:
        print(f"  assumption: {line}")
    for line in out["warnings"]:
        print(f"  warning: {line}")
    return 0 if best is not None else 1
