"""Workload generators: accounts and transfer rows for the ledger, from seeded generators.

Importing the package first points numba's on-disk cache at a folder keyed on every kernel
module (sim.numba_cache), so a process importing only a workload module (workloads.zipf
inlines a helper of workloads.normals) never loads a stale kernel.
"""

import sim.numba_cache  # noqa: F401  (first: sets numba's cache folder before any kernel)
