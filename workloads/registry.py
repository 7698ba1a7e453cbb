"""Scenario names to workload sources: the one resolver behind `xpay run`, `xpay generate` and
the generator benchmark.

A name resolves, in this order:

1. ``quick`` with size overrides (user_count, epoch_count, rows_per_epoch): the built-in
   quickstart generator (`workloads.quickstart`) at those sizes. Scenario files are not
   resized; the overrides exist for small runs and tests;
2. a scenario file ``workloads/scenarios/NAME.toml``, or any path ending in ``.toml``, when
   the scenario model (`workloads.scenario.load_scenario`, `workloads.model.ScenarioWorkload`)
   is installed;
3. ``quick`` without overrides and without a ``quick.toml``: the quickstart generator at its
   default sizes.

Any other name is refused (`InputRefused`, exit status 2) with the names that are available.
Every source is seeded from `seed` alone (one `numpy.random.Generator`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np

from sim.errors import InputRefused
from workloads.base import WorkloadSource

QUICK = "quick"
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
QUICK_OVERRIDE_FIELDS = ("user_count", "epoch_count", "rows_per_epoch")


def _scenario_model():
    """The modules `workloads.scenario` and `workloads.model`, or None until both exist."""
    modules = []
    for name in ("workloads.scenario", "workloads.model"):
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as error:
            if error.name == name:
                return None
            raise  # a module the scenario model itself needs is missing
    return tuple(modules)


def scenario_file_names() -> list[str]:
    """Names of the scenario files the scenario model can load (none without the model)."""
    modules = _scenario_model()
    if modules is None:
        return []
    return sorted(modules[0].scenario_names())


def scenario_names() -> list[str]:
    """Every name `build_workload` accepts."""
    return sorted(set(scenario_file_names()) | {QUICK})


def build_workload(name: str, seed: int, quick_overrides: dict | None = None) -> WorkloadSource:
    """The workload source of scenario `name`, seeded with `seed` (see the module docstring)."""
    overrides = {k: v for k, v in (quick_overrides or {}).items() if v is not None}
    unknown = set(overrides) - set(QUICK_OVERRIDE_FIELDS)
    assert not unknown, f"unknown quick overrides {sorted(unknown)}"
    rng = np.random.default_rng(seed)
    if overrides:
        if name != QUICK:
            fields = ", ".join(sorted(overrides))
            raise InputRefused(f"scenario {name}: size overrides ({fields}) apply to scenario"
                               f" {QUICK} only (the built-in quickstart generator)")
        return _quickstart(overrides, rng)
    if name in scenario_file_names() or (name.endswith(".toml") and _scenario_model()):
        scenario, model = _scenario_model()
        return model.ScenarioWorkload(scenario.load_scenario(name), rng)
    if name == QUICK:
        return _quickstart({}, rng)
    raise InputRefused(f"scenario {name!r}: unknown (available: {', '.join(scenario_names())})")


def _quickstart(overrides: dict, rng: np.random.Generator) -> WorkloadSource:
    from workloads.quickstart import QuickstartConfig, QuickstartWorkload

    try:
        config = QuickstartConfig(**overrides)
    except ValueError as error:
        raise InputRefused(f"scenario {QUICK}: {error}") from None
    return QuickstartWorkload(config, rng)


def workload_configuration(source: WorkloadSource) -> dict:
    """What configured `source`, as JSON-safe data (for summary.json and benchmark reports)."""
    out: dict = {"source": getattr(source, "name", type(source).__name__)}
    for attribute in ("config", "scenario"):
        value = getattr(source, attribute, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[attribute] = json.loads(json.dumps(dataclasses.asdict(value), default=str))
    return out
