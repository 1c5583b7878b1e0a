"""The process start-up row for Python: Process(target=nothing).start() then join(), n times.

Usage: python3 process_start.py [--method fork|spawn] [--n N]
Prints one JSON line: medians of start() and join(), their sum, and the first (cold) sum.
start() returns after fork (fork) or after the child was launched (spawn); the sum is
the figure to compare.
"""
import argparse
import json
import multiprocessing as mp
import statistics
import time


def nothing():
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="fork", choices=["fork", "spawn", "forkserver"])
    ap.add_argument("--n", type=int, default=5)
    a = ap.parse_args()
    ctx = mp.get_context(a.method)
    start, stop = [], []
    for _ in range(max(1, a.n)):
        t0 = time.perf_counter()
        p = ctx.Process(target=nothing)
        p.start()
        t1 = time.perf_counter()
        p.join()
        t2 = time.perf_counter()
        assert p.exitcode == 0, p.exitcode
        start.append((t1 - t0) * 1e3)
        stop.append((t2 - t1) * 1e3)
    totals = [a + b for a, b in zip(start, stop)]
    print(
        json.dumps(
            dict(
                workload="process-start",
                method=a.method,
                n=len(start),
                startup_ms=statistics.median_low(start),
                shutdown_ms=statistics.median_low(stop),
                total_ms=statistics.median_low(totals),
                first_total_ms=totals[0],
            )
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
