#!/usr/bin/env bash
# Runs .ci/run N times in a row (default 3) while a second copy of the test suite loads the
# machine, and prints one line per run: its exit code, wall time and the load average.
#
#   bash .ci/under_load.sh [N]
#
# The load is this checkout's suite run again and again from a clone in $LOAD_DIR, with
# 2 xdist workers and its own --basetemp, so the two suites share nothing but the CPUs: every
# test has its own SKYSTATE_HOME and free ports, every worker its own moto and sshd, and the
# netns test claims its own subnet. Both suites import the same code (the clone is of HEAD).
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
LOAD_DIR="${LOAD_DIR:-/tmp/skystate-load}"
rm -rf "$LOAD_DIR" && git clone -q . "$LOAD_DIR/src"
bash .ci/sshd.sh install
export LOAD_DIR
setsid bash -c 'cd "$LOAD_DIR/src"; while true; do
    rm -rf "$LOAD_DIR/tmp"
    PYTHONPATH="$LOAD_DIR/src" python3 -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup \
        -m "not alone" --basetemp="$LOAD_DIR/tmp" >> "$LOAD_DIR/load.log" 2>&1
done' &
load=$!  # setsid: the loop and its pytest are one process group, killed together at the end
trap 'kill -- -$load 2>/dev/null; sleep 1; pkill -9 -f "$LOAD_DIR" 2>/dev/null' EXIT
failed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    bash .ci/run > "$LOAD_DIR/run-$i.log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || failed=1
    echo "run $i: exit $rc in $(( $(date +%s) - start )) s; load $(cut -d' ' -f1-3 /proc/loadavg);" \
        "$(grep -E ' (passed|failed)' "$LOAD_DIR/run-$i.log" | tr '\n' ' ')"
done
echo "load suite: $(grep -cE ' passed| failed' "$LOAD_DIR/load.log") run(s) finished meanwhile:" \
    "$(grep -E ' passed| failed' "$LOAD_DIR/load.log" | tr '\n' ';')"
exit "$failed"
