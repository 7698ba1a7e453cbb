"""Engine throughput benchmark: `make bench` runs ``xpay bench`` (xpay/bench.py) at real size.

    python -m benchmarks.engine_throughput            # = xpay bench
    python -m benchmarks.engine_throughput --smoke    # = xpay bench --size smoke
"""

from __future__ import annotations

import sys

from xpay.cli import main as xpay_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--smoke" in argv:
        argv.remove("--smoke")
        argv = ["--size", "smoke", *argv]
    return xpay_main(["bench", *argv])


if __name__ == "__main__":
    sys.exit(main())
