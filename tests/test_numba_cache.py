"""The numba cache folder is keyed on every kernel module, and every package points numba at it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from sim import numba_cache

ROOT = Path(__file__).resolve().parent.parent


def _copy_tree(target: Path) -> Path:
    """A copy of the kernel packages' sources under target (what the key reads)."""
    for package in numba_cache.KERNEL_PACKAGES:
        shutil.copytree(ROOT / package, target / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.toml"))
    return target


def test_key_of_a_copy_equals_the_trees_key(tmp_path):
    assert numba_cache.cache_key(_copy_tree(tmp_path)) == numba_cache.cache_key()


def test_editing_an_inlined_workload_helper_changes_the_key(tmp_path):
    """workloads/zipf.py inlines normals.stream_bits: editing it must move the cache folder."""
    root = _copy_tree(tmp_path)
    before = numba_cache.cache_key(root)
    normals = root / "workloads" / "normals.py"
    source = normals.read_text()
    assert "def stream_bits(key, value, draw):" in source
    normals.write_text(source.replace("def stream_bits(key, value, draw):",
                                      "def stream_bits(key, value, draw):\n    draw = draw + 0"))
    assert numba_cache.cache_key(root) != before


def test_a_new_kernel_module_changes_the_key_and_driver_edits_do_not(tmp_path):
    root = _copy_tree(tmp_path)
    before = numba_cache.cache_key(root)
    engine = root / "sim" / "engine.py"
    assert b"numba" not in engine.read_bytes()
    engine.write_text(engine.read_text() + "\n# a driver-side edit\n")
    assert numba_cache.cache_key(root) == before
    (root / "actors" / "new_kernels.py").write_text("import numba\n")
    assert numba_cache.cache_key(root) != before


def test_a_process_importing_only_workloads_zipf_uses_the_keyed_folder(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environment.pop("XPAY_NUMBA_CACHE_KEYED", None)
    environment["XDG_CACHE_HOME"] = str(tmp_path)
    environment["PYTHONPATH"] = str(ROOT)
    probe = ("import workloads.zipf, numba.core.config as c, os; "
             "print(c.CACHE_DIR); print(os.environ['NUMBA_CACHE_DIR'])")
    done = subprocess.run([sys.executable, "-c", probe], env=environment, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=True)
    expected = str(tmp_path / "xpay-sim" / "numba" / numba_cache.cache_key())
    assert done.stdout.split() == [expected, expected]
