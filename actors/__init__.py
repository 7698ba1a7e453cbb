"""Ray actors hosting the ledger's shards, and their transport.

Importing the package first points numba's on-disk cache at a folder keyed on every kernel
module (sim.numba_cache).
"""

import sim.numba_cache  # noqa: F401  (first: sets numba's cache folder before any kernel)
