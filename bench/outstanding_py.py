"""The parent's memory per outstanding task, for Python's multiprocessing.Pool (fork).

Usage: python3 outstanding_py.py [--n N]
A 1-worker pool whose worker is held by a task waiting on an Event; N apply_async
submitted behind it (their AsyncResults kept); the growth of the parent's RSS over N.
Prints one JSON line with bytes_per_task.
"""
import argparse
import json
import multiprocessing as mp


def f(x):
    return x * 2


def wait_for(gate):
    gate.wait()


def rss_kb():
    with open("/proc/self/status") as s:
        for line in s:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400_000)
    n = ap.parse_args().n
    ctx = mp.get_context("fork")
    gate = ctx.Manager().Event()
    with ctx.Pool(1) as pool:
        pool.apply(f, (1,))
        held = pool.apply_async(wait_for, (gate,))
        before = rss_kb()
        handles = [pool.apply_async(f, (i,)) for i in range(n)]
        after = rss_kb()
        gate.set()
        held.get()
        ok = all(h.get() == 2 * i for i, h in enumerate(handles))
    print(json.dumps(dict(impl="python", workload="outstanding", ok=ok, n=n,
                          bytes_per_task=(after - before) * 1024 / n)))


if __name__ == "__main__":
    main()
