#!/usr/bin/env bash
# Runs the benchmark table and writes BENCHMARKS.md at the repository root.
#
#   bench/run.sh [REPETITIONS]        (default 7; 5 is the least the table is meant to have)
#
# Every cell is one fresh process: W1–W13 for multiproc, Python's multiprocessing (fork)
# and procspawn (W10-W12: pebble and billiard), the raw socketpair baselines and rayon's W5 ceiling. The latency cells
# (W2, W7p, raw round trip) also run with every process pinned to one CPU. The cells are
# interleaved: repetition 1 of every cell, then repetition 2, ... so that drift on a noisy
# machine lands on every column alike. W9 (a verdict, and Python's map hangs until the
# 20 s timeout) runs in the first repetition only.
#
# The Python side is ../shared/bench/python beside the repository (as on CI), or the
# folder named by MULTIPROC_BENCH_PYTHON. Raw results go to target/bench-results/<time>/.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${1:-7}
# ONLY=<regex>: run only the cells whose name matches (e.g. ONLY='^(w1[0-3]|w12_fs|w4|w4_fs)$').
ONLY=${ONLY:-}
if ! [[ $REPS =~ ^[1-9][0-9]*$ ]]; then
    echo "run.sh: the number of repetitions must be a positive integer, not '$REPS'" >&2
    exit 2
fi

PY_DIR=${MULTIPROC_BENCH_PYTHON:-$REPO/../shared/bench/python}
if [[ ! -f $PY_DIR/bench_mp.py || ! -f $PY_DIR/w9_crash.py || ! -f $PY_DIR/faults_py.py ]]; then
    cat >&2 <<EOF
run.sh: the Python side of the benchmarks is missing: no bench_mp.py, w9_crash.py and faults_py.py in
  $PY_DIR
It lives in shared/bench/python, with shared/ beside the repository (../shared). Put it
there, or point MULTIPROC_BENCH_PYTHON at that folder.
EOF
    exit 2
fi
PY_DIR=$(cd "$PY_DIR" && pwd)
command -v python3 >/dev/null || { echo "run.sh: python3 is not installed" >&2; exit 2; }
# The fault workloads (W10-W12) compare with pebble and billiard: installed if missing.
if ! python3 -c 'import pebble, billiard' 2>/dev/null; then
    echo "== installing pebble and billiard (the Python peers of W10-W12)"
    python3 -m pip install --quiet pebble billiard ||
        { echo "run.sh: cannot install pebble and billiard with pip" >&2; exit 2; }
fi

echo "== building (release)"
cargo build --release --quiet -p multiproc-bench --manifest-path "$REPO/Cargo.toml"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --manifest-path "$REPO/Cargo.toml" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
# One binary per implementation, each linking only itself (see bench/src/lib.rs).
MP=$TARGET_DIR/release/bench-multiproc
PSN=$TARGET_DIR/release/bench-procspawn
RAW=$TARGET_DIR/release/bench-raw
RAYON=$TARGET_DIR/release/bench-rayon
CLUSTER=$TARGET_DIR/release/bench-cluster
OUT=$TARGET_DIR/bench-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
python3 "$REPO/bench/aggregate.py" meta "$REPO" >"$OUT/meta.json"

# One cell a line: <cell> <impl> <command...>, the command quoted for the shell.
# The cell names are the rows of aggregate.py. Cells compared with each other (the
# latency cells and their raw round trip) are next to each other, so drift hits them alike.
c() {
    printf '%s %s' "$1" "$2"
    shift 2
    printf ' %q' "$@"
    echo
}
# Latency cells run as the scheduler places them, with every process on one CPU, and
# (multiproc and raw) with the two ends on two CPUs. Unpinned, a round trip on this
# kind of VM is either ~5 µs (both ends on one CPU) or ~100 µs (a cross-CPU wake-up),
# at random per run; on one CPU it is the software cost; across CPUs, the wake-up's.
PIN_CPU=$(python3 -c 'import os; print(min(os.sched_getaffinity(0)))')
PIN=(taskset -c "$PIN_CPU")
command -v taskset >/dev/null || { echo "run.sh: taskset (util-linux) is not installed" >&2; exit 2; }
PY=(python3 "$PY_DIR/bench_mp.py")
PS=(python3 "$REPO/bench/process_start.py")
W9=(python3 "$PY_DIR/w9_crash.py")
FAULTS=(python3 "$PY_DIR/faults_py.py")

cells() {
    c w1_cs1 multiproc "$MP" w1 --chunksize 1
    c w1_cs1 python "${PY[@]}" w1 --chunksize 1
    c w1_cs1 procspawn "$PSN" w1 --chunksize 1
    c w1_default multiproc "$MP" w1 --chunksize default
    c w1_default python "${PY[@]}" w1 --chunksize default
    c w1_default procspawn "$PSN" w1 --chunksize default
    c w2 multiproc "$MP" w2
    # The sandbox's cost (issue 15): the same cell with sandboxed workers, right after it.
    c w2_sandbox multiproc "$MP" w2 --sandbox full
    c w2 python "${PY[@]}" w2
    c w2 procspawn "$PSN" w2
    c raw_rt raw "$RAW" rt
    # Pinned, each multiproc latency cell runs right after a raw round trip of its own,
    # its reference: the one-CPU round trip is bimodal (~5 or ~7.7 µs) and drifts.
    c raw_rt_1cpu raw "${PIN[@]}" "$RAW" rt
    c w2_1cpu multiproc "${PIN[@]}" "$MP" w2
    c w2_1cpu python "${PIN[@]}" "${PY[@]}" w2
    c w2_1cpu procspawn "${PIN[@]}" "$PSN" w2
    c w7p multiproc "$MP" w7p
    c w7p python "${PY[@]}" w7p
    c raw_rt_1cpu_w7p raw "${PIN[@]}" "$RAW" rt
    c w7p_1cpu multiproc "${PIN[@]}" "$MP" w7p
    c w7p_1cpu python "${PIN[@]}" "${PY[@]}" w7p
    # Across CPUs: the caller on one CPU and the other process on the other (--cross-cpu),
    # the slow mode of the unpinned rows, made certain. multiproc and raw only: the
    # Python side has no such option.
    c raw_rt_xcpu raw "$RAW" rt --cross-cpu
    c w2_xcpu multiproc "$MP" w2 --cross-cpu
    c w7p_xcpu multiproc "$MP" w7p --cross-cpu
    c w3 multiproc "$MP" w3
    c w3 python "${PY[@]}" w3
    c w3 procspawn "$PSN" w3
    c w4 multiproc "$MP" w4
    c w4_sandbox multiproc "$MP" w4 --sandbox full
    c w4 python "${PY[@]}" w4
    c w4 procspawn "$PSN" w4
    c w4_fs multiproc "$MP" w4 --fork-server
    c w4_fs_shared multiproc "$MP" w4 --shared-fork-server
    c process_start multiproc "$MP" process-start
    c process_start python "${PS[@]}" --method fork
    c process_start procspawn "$PSN" process-start
    c process_start python_spawn "${PS[@]}" --method spawn
    c w5 multiproc "$MP" w5
    c w5 python "${PY[@]}" w5
    c w5 procspawn "$PSN" w5
    c w5 rayon "$RAYON" w5
    c w6 multiproc "$MP" w6
    c w6 python "${PY[@]}" w6
    c w6 procspawn "$PSN" w6
    c w6_cs1 multiproc "$MP" w6 --chunksize 1
    c w6_cs1 python "${PY[@]}" w6 --chunksize 1
    c w6_cs1 procspawn "$PSN" w6 --chunksize 1
    c raw_tput raw "$RAW" tput
    c w7q multiproc "$MP" w7q
    c w7q python "${PY[@]}" w7q
    c w8 multiproc "$MP" w8
    c w8 python "${PY[@]}" w8
    fault_cells
    # The cluster (issue 8): the same W1 and W3 through one local nats-server and two
    # worker processes, beside the local pool's cells above. Skipped without nats-server.
    if command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ]; then
        c w1_cs1 cluster "$CLUSTER" w1 --chunksize 1
        c w1_default cluster "$CLUSTER" w1 --chunksize default
        c w2 cluster "$CLUSTER" w2 --n 2000
        c w3 cluster "$CLUSTER" w3
    fi
}

# W10-W12 (crash-heavy, timeout-heavy, respawn) beside pebble and billiard. The Python
# peers replace a worker in tens to hundreds of milliseconds, so they run fewer tasks (a
# rate does not depend on the count) to keep a repetition short. billiard's timeout does
# not end a hung task (it waits the 30 s out, and the run counts as failed): one hang only.
fault_cells() {
    c w10 multiproc "$MP" w10
    c w10_fs multiproc "$MP" w10 --fork-server
    c w10 pebble "${FAULTS[@]}" pebble w10 --n 500
    c w10 billiard "${FAULTS[@]}" billiard w10 --n 50
    c w11 multiproc "$MP" w11
    c w11_fs multiproc "$MP" w11 --fork-server
    c w11 pebble "${FAULTS[@]}" pebble w11
    c w11 billiard "${FAULTS[@]}" billiard w11 --n 20
    c w12 multiproc "$MP" w12
    c w12_fs multiproc "$MP" w12 --fork-server
    c w12 pebble "${FAULTS[@]}" pebble w12 --n 100
    c w12 billiard "${FAULTS[@]}" billiard w12 --n 20
    # W13 preload: 8 workers and a 512 MiB table (exec: one copy each; fork server: the
    # template's preload, shared), beside Python's fork pool with the table in its parent.
    c w13 multiproc "$MP" w13
    c w13_fs multiproc "$MP" w13 --fork-server
    c w13_fs_off multiproc env MULTIPROC_CONTAIN=off "$MP" w13 --fork-server
    c w13 python python3 "$REPO/bench/w13_py.py"
    # The parent's memory per outstanding task (400 000 queued behind a held worker).
    c outstanding multiproc "$MP" outstanding
    c outstanding python python3 "$REPO/bench/outstanding_py.py" --n 100000
}

# W9, first repetition only: <cell> <impl> <command...>.
crash_cells() {
    c w9 multiproc "$MP" w9
    c w9 procspawn "$PSN" w9
    c w9 python_mp_pool_map "${W9[@]}" mp_pool_map
    c w9 python_mp_pool_imap "${W9[@]}" mp_pool_imap
    c w9 python_mp_pool_imap_unordered "${W9[@]}" mp_pool_imap_unordered
    c w9 python_ppe_map "${W9[@]}" ppe_map
    c w9 python_ppe_submit "${W9[@]}" ppe_submit
}

# Runs one cell under a time limit; its stdout, stderr, exit code and wall time are kept.
run_cell() {
    local dir=$1 limit=$2 cell=$3 impl=$4
    shift 4
    local base=$dir/$cell.$impl start end rc=0
    start=$(date +%s%N)
    timeout --kill-after=5 "$limit" "$@" >"$base.out" 2>"$base.err" </dev/null || rc=$?
    end=$(date +%s%N)
    echo "$rc" >"$base.rc"
    printf '  %-14s %-30s %6.2f s%s\n' "$cell" "$impl" "$(((end - start) / 1000000))e-3" \
        "$([[ $rc == 0 ]] || echo "  (exit $rc)")"
}

T0=$(date +%s)
for ((rep = 1; rep <= REPS; rep++)); do
    echo "== repetition $rep/$REPS"
    dir=$OUT/rep$rep
    mkdir -p "$dir"
    while read -r line; do
        [[ -z $ONLY || ${line%% *} =~ $ONLY ]] || continue
        eval "run_cell \"\$dir\" 120 $line"
    done < <(cells)
    if ((rep == 1)) && [[ -z $ONLY || w9 =~ $ONLY ]]; then
        while read -r line; do
            eval "run_cell \"\$dir\" 20 $line"
        done < <(crash_cells)
    fi
done
cp /proc/loadavg "$OUT/load_end" 2>/dev/null || true
echo "== $REPS repetitions in $(($(date +%s) - T0)) s; results in $OUT"

PAGE=$REPO/BENCHMARKS.md
# A run of some cells only (ONLY=...) writes its page beside its results, not over the table.
[[ -z $ONLY ]] || PAGE=$OUT/BENCHMARKS.md
python3 "$REPO/bench/aggregate.py" table "$OUT" "$PAGE" "$REPO/bench/NOTES.md"
echo "== wrote $PAGE"
