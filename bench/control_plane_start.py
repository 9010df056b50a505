"""Warm start of the local control plane: time from nothing to kube-apiserver /readyz, and to a stopped state.

make bench-control-plane        # or: PYTHONPATH=dev .venv/bin/python bench/control_plane_start.py --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from localdev import controlplane


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    t0 = time.monotonic()
    bin_dir = controlplane.binaries_dir()
    locate = time.monotonic() - t0
    starts, stops = [], []
    for _ in range(args.runs):
        t0 = time.monotonic()
        with controlplane.running() as cp:
            starts.append(time.monotonic() - t0)
            t1 = time.monotonic()
            cp.stop()
            stops.append(time.monotonic() - t1)
    print(f"binaries: {bin_dir} (located in {locate:.2f}s)")
    print(f"{'phase':<28}{'min':>8}{'median':>8}{'max':>8}  (seconds, {args.runs} runs)")
    for name, values in (("start to /readyz ok", starts), ("stop (SIGTERM, all exited)", stops)):
        print(f"{name:<28}{min(values):>8.2f}{statistics.median(values):>8.2f}{max(values):>8.2f}")


if __name__ == "__main__":
    main()
