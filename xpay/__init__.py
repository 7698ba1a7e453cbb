"""xpay-sim's application: the ``xpay`` command, one run end to end, the run folder and its reports.

The layers, lowest first (``tests/test_layers.py`` holds every import to them):

    sim/         the ledger: the contract's types and files, the reference ledger, kernels, engine
    workloads/   the payment stream (SimPy clock + numpy draws)    } peers: neither imports the other
    actors/      Ray hosting of the shards                         }
    xpay/        the application: command line, runner, run folder, reports
    benchmarks/, notebooks/   entry points that call the layers below

Importing this package is cheap: the command line imports what a command needs when it runs.
"""
