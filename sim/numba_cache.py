"""Where numba keeps compiled kernels: a folder named after a hash of every kernel module.

Numba invalidates a cached kernel only when its own file changes, not when a helper it
inlined from another module does (numba PRs 8396 and 9563, unmerged): `workloads/zipf.py`
inlines `_bits` from `workloads/normals.py`, the serial ledger inlines `sim/tables.py`. So
the folder is keyed on the sources of every module, in every package that compiles kernels
(KERNEL_PACKAGES), that mentions numba: an edit to any of them moves every process, Ray
workers included, to a fresh folder, while edits to driver-side modules (engine, runner,
command line) leave the compiled kernels in place. Modules are found by glob, so a new
kernel module is covered without being listed.

`sim`, `workloads` and `actors` import this module first, so a process that imports only
`workloads.zipf` is redirected too. Reading the sibling packages' files by path is not an
import (sim imports nothing above it). XPAY_NUMBA_CACHE_KEYED=0 leaves numba's own setting.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

KERNEL_PACKAGES = ("sim", "workloads", "actors")
KEY_HEX_DIGITS = 16
_ROOT = Path(__file__).resolve().parent.parent  # the folder holding the packages


def kernel_modules(root: Path = _ROOT) -> list[Path]:
    """Every .py file under the kernel packages that mentions numba, in a fixed order."""
    found = []
    for package in KERNEL_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if b"numba" in path.read_bytes():
                found.append(path)
    return found


def cache_key(root: Path = _ROOT) -> str:
    """Hash of the kernel modules' paths (relative to root) and sources."""
    digest = hashlib.sha256()
    for path in kernel_modules(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:KEY_HEX_DIGITS]


def cache_folder(root: Path = _ROOT) -> str:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return str(base / "xpay-sim" / "numba" / cache_key(root))


def point_numba_cache() -> None:
    """Set NUMBA_CACHE_DIR (for child processes) and numba's live setting to cache_folder()."""
    if os.environ.get("XPAY_NUMBA_CACHE_KEYED", "1") == "0":
        return
    folder = cache_folder()
    os.environ["NUMBA_CACHE_DIR"] = folder
    try:
        import numba.core.config as numba_config
    except ImportError:  # numba not installed: nothing to point
        return
    numba_config.CACHE_DIR = folder


point_numba_cache()
