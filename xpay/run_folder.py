"""The run folder's own formats: ``run.toml``, what ``xpay run --resume DIR`` needs to continue.

(The contract's files, results/balances/accounts/workload Parquet, are `sim.files`; the
summary, audit, epochs and latency files are written by `xpay.runner`; the workload's clock,
``workload.toml``, by `workloads.describe`.)
"""

from __future__ import annotations

import json
from pathlib import Path

from sim.errors import InputRefused

RUN_TOML = "run.toml"
# run.toml: what `xpay run --resume DIR` needs to continue a run: key -> (type, required)
RUN_TOML_KEYS = {
    "scenario": (str, True), "seed": (int, True), "users": (int, False), "scale": (float, False),
    "days": (int, False), "epochs": (int, False), "epoch_seconds": (float, False),
    "shards": (int, True), "window_epochs": (int, True),
    "data_dir": (str, False), "fsync": (str, True), "snapshot_every": (int, True),
}


def write_run_toml(out: Path, values: dict) -> None:
    """The run's settings (RUN_TOML_KEYS; None values are left out), for --resume: written
    after the workload files are complete."""
    unknown = set(values) - set(RUN_TOML_KEYS)
    assert not unknown, f"run.toml has no keys {sorted(unknown)}"
    lines = ["# written by xpay run; read by xpay run --resume"]
    for key, value in values.items():
        if value is not None:
            lines.append(f"{key} = {json.dumps(value)}")
    tmp = out / (RUN_TOML + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out / RUN_TOML)


def read_run_toml(folder: Path) -> dict:
    """run.toml's values, strictly: an unknown, missing or mistyped key is refused."""
    import tomllib

    path = folder / RUN_TOML
    if not path.exists():
        raise InputRefused(f"{path}: no such file; --resume continues a folder written by xpay run")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise InputRefused(f"{path}: not valid TOML ({error})") from None
    for key in values:
        if key not in RUN_TOML_KEYS:
            raise InputRefused(f"{path}: unknown key {key!r}")
    for key, (kind, required) in RUN_TOML_KEYS.items():
        if key not in values:
            if required:
                raise InputRefused(f"{path}: key {key!r} is missing")
            values[key] = None
        elif kind is float and isinstance(values[key], int) and not isinstance(values[key], bool):
            values[key] = float(values[key])
        elif not isinstance(values[key], kind) or isinstance(values[key], bool):
            raise InputRefused(f"{path}: key {key!r} must be a {kind.__name__}")
    if values["data_dir"] is None:
        raise InputRefused(f"{path}: the run had no data dir (--data-dir), so there is nothing to resume from")
    return values
