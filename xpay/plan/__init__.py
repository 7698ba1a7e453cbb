"""Capacity planning: a SimPy model of the engine on a cluster, calibrated from measured runs.

    calibration  fit the model's parameters to run folders (xpay plan calibrate)
    shape        a workload as the model sees it: rows per epoch, rows sent to each shard
    model        the discrete-event model: throughput, payment latency, utilisation
    planning     predictions, validation against measured runs, and cluster plans
"""
