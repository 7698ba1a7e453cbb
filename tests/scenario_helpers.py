"""Helpers shared by the scenario tests: small variants of shipped scenarios, generated."""

from __future__ import annotations

import numpy as np

from workloads.base import materialize
from workloads.model import ScenarioWorkload
from workloads.scenario import Scenario, load_scenario

SMALL_USERS = 20_000
SMALL_RATE_PER_S = 2.0


def small(name: str, **sections) -> Scenario:
    """A shipped scenario shrunk to 20k users and 2 arrivals per model second."""
    base = {"population": {"users": SMALL_USERS}, "rate": {"mean_per_s": SMALL_RATE_PER_S},
            "time": {"funding_rows_per_epoch": 50_000}}
    for key, values in sections.items():
        base[key] = {**base.get(key, {}), **values}
    return load_scenario(name).replace(**base)


def generate(scenario: Scenario, seed: int):
    """(workload, accounts, transfers) of `scenario` at `seed`, materialised."""
    workload = ScenarioWorkload(scenario, np.random.default_rng(seed))
    accounts, transfers = materialize(workload)
    return workload, accounts, transfers


def traffic(workload: ScenarioWorkload, transfers) -> np.ndarray:
    """The rows of the traffic epochs (after the funding epochs)."""
    return transfers.epoch >= workload.funding_epoch_count
