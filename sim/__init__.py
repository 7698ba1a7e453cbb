"""xpay-sim's ledger: the contract's types and files, the reference ledger, kernels and engine.

The lowest layer: nothing here imports ``workloads``, ``actors`` or ``xpay``.

Importing the package first points numba's on-disk cache at a folder keyed on every kernel
module (sim.numba_cache says why); ``workloads`` and ``actors`` import that module first too.
"""

from __future__ import annotations

import sim.numba_cache  # noqa: F401  (first: sets numba's cache folder before any kernel)
