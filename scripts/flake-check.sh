#!/usr/bin/env bash
# Run the nightly drill set N times in a row and report how many runs passed.
# A false failure (a correct runbook failing) is a flake: fix its root cause, never retry it away.
#   scripts/flake-check.sh 20
set -uo pipefail
n=${1:-20}
cd "$(dirname "$0")/.."
make -s images >/dev/null
passed=0
log=reports/flake-check.log
mkdir -p reports
: > "$log"
for i in $(seq 1 "$n"); do
    start=$(date +%s)
    if .venv/bin/python -m pytest drills -m nightly -q -p no:randomly >>"$log" 2>&1; then
        passed=$((passed + 1)); verdict=pass
    else
        verdict=FAIL
    fi
    echo "run $i/$n: $verdict ($(( $(date +%s) - start )) s)" | tee -a "$log"
done
echo "nightly set: $passed of $n runs passed ($((n - passed)) false failures)" | tee -a "$log"
[ "$passed" = "$n" ]
