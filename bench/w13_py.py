"""W13 for Python: a 512 MiB read-only table built in the parent, then Pool(8) with the
fork start method (the table shared copy-on-write), each worker reading all of it.

Usage: python3 w13_py.py
Prints one JSON line as the Rust side does: up_ms (from the start of the table's build
until all 8 workers answered a first task), workers_up_ms (the same from the end of the
table's build), read_ms, pss_ratio
(the PSS of every process below this one while the workers hold the table, over 512 MiB).
"""
import json
import multiprocessing as mp
import os
import time

TABLE_BYTES = 512 << 20
TABLE = None
BARRIER = None


def build():
    pattern = bytes(range(251))
    return (pattern * (TABLE_BYTES // 251 + 1))[:TABLE_BYTES]


def kb(pid, field):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def task(read):
    BARRIER.wait(60)
    # Counting a byte reads every byte of the table (in C), as the Rust side's sum does.
    zeros = TABLE.count(b"\x00") if read else 0
    BARRIER.wait(60)
    me = os.getpid()
    return me, zeros, kb(me, "Pss"), kb(me, "Rss")


def descendants():
    out, at = [], [os.getpid()]
    while at:
        pid = at.pop()
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = [int(p) for p in f.read().split()]
        except OSError:
            kids = []
        out += kids
        at += kids
    return out


def main():
    global TABLE, BARRIER
    t0 = time.perf_counter()
    TABLE = build()
    preloaded = time.perf_counter()
    ctx = mp.get_context("fork")
    BARRIER = ctx.Barrier(8)
    with ctx.Pool(8) as pool:
        idle = pool.map(task, [False] * 8, chunksize=1)
        answered = time.perf_counter()
        up, workers_up = (answered - t0) * 1e3, (answered - preloaded) * 1e3
        t1 = time.perf_counter()
        read = pool.map(task, [True] * 8, chunksize=1)
        read_ms = (time.perf_counter() - t1) * 1e3
        pool_pss = sum(kb(p, "Pss") for p in descendants())
        ok = len({r[0] for r in read}) == 8 and all(r[1] == -(-TABLE_BYTES // 251) for r in read)
    idle_pss = sorted(r[2] for r in idle)[4] / 1024
    idle_rss = sorted(r[3] for r in idle)[4] / 1024
    print(json.dumps(dict(impl="python", workload="w13", ok=ok, up_ms=up,
                          workers_up_ms=workers_up, read_ms=read_ms,
                          pss_ratio=pool_pss * 1024 / TABLE_BYTES, pool_pss_mib=pool_pss / 1024,
                          idle_pss_mib=idle_pss, idle_rss_mib=idle_rss, start_method="fork")))


if __name__ == "__main__":
    main()
