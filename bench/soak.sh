#!/usr/bin/env bash
# Soak: runs the chaos suite (tests/chaos.rs) again and again for N minutes (default 20),
# each session with a fresh random seed, and prints the figures: runs, items, faults
# injected, lost, wrong, hung, leaked. Logs of failed sessions (with their seeds, to
# replay) go to target/soak/.
#
#   bench/soak.sh [minutes] [seconds per session]
#
# The environment reaches the suite: MULTIPROC_CHAOS_ALL=1 adds the known-broken faults,
# MULTIPROC_CHAOS_FAULTS=... narrows them (see tests/chaos.rs).
set -u
minutes=${1:-20}
session=${2:-60}
cd "$(dirname "$0")/.."
logs=target/soak
mkdir -p "$logs"
cargo test -q -p multiproc --test chaos --no-run || exit 1

end=$(( $(date +%s) + minutes * 60 ))
sessions=0 runs=0 items=0 faults=0 lost=0 wrong=0 hung=0 leaked=0 failed=0
failed_seeds=""
while [ "$(date +%s)" -lt "$end" ]; do
    left=$(( end - $(date +%s) ))
    secs=$(( left < session ? left : session ))
    [ "$secs" -lt 5 ] && break
    seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
    # The test watchdog (test_init!) allows the session its length and ten minutes more.
    out=$(MULTIPROC_TEST_WATCHDOG=$(( secs + 600 )) \
        MULTIPROC_CHAOS_SEED=$seed MULTIPROC_CHAOS_SECONDS=$secs MULTIPROC_CHAOS_KEEP_GOING=1 \
        cargo test -q -p multiproc --test chaos 2>&1)
    rc=$?
    sessions=$(( sessions + 1 ))
    summary=$(printf '%s\n' "$out" | grep -m1 '^CHAOS SUMMARY' || true)
    field() { printf '%s\n' "$summary" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    if [ -n "$summary" ]; then
        runs=$(( runs + $(field runs) )); items=$(( items + $(field items) ))
        faults=$(( faults + $(field faults) )); lost=$(( lost + $(field lost) ))
        wrong=$(( wrong + $(field wrong) )); leaked=$(( leaked + $(field leaked) ))
    fi
    if printf '%s\n' "$out" | grep -q 'CHAOS HANG'; then
        hung=$(( hung + 1 ))
    fi
    if [ "$rc" -ne 0 ]; then
        failed=$(( failed + 1 ))
        failed_seeds="$failed_seeds $seed"
        printf '%s\n' "$out" > "$logs/seed-$seed.log"
    fi
    printf 'session %d seed %s: %s\n' "$sessions" "$seed" "${summary:-no summary (exit $rc)}"
done

echo
echo "soak: $minutes min, $sessions sessions, $runs runs, $items items, $faults faults injected"
echo "soak: lost $lost, wrong $wrong, hung $hung, leaked $leaked, failed sessions $failed${failed_seeds:+ (seeds:$failed_seeds; logs in $logs/)}"
[ "$failed" -eq 0 ]
