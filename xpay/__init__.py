"""xpay-sim's application: the ``xpay`` command, one run end to end, the run folder and its reports.

The layers, lowest first (``tests/test_layers.py`` holds every import to them):

    sim/         the ledger: the contract's types and files, the reference ledger, kernels, engine
    workloads/   the payment stream (SimPy clock + numpy draws)    } peers: neither imports the other
    actors/      Ray hosting of the shards                         }
    xpay/        the application: command line, runner, run folder, reports
    benchmarks/, notebooks/   entry points that call the layers below

The public Python API is this package: ``xpay.run``, ``xpay.replay``, ``xpay.sweep``,
``xpay.load_run`` (see `xpay.api` and `xpay.runs`). Importing the package is cheap: the
command line and the API import what a call needs when it runs.
"""

__all__ = ["run", "replay", "sweep", "plain_workload", "load_run", "shutdown", "Run"]


def __getattr__(name: str):
    """The public API (xpay.api), imported on first use so `import xpay` stays cheap."""
    if name in ("run", "replay", "sweep", "plain_workload", "shutdown"):
        from xpay import api

        return getattr(api, name)
    if name in ("load_run", "Run"):
        from xpay import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'xpay' has no attribute {name!r}")
