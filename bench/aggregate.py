"""Turns the JSON lines of a bench/run.sh run into BENCHMARKS.md.

Usage:
  python3 aggregate.py meta REPO                      machine and versions, as JSON
  python3 aggregate.py table RESULTS_DIR OUT.md NOTES.md

RESULTS_DIR holds meta.json and rep1/, rep2/, ... with one <cell>.<impl>.out (stdout),
.err and .rc per run. Figures are medians over the repetitions with [min–max]; ratios
are ratios of medians, all from the same run.
"""
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

# ------------------------------------------------------------------ machine and versions


def _cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _lock_versions(repo, names):
    found = {}
    try:
        text = open(os.path.join(repo, "Cargo.lock")).read()
    except OSError:
        return found
    for block in text.split("[[package]]"):
        m = re.search(r'name = "([^"]+)"\s*\nversion = "([^"]+)"', block)
        if m and m.group(1) in names:
            found.setdefault(m.group(1), m.group(2))
    return found


def meta(repo):
    crates = ["procspawn", "ipc-channel", "rayon", "postcard", "serde", "rustix", "criterion"]
    commit = _cmd("git", "-C", repo, "rev-parse", "--short", "HEAD")
    # The table and its notes are what a run writes, not what it measures.
    dirty = _cmd("git", "-C", repo, "status", "--porcelain", "--untracked-files=no", "--",
                 ".", ":!BENCHMARKS.md", ":!bench/NOTES.md")
    return dict(
        date=_cmd("date", "-u", "+%Y-%m-%d %H:%M UTC"),
        cpu=_cpu_model(),
        cores=os.cpu_count(),
        kernel=platform.release(),
        rustc=_cmd("rustc", "-V"),
        python=_cmd(sys.executable, "-V"),
        crates=_lock_versions(repo, crates),
        commit=commit + (" (with local changes)" if dirty and dirty != "?" else ""),
        load_start=_loadavg(),
    )


def _loadavg():
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


# ------------------------------------------------------------------ loading a run


class Cell:
    """Every repetition of one (cell, impl): parsed results, skips and failures."""

    def __init__(self):
        self.results = []  # dicts with figures
        self.skipped = None  # reason, when the implementation cannot run it yet
        self.failures = []  # short texts
        self.logs = []  # raw stdout (W9's Python scripts print log lines, not JSON)
        self.rcs = []

    def values(self, key):
        return [r[key] for r in self.results if isinstance(r.get(key), (int, float))]

    def by_rep(self, key):
        return {r["_rep"]: r[key] for r in self.results if isinstance(r.get(key), (int, float))}


def _last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def load(results_dir):
    cells = {}
    reps = sorted(p for p in Path(results_dir).glob("rep*") if p.is_dir())
    for rep in reps:
        for out in sorted(rep.glob("*.out")):
            cell, impl = out.name[: -len(".out")].split(".", 1)
            c = cells.setdefault((cell, impl), Cell())
            text = out.read_text(errors="replace")
            rc_file = out.with_suffix(".rc")
            rc = int(rc_file.read_text().strip() or "0") if rc_file.exists() else 0
            err = out.with_suffix(".err").read_text(errors="replace") if out.with_suffix(".err").exists() else ""
            c.rcs.append(rc)
            c.logs.append(text)
            if cell == "w9" and impl.startswith("python"):
                continue  # log lines, read by crash_table
            j = _last_json(text)
            if j is not None and "skipped" in j:
                c.skipped = j["skipped"]
            elif rc != 0 or j is None or "error" in j:
                why = (j or {}).get("error") or (err.strip().splitlines() or ["no output"])[-1]
                c.failures.append(f"{rep.name}: exit {rc}: {why}"[:200])
            elif j.get("ok") is False or j.get("accounted") is False:
                c.failures.append(f"{rep.name}: wrong results" + (
                    f" ({j.get('ok_values')} right values, {j.get('errors')} errors of {j.get('n')})"
                    if "accounted" in j else ""))
            else:
                j["_rep"] = rep.name
                c.results.append(j)
    return cells, len(reps)


# ------------------------------------------------------------------ formatting


def fmt(x):
    if x is None:
        return "—"
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:.3g} M"
    if a >= 1e4:
        return f"{x / 1e3:.3g} k"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def fmt_ratio(r):
    if r is None:
        return "—"
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def median(vals):
    return statistics.median(vals) if vals else None


# ------------------------------------------------------------------ the table


class Row:
    def __init__(self, cell, key, label, unit, higher, ref=None):
        self.cell, self.key, self.label, self.unit, self.higher = cell, key, label, unit, higher
        self.ref = ref  # (cell, impl, key, label) of the reference column, if any


RAW_RT = ("raw_rt", "raw")
RAW_TPUT = ("raw_tput", "raw")
ROWS = [
    Row("w1_cs1", "tasks_per_s", "W1 tiny-map, chunksize 1", "tasks/s", True),
    Row("w1_default", "tasks_per_s", "W1 tiny-map, default chunksize", "tasks/s", True),
    Row("w2", "p50_us", "W2 apply latency, p50", "µs", False, ("raw_rt", "raw", "p50_us", "raw round trip p50")),
    Row("w2", "p99_us", "W2 apply latency, p99", "µs", False, ("raw_rt", "raw", "p99_us", "raw round trip p99")),
    Row("w2_sandbox", "p50_us", "W2 apply latency, p50, sandboxed worker", "µs", False,
        ("w2", "multiproc", "p50_us", "W2 p50 without a sandbox")),
    Row("w2_sandbox", "p99_us", "W2 apply latency, p99, sandboxed worker", "µs", False,
        ("w2", "multiproc", "p99_us", "W2 p99 without a sandbox")),
    Row("w2_1cpu", "p50_us", "W2 apply latency, p50, one CPU", "µs", False,
        ("raw_rt_1cpu", "raw", "p50_us", "raw round trip p50, one CPU")),
    Row("w2_xcpu", "p50_us", "W2 apply latency, p50, two CPUs", "µs", False,
        ("raw_rt_xcpu", "raw", "p50_us", "raw round trip p50, two CPUs")),
    Row("w3", "tasks_per_s", "W3 async burst", "tasks/s", True),
    Row("w4", "startup_ms", "W4 startup: create → first result", "ms", False),
    Row("w4", "shutdown_ms", "W4 close + join", "ms", False),
    Row("w4_sandbox", "startup_ms", "W4 startup, sandboxed workers", "ms", False,
        ("w4", "multiproc", "startup_ms", "W4 without a sandbox")),
    Row(
        "process_start",
        "total_ms",
        "Process start → handshake → exit (W4-like, no pool)",
        "ms",
        False,
        ("process_start", "python_spawn", "total_ms", "Python, spawn"),
    ),
    Row("w5", "speedup", "W5 cpu-map speedup, 2 workers", "×", True, ("w5", "rayon", "speedup", "rayon, 2 threads")),
    Row("w6", "mib_per_s", "W6 1 MiB payloads, default chunksize", "MiB/s", True, RAW_TPUT + ("mib_per_s", "raw socketpair")),
    Row("w6_cs1", "mib_per_s", "W6 1 MiB payloads, chunksize 1", "MiB/s", True, RAW_TPUT + ("mib_per_s", "raw socketpair")),
    Row("w7q", "msgs_per_s", "W7q queue", "msgs/s", True),
    Row("w7p", "rt_us", "W7p pipe round trip, mean", "µs", False, RAW_RT + ("rt_us", "raw round trip mean")),
    Row("w7p", "p50_us", "W7p pipe round trip, p50", "µs", False, RAW_RT + ("p50_us", "raw round trip p50")),
    Row("w7p_1cpu", "rt_us", "W7p pipe round trip, mean, one CPU", "µs", False,
        ("raw_rt_1cpu_w7p", "raw", "rt_us", "raw round trip mean, one CPU")),
    Row("w7p_1cpu", "p50_us", "W7p pipe round trip, p50, one CPU", "µs", False,
        ("raw_rt_1cpu_w7p", "raw", "p50_us", "raw round trip p50, one CPU")),
    Row("w7p_xcpu", "p50_us", "W7p pipe round trip, p50, two CPUs", "µs", False,
        ("raw_rt_xcpu", "raw", "p50_us", "raw round trip p50, two CPUs")),
    Row("w8", "ops_per_s", "W8 manager dict", "ops/s", True),
]


class Run:
    def __init__(self, cells):
        self.cells = cells

    def cell(self, cell, impl):
        return self.cells.get((cell, impl))

    def med(self, cell, impl, key):
        c = self.cell(cell, impl)
        return median(c.values(key)) if c else None

    def status(self, cell, impl, key):
        """A cell's figure as 'median [min–max]', or why there is none."""
        c = self.cell(cell, impl)
        if c is None:
            return "—"
        vals = c.values(key)
        if vals:
            text = f"{fmt(median(vals))} [{fmt(min(vals))}–{fmt(max(vals))}]"
            if c.failures:
                text += f" ({len(c.failures)} failed)"
            return text
        if c.skipped:
            return "pending"
        if c.failures:
            return "failed"
        return "—"

    def ratio(self, a, b):
        """The median over repetitions of a's figure over b's in the same repetition.

        a and b are (cell, impl, key). Pairing by repetition cancels the drift of a
        shared machine better than a ratio of medians taken over different minutes.
        """
        ca, cb = self.cell(*a[:2]), self.cell(*b[:2])
        if ca is None or cb is None:
            return None
        va, vb = ca.by_rep(a[2]), cb.by_rep(b[2])
        pairs = [va[r] / vb[r] for r in va if r in vb and vb[r]]
        return median(pairs)


def table(run, reps):
    out = [
        f"Medians of {reps} repetitions, [min–max] in brackets. A ratio is the median over the "
        "repetitions of one figure over the other in the same repetition (multiproc's first): "
        "above 1 is better for ↑ rows, below 1 for ↓ rows.",
        "",
        "| workload | unit | multiproc | Python (fork) | procspawn | reference | multiproc ÷ Python "
        "| multiproc ÷ procspawn | multiproc ÷ reference | procspawn ÷ Python |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ROWS:
        arrow = "↑" if r.higher else "↓"
        mp, py, ps = ((r.cell, impl, r.key) for impl in ("multiproc", "python", "procspawn"))
        ref, to_ref = "—", "—"
        if r.ref:
            ref = f"{run.status(r.ref[0], r.ref[1], r.ref[2])} ({r.ref[3]})"
            to_ref = fmt_ratio(run.ratio(mp, r.ref[:3]))
        mp_text = run.status(r.cell, "multiproc", r.key)
        pending = mp_text == "pending"
        out.append(
            f"| {r.label} | {r.unit} {arrow} | {mp_text} | {run.status(r.cell, 'python', r.key)} "
            f"| {run.status(r.cell, 'procspawn', r.key)} | {ref} "
            f"| {'pending' if pending else fmt_ratio(run.ratio(mp, py))} "
            f"| {'pending' if pending else fmt_ratio(run.ratio(mp, ps))} "
            f"| {'pending' if pending and r.ref else to_ref} | {fmt_ratio(run.ratio(ps, py))} |"
        )
    return out


FAULT_PEERS = [("pebble", "pebble"), ("billiard", "billiard")]


def fault_table(run):
    """W10-W12 beside pebble and billiard, and the fork server beside the exec path."""
    out = [
        "2 workers each; every outcome collected in order and checked (a run whose outcomes do not all "
        "come back, or whose failures are not exactly the due ones, counts as failed). A ratio is "
        "multiproc's figure over the peer's in the same repetition.",
        "",
        "| workload | unit | multiproc | multiproc, fork server | pebble | billiard | multiproc ÷ pebble "
        "| multiproc ÷ billiard | fork server ÷ exec |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [
        ("w10", "w10_fs", "tasks_per_s", "W10 crash-heavy (every 10th task segfaults)", "tasks/s ↑"),
        ("w11", "w11_fs", "seconds", "W11 timeout-heavy (every 20th task hangs, timeout 200 ms; floor 1.0 s)", "s ↓"),
        ("w12", "w12_fs", "tasks_per_s", "W12 respawn (every task SIGKILLs its worker)", "replacements/s ↑"),
        ("w4", "w4_fs", "startup_ms", "W4 startup: create → first result", "ms ↓"),
        ("w4", "w4_fs", "shutdown_ms", "W4 close + join", "ms ↓"),
        ("w4", "w4_fs_shared", "startup_ms", "W4 startup, the fork server shared (a `ForkServer` started before the clock)",
         "ms ↓"),
    ]
    for cell, fs, key, label, unit in rows:
        mp = (cell, "multiproc", key)
        peers = [run.status(cell, impl, key) for impl, _ in FAULT_PEERS]
        ratios = [fmt_ratio(run.ratio(mp, (cell, impl, key))) for impl, _ in FAULT_PEERS]
        fs_text = run.status(fs, "multiproc", key) if fs else "—"
        fs_ratio = fmt_ratio(run.ratio((fs, "multiproc", key), mp)) if fs else "—"
        out.append(f"| {label} | {unit} | {run.status(cell, 'multiproc', key)} | {fs_text} | {peers[0]} | {peers[1]} "
                   f"| {ratios[0]} | {ratios[1]} | {fs_ratio} |")
    out.append(f"| W11 over its floor | × ↓ | {run.status('w11', 'multiproc', 'to_floor')} "
               f"| {run.status('w11_fs', 'multiproc', 'to_floor')} "
               f"| {_floor_status(run, 'pebble')} | {_floor_status(run, 'billiard')} | — | — | — |")
    return out


W13_COLUMNS = [("w13", "multiproc"), ("w13_fs", "multiproc"), ("w13_fs_off", "multiproc"), ("w13", "python")]


def w13_table(run):
    """W13 preload and the memory of an idle worker: exec, fork server (contained and
    not), and Python's fork pool."""
    out = [
        "8 workers and a 512 MiB read-only table. exec: each worker builds its own copy; fork "
        "server: the table is the template's preload, shared copy-on-write; Python: built in the "
        "parent before `Pool(8)` forks. Workers up: from the end of the table's build (in the "
        "template, or in Python's parent; exec: from the start of the pool's creation) until all 8 "
        "answered a first task. PSS: every process below the benchmark's (workers, "
        "what they started, the template) while all 8 hold the table, over one copy.",
        "",
        "| figure | unit | multiproc, exec | multiproc, fork server + preload | fork server, containment off "
        "| Python (fork) | fork server ÷ Python |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [
        ("workers_up_ms", "all 8 workers up", "ms ↓"),
        ("pss_ratio", "PSS of the pool ÷ one table", "× ↓"),
        ("read_ms", "8 workers read the table (exec: build it too)", "ms ↓"),
        ("idle_pss_mib", "PSS of an idle worker (median of 8)", "MiB ↓"),
        ("idle_rss_mib", "RSS of an idle worker (median of 8)", "MiB ↓"),
    ]
    for key, label, unit in rows:
        cols = [run.status(cell, impl, key) for cell, impl in W13_COLUMNS]
        r = fmt_ratio(run.ratio(("w13_fs", "multiproc", key), ("w13", "python", key)))
        out.append(f"| {label} | {unit} | {' | '.join(cols)} | {r} |")
    mp, py = run.status("outstanding", "multiproc", "bytes_per_task"), run.status("outstanding", "python", "bytes_per_task")
    r = fmt_ratio(run.ratio(("outstanding", "multiproc", "bytes_per_task"), ("outstanding", "python", "bytes_per_task")))
    out += [
        "",
        "The parent's memory per outstanding task: 400 000 `apply_async` queued behind a worker held by a "
        "task, their handles kept; the growth of the parent's RSS over 400 000.",
        "",
        "| figure | unit | multiproc | Python | multiproc ÷ Python |",
        "|---|---|---|---|---|",
        f"| the parent's bytes per outstanding task | bytes ↓ | {mp} | {py} | {r} |",
    ]
    return out


def _floor_status(run, impl):
    c = run.cell("w11", impl)
    vals = [v / 1.0 for v in c.values("seconds")] if c else []
    return f"{fmt(median(vals))} [{fmt(min(vals))}–{fmt(max(vals))}]" if vals else "—"


def cluster_table(run):
    """The cost of the broker: the same workloads on a cluster pool and on the local pool."""
    out = [
        "W1, W2 and W3 through one local `nats-server -js` with two worker processes (each running a "
        "local pool of one process), beside the local pool of two processes in the same run.",
        "",
        "| workload | unit | cluster | local pool | cluster ÷ local | cluster ÷ Python |",
        "|---|---|---|---|---|---|",
    ]
    rows = [("w1_cs1", "W1 tiny-map, chunksize 1", "tasks_per_s", "tasks/s ↑"),
            ("w1_default", "W1 tiny-map, default chunksize", "tasks_per_s", "tasks/s ↑"),
            ("w2", "W2 apply round trip, p50", "p50_us", "µs ↓"),
            ("w3", "W3 async burst", "tasks_per_s", "tasks/s ↑")]
    for cell, label, key, unit in rows:
        if run.cell(cell, "cluster") is None:
            continue
        out.append(
            f"| {label} | {unit} | {run.status(cell, 'cluster', key)} | {run.status(cell, 'multiproc', key)} "
            f"| {fmt_ratio(run.ratio((cell, 'cluster', key), (cell, 'multiproc', key)))} "
            f"| {fmt_ratio(run.ratio((cell, 'cluster', key), (cell, 'python', key)))} |"
        )
    return out if len(out) > 4 else ["No cluster cells in this run (nats-server was not installed)."]


def limits(run):
    out = ["| baseline | figure |", "|---|---|"]
    for cell, where in [("raw_rt", ""), ("raw_rt_1cpu", ", both on one CPU (before W2)"),
                        ("raw_rt_1cpu_w7p", ", both on one CPU (before W7p)"),
                        ("raw_rt_xcpu", ", one on each of two CPUs")]:
        for key, label in [("rt_us", "mean"), ("p50_us", "p50"), ("p99_us", "p99")]:
            out.append(f"| raw 8-byte round trip over a socketpair, two processes{where}, {label} | "
                       f"{run.status(cell, 'raw', key)} µs |")
    out.append(f"| raw socketpair throughput, two processes, 1 MiB writes | "
               f"{run.status('raw_tput', 'raw', 'mib_per_s')} MiB/s |")
    out.append(f"| W5 on rayon, 2 threads (the ceiling) | {run.status('w5', 'rayon', 'speedup')} × |")
    return out


def skipped_reasons(run):
    reasons = {}
    for (cell, impl), c in sorted(run.cells.items()):
        if impl == "multiproc" and c.skipped:
            reasons.setdefault(c.skipped, []).append(cell)
    return [f"- {', '.join(cells)}: {why}" for why, cells in reasons.items()]


def failures(run):
    out = []
    for (cell, impl), c in sorted(run.cells.items()):
        for f in c.failures:
            out.append(f"- {cell} / {impl}: {f}")
    return out


# ------------------------------------------------------------------ targets


class Verdict:
    def __init__(self, state, measured, needed=""):
        self.state, self.measured, self.needed = state, measured, needed


def _need(run, cell, impl, key):
    """The median, or a Verdict saying why there is none."""
    c = run.cell(cell, impl)
    if c is None:
        return Verdict("pending", f"{cell}/{impl} not run")
    v = run.med(cell, impl, key)
    if v is not None:
        return v
    if c.skipped:
        return Verdict("pending", c.skipped)
    return Verdict("missed" if impl == "multiproc" else "no reference", f"{cell}/{impl} failed")


def ratio_target(cell, key, other, bound, at_least, other_label, unit):
    """multiproc's median over another's: `other` is an impl (same cell and key) or (cell, impl, key)."""
    ref_cell, ref_impl, ref_key = other if isinstance(other, tuple) else (cell, other, key)

    def check(run):
        mp = _need(run, cell, "multiproc", key)
        ref = _need(run, ref_cell, ref_impl, ref_key)
        if isinstance(ref, Verdict):
            return ref
        needed = f"{'≥' if at_least else '≤'} {fmt(bound * ref)} {unit} ({bound:g} × {other_label} {fmt(ref)})"
        if isinstance(mp, Verdict):
            mp.needed = needed
            return mp
        r = run.ratio((cell, "multiproc", key), (ref_cell, ref_impl, ref_key))
        ok = r >= bound if at_least else r <= bound
        return Verdict("met" if ok else "missed", f"{fmt(mp)} {unit}, ratio {fmt_ratio(r)}", needed)

    return check


def all_of(*checks):
    def check(run):
        vs = [c(run) for c in checks]
        order = ["missed", "pending", "no reference", "met"]
        state = min((v.state for v in vs), key=order.index)
        measured = list(dict.fromkeys(v.measured for v in vs))
        return Verdict(state, "; ".join(measured), "; ".join(v.needed for v in vs if v.needed))

    return check


def absolute_target(cell, key, bound, at_least, unit):
    def check(run):
        mp = _need(run, cell, "multiproc", key)
        needed = f"{'≥' if at_least else '≤'} {bound:g} {unit}"
        if isinstance(mp, Verdict):
            mp.needed = needed
            return mp
        ok = mp >= bound if at_least else mp <= bound
        return Verdict("met" if ok else "missed", f"{fmt(mp)} {unit}", needed)

    return check


def below_target(cell, key, other, unit):
    def check(run):
        mp = _need(run, cell, "multiproc", key)
        ref = _need(run, cell, other, key)
        if isinstance(ref, Verdict):
            return ref
        needed = f"< {fmt(ref)} {unit} ({other})"
        if isinstance(mp, Verdict):
            mp.needed = needed
            return mp
        return Verdict("met" if mp < ref else "missed", f"{fmt(mp)} {unit}", needed)

    return check


def crash_target(run):
    c = run.cell("w9", "multiproc")
    if c is None:
        return Verdict("pending", "not run")
    if c.skipped:
        return Verdict("pending", c.skipped)
    if not c.results:
        return Verdict("missed", "the run failed: " + "; ".join(c.failures))
    j = c.results[0]
    return Verdict("met" if j.get("verdict") == "pass" else "missed", _crash_summary(j))


TARGETS = [
    ("W1 tiny-map, chunksize 1", "≥ 20× Python's tasks/s",
     ratio_target("w1_cs1", "tasks_per_s", "python", 20, True, "Python", "tasks/s")),
    ("W1 tiny-map, default chunksize", "≥ 3× Python's tasks/s",
     ratio_target("w1_default", "tasks_per_s", "python", 3, True, "Python", "tasks/s")),
    ("W2 apply latency p50", "≤ 1.5× the raw socketpair round trip (judged on one CPU, see the notes)",
     ratio_target("w2_1cpu", "p50_us", ("raw_rt_1cpu", "raw", "p50_us"), 1.5, False, "raw p50", "µs")),
    ("W3 async burst", "≥ 20× Python's tasks/s",
     ratio_target("w3", "tasks_per_s", "python", 20, True, "Python", "tasks/s")),
    ("W4 startup, create → first result", "≤ 0.5× Python (fork) and below procspawn",
     all_of(ratio_target("w4", "startup_ms", "python", 0.5, False, "Python", "ms"),
            below_target("w4", "startup_ms", "procspawn", "ms"))),
    ("W4 close + join", "≤ 1 ms median", absolute_target("w4", "shutdown_ms", 1.0, False, "ms")),
    ("W5 cpu-map speedup, 2 workers", "≥ 1.9 (rayon is the ceiling)",
     absolute_target("w5", "speedup", 1.9, True, "×")),
    ("W6 1 MiB payloads", "≥ 4× Python's MiB/s and ≥ 50% of raw socketpair throughput",
     all_of(ratio_target("w6", "mib_per_s", "python", 4, True, "Python", "MiB/s"),
            ratio_target("w6", "mib_per_s", ("raw_tput", "raw", "mib_per_s"), 0.5, True, "raw", "MiB/s"))),
    ("W7q queue", "≥ 10× Python's msgs/s",
     ratio_target("w7q", "msgs_per_s", "python", 10, True, "Python", "msgs/s")),
    ("W7p pipe round trip", "≤ 1.2× the raw socketpair round trip (judged on the p50s on one CPU, see the notes)",
     ratio_target("w7p_1cpu", "p50_us", ("raw_rt_1cpu_w7p", "raw", "p50_us"), 1.2, False, "raw p50", "µs")),
    ("W8 manager dict", "≥ 10× Python's ops/s",
     ratio_target("w8", "ops_per_s", "python", 10, True, "Python", "ops/s")),
    ("W9 crash", "19 results, task 5 fails naming SIGKILL, the pool runs a new task, nothing left behind",
     crash_target),
]


TARGETS_19 = [
    ("W12 respawn, fork server", "≥ 5 000 replacements/s",
     absolute_target("w12_fs", "tasks_per_s", 5000, True, "replacements/s")),
    ("W4 startup with the fork server, create → first result", "≤ 1 ms",
     absolute_target("w4_fs", "startup_ms", 1.0, False, "ms")),
    ("W4 startup with a shared fork server already running", "≤ 1 ms",
     absolute_target("w4_fs_shared", "startup_ms", 1.0, False, "ms")),
    ("W10 crash-heavy", "≥ 20 k tasks/s", absolute_target("w10", "tasks_per_s", 20000, True, "tasks/s")),
    ("W11 timeout-heavy", "≤ 1.02× its floor (1.0 s)", absolute_target("w11", "to_floor", 1.02, False, "× the floor")),
    ("W13 preload, fork server: PSS of the pool", "≤ 1.25× one copy",
     absolute_target("w13_fs", "pss_ratio", 1.25, False, "× one copy")),
    ("W13 preload, fork server: all 8 workers up", "≤ 50 ms",
     absolute_target("w13_fs", "workers_up_ms", 50, False, "ms")),
]


def targets(run, table=None):
    out = ["| target | required | this run needs | measured | verdict |", "|---|---|---|---|---|"]
    verdicts = []
    for name, required, check in (TARGETS if table is None else table):
        v = check(run)
        verdicts.append((name, v))
        out.append(f"| {name} | {required} | {v.needed or '—'} | {v.measured} | **{v.state}** |")
    return out, verdicts


# ------------------------------------------------------------------ W9


def _crash_summary(j):
    return (f"{j.get('results_ok')} results; task 5: {j.get('task5')}; new task: {j.get('new_task')}; "
            f"left behind: {j.get('left_behind') or 'none'}")


PY_W9 = [
    ("python_mp_pool_map", "Python `Pool.map`"),
    ("python_mp_pool_imap", "Python `Pool.imap`"),
    ("python_mp_pool_imap_unordered", "Python `Pool.imap_unordered`"),
    ("python_ppe_map", "Python `ProcessPoolExecutor.map`"),
    ("python_ppe_submit", "Python `ProcessPoolExecutor.submit`"),
]


def _strip_ts(line):
    return re.sub(r"^\[\s*[\d.]+s\]\s*", "", line).strip()


def _exception(line):
    """'... raised pkg.mod.Name: message' as 'Name: message', the message cut at its first sentence."""
    m = re.search(r"raised (?:[\w.]+\.)?(\w+): ([^.]*)", line)
    return f"{m.group(1)}: {m.group(2).strip()}" if m else line[:120]


def _python_crash(c):
    log = c.logs[0] if c.logs else ""
    rc = c.rcs[0] if c.rcs else 0
    lines = [_strip_ts(line) for line in log.splitlines() if line.strip()]
    results = sum(1 for line in lines if line.startswith("result"))
    results += sum(len(re.findall(r"\d+:ok=", line)) for line in lines)
    raised = [line for line in lines if " raised " in line and "afterwards" not in line]
    after = [line for line in lines if "afterwards" in line]
    if rc in (124, 137):
        seen = f"nothing: hung until the 20 s timeout killed it (exit {rc})"
    elif raised:
        seen = _exception(raised[0])
    elif any("BrokenProcessPool" in line for line in lines):
        seen = "BrokenProcessPool for task 5 and every task after it"
    else:
        seen = (lines[-1] if lines else "no output")[:160]
    new = ("refused: " + _exception(after[0]) if " raised " in after[0] else after[0]) if after else "not reached"
    return results, seen, new


def crash_table(run):
    out = ["| implementation | correct results (of 19) | what task 5's caller sees | a new task afterwards "
           "| left behind | verdict |", "|---|---|---|---|---|---|"]
    for impl, label in [("multiproc", "multiproc `Pool`"), ("procspawn", "procspawn `Pool`")]:
        c = run.cell("w9", impl)
        if c is None:
            continue
        if c.skipped:
            out.append(f"| {label} | pending | | | | pending ({c.skipped}) |")
        elif not c.results:
            out.append(f"| {label} | | run failed: {'; '.join(c.failures)} | | | fail |")
        else:
            j = c.results[0]
            why = []
            if j.get("results_ok") != 19:
                why.append("results lost")
            if not j.get("task5_names_sigkill"):
                why.append("the error does not name SIGKILL")
            if not j.get("new_task_ok"):
                why.append("no new task")
            if j.get("left_behind"):
                why.append("processes left")
            verdict = j.get("verdict", "?") + (f" ({', '.join(why)})" if why else "")
            out.append(f"| {label} | {j.get('results_ok')} | {j.get('task5')} | {j.get('new_task')} "
                       f"| {j.get('left_behind') or 'none'} | {verdict} |")
    for impl, label in PY_W9:
        c = run.cell("w9", impl)
        if c is None:
            continue
        results, seen, new = _python_crash(c)
        out.append(f"| {label} | {results} | {seen} | {new} | not checked | fail |")
    return out


# ------------------------------------------------------------------ the page


def _load_end(results_dir):
    p = Path(results_dir) / "load_end"
    return p.read_text().split()[0] if p.exists() else "?"


def page(results_dir, notes_path):
    cells, reps = load(results_dir)
    run = Run(cells)
    m = json.loads((Path(results_dir) / "meta.json").read_text())
    crates = ", ".join(f"{k} {v}" for k, v in sorted(m.get("crates", {}).items()))
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run.sh` (do not edit by hand: edit `bench/NOTES.md` or `bench/aggregate.py`).",
        "The workloads W1–W13 are those of `shared/bench/WORKLOADS.md`; every cell is a fresh process, "
        "and the cells were run interleaved (repetition 1 of every cell, then repetition 2, ...).",
        "",
        "| | |",
        "|---|---|",
        f"| date | {m.get('date')} |",
        f"| machine | {m.get('cpu')}, {m.get('cores')} cores, Linux {m.get('kernel')} |",
        f"| Rust | {m.get('rustc')}, release profile |",
        f"| Python | {m.get('python')}, `multiprocessing` with the fork start method |",
        f"| crates | {crates} |",
        f"| commit | {m.get('commit')} |",
        f"| repetitions | {reps} (W9: 1) |",
        f"| load average (1 min) | {m.get('load_start')} at the start, {_load_end(results_dir)} at the end "
        "(anything else running on the machine shows in the figures) |",
        "",
        "## Targets (issue 7)",
        "",
    ]
    target_lines, verdicts = targets(run)
    lines += target_lines
    missed = [(name, v) for name, v in verdicts if v.state == "missed"]
    lines += ["", "## Targets (issue 19)", ""]
    target_lines_19, verdicts_19 = targets(run, TARGETS_19)
    lines += target_lines_19
    missed += [(name, v) for name, v in verdicts_19 if v.state == "missed"]
    lines += ["", "## Results", ""]
    lines += table(run, reps)
    lines += ["", "### W10-W12: faults, beside pebble and billiard; the fork server", ""]
    lines += fault_table(run)
    lines += ["", "### W13: a preloaded table, and the memory of a worker", ""]
    lines += w13_table(run)
    lines += ["", "## Across machines: the cluster pool", ""]
    lines += cluster_table(run)
    lines += ["", "### The limits, measured in the same run", ""]
    lines += limits(run)
    lines += ["", "### W9: a worker killed by SIGKILL in the middle of a map", ""]
    lines += crash_table(run)
    pending = skipped_reasons(run)
    if pending:
        lines += ["", "### Pending multiproc cells", ""] + pending
    fails = failures(run)
    if fails:
        lines += ["", "### Runs that failed", ""] + fails
    lines += ["", "## Missed targets", ""]
    if missed:
        lines += [f"- **{name}**: {v.measured} (needed {v.needed}); see the notes below." for name, v in missed]
    else:
        lines += ["None in this run (pending targets have no multiproc figure yet)."]
    if notes_path and Path(notes_path).exists():
        lines += ["", Path(notes_path).read_text().strip()]
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "meta":
        print(json.dumps(meta(sys.argv[2])))
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "table":
        notes = sys.argv[4] if len(sys.argv) == 5 else None
        Path(sys.argv[3]).write_text(page(sys.argv[2], notes))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
