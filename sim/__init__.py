"""xpay-sim's ledger: the contract's types and files, the reference ledger, kernels and engine.

The lowest layer: nothing here imports ``workloads``, ``actors`` or ``xpay``.

Importing the package points numba's on-disk cache at a folder named after a hash of this
package's kernel sources (every module that mentions numba). Numba invalidates a cached kernel
only when its own file changes, not when an inlined helper in another module does; keying the
folder on every kernel module makes a stale kernel impossible (every process, Ray workers
included, computes the same folder), while edits to the driver-side modules (engine, runner,
command line) leave the compiled kernels in place.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def _numba_cache_dir() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        source = path.read_bytes()
        if b"numba" not in source:
            continue
        digest.update(path.name.encode())
        digest.update(source)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return str(base / "xpay-sim" / "numba" / digest.hexdigest()[:16])


def _point_numba_cache() -> None:
    if os.environ.get("XPAY_NUMBA_CACHE_KEYED", "1") == "0":
        return
    folder = _numba_cache_dir()
    os.environ["NUMBA_CACHE_DIR"] = folder
    try:
        import numba.core.config as numba_config
    except ImportError:  # numba not installed: nothing to point
        return
    numba_config.CACHE_DIR = folder


_point_numba_cache()
