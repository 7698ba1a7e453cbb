"""Progress a person can see: a bar for long loops, a line for each slow phase.

`show(option)` decides once per run: an explicit ``--progress/--no-progress`` wins, else a
bar when stderr is a terminal or the code runs in a Jupyter kernel (where `tqdm.auto` draws
a widget). `phase("starting Ray")` prints ``xpay: starting Ray ...`` and, when the phase
ends, ``done in 6.1 s``, so the seconds before the first epoch and after the last one are
never silent.
"""

from __future__ import annotations

import contextlib
import sys
import time


def in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        return type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except AttributeError:
        return False


def show(option: bool | None) -> bool:
    if option is not None:
        return option
    return sys.stderr.isatty() or in_notebook()


def bar(**kwargs):
    """A tqdm bar on stderr (a widget in Jupyter)."""
    from tqdm.auto import tqdm

    return tqdm(file=sys.stderr, **kwargs)


@contextlib.contextmanager
def phase(name: str, visible: bool):
    started = time.perf_counter()
    if visible:
        print(f"xpay: {name} ...", end="", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        if visible:
            print(f" done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
