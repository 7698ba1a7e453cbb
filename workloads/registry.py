"""Scenario names to workload sources: the one resolver behind `xpay run`, `xpay generate`, the
generator benchmark and the bank test.

A name is a scenario file ``workloads/scenarios/NAME.toml`` (``quick`` is quick.toml), or any
path ending in ``.toml``; anything else is refused (`InputRefused`, exit status 2) with the
names that are available. `Resize` overrides (users or a scale factor, days, epochs or epoch
length) apply to every scenario and keep its mix and curves (`workloads.scenario.resize`).
Every source is seeded from `seed` alone (one `numpy.random.Generator`).
"""

from __future__ import annotations

import numpy as np

from workloads.model import ScenarioWorkload
from workloads.scenario import Resize, load_scenario, resize

QUICK = "quick"


def build_workload(name: str, seed: int, size: Resize | None = None) -> ScenarioWorkload:
    """The workload source of scenario `name`, resized by `size`, seeded with `seed`."""
    scenario = load_scenario(name)
    if size is not None and not size.is_empty():
        scenario = resize(scenario, size)
    return ScenarioWorkload(scenario, np.random.default_rng(seed))
