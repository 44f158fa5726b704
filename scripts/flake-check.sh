#!/usr/bin/env bash
# Run a drill set N times in a row and report how many runs passed.
# A false failure (a correct runbook failing, or a sabotaged twin failing for another reason than
# its sabotage) is a flake: fix its root cause, never retry it away.
#   scripts/flake-check.sh 20          the nightly set (12 drills, ~2.5 min a run)
#   scripts/flake-check.sh 3 all       every drill and every sabotaged twin with its expected
#                                      verdict, as `make test` runs them (42 drills, ~12 min a run)
set -uo pipefail
n=${1:-20}
set_name=${2:-nightly}
case "$set_name" in
    nightly) target=(drills -m nightly) ;;
    all) target=(tests/integration/test_drill_verdicts.py) ;;
    *) echo "flake-check: unknown set '$set_name' (nightly or all)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
make -s images >/dev/null
passed=0
log=reports/flake-check.log
mkdir -p reports
: > "$log"
for i in $(seq 1 "$n"); do
    start=$(date +%s)
    if .venv/bin/python -m pytest "${target[@]}" -q -p no:randomly >>"$log" 2>&1; then
        passed=$((passed + 1)); verdict=pass
    else
        verdict=FAIL
    fi
    echo "run $i/$n: $verdict ($(( $(date +%s) - start )) s)" | tee -a "$log"
done
echo "$set_name set: $passed of $n runs passed ($((n - passed)) false failures)" | tee -a "$log"
[ "$passed" = "$n" ]
