#!/usr/bin/env bash
# Run a drill set N times in a row and report how many runs passed, and every test that failed.
# A false failure (a correct runbook failing, or a sabotaged twin failing for another reason than
# its sabotage) is a flake: fix its root cause, never retry it away.
#   scripts/flake-check.sh 20          the nightly set (24 drills on 2 workers)
#   scripts/flake-check.sh 3 all       every drill and every sabotaged twin with its expected
#                                      verdict, as `make test` runs them
#   DRILL_JOBS=1 scripts/flake-check.sh 5     one drill after another (default: 2 workers, as
#                                      `make nightly` runs them)
#   HOG=2 scripts/flake-check.sh 5     with 2 busy loops beside every run (a CPU hog on 2 cores),
#                                      stopped when the script ends, however it ends
set -uo pipefail
n=${1:-20}
set_name=${2:-nightly}
jobs=${DRILL_JOBS:-2}
hog=${HOG:-0}
case "$set_name" in
    nightly) target=(drills -m nightly) ;;
    all) target=(tests/integration/test_drill_verdicts.py) ;;
    *) echo "flake-check: unknown set '$set_name' (nightly or all)" >&2; exit 2 ;;
esac
case "$jobs$hog" in
    *[!0-9]*) echo "flake-check: DRILL_JOBS and HOG are whole numbers" >&2; exit 2 ;;
esac
xdist=()
[ "$jobs" -gt 1 ] && xdist=(-n "$jobs" --dist load)
cd "$(dirname "$0")/.."
make -s images >/dev/null
hogs=()
stop_hogs() { [ ${#hogs[@]} -gt 0 ] && kill "${hogs[@]}" 2>/dev/null; hogs=(); }
trap stop_hogs EXIT
trap 'stop_hogs; exit 130' INT TERM
for _ in $(seq 1 "$hog"); do
    sh -c 'while :; do :; done' &
    hogs+=($!)
done
passed=0
log=reports/flake-check.log
mkdir -p reports
: > "$log"
echo "flake-check: $set_name set, $n runs, $jobs worker(s), $hog busy loop(s) beside" | tee -a "$log"
for i in $(seq 1 "$n"); do
    start=$(date +%s)
    out=$(mktemp)
    if .venv/bin/python -m pytest "${target[@]}" -q -p no:randomly "${xdist[@]}" >"$out" 2>&1; then
        passed=$((passed + 1)); verdict=pass
    else
        verdict=FAIL
    fi
    cat "$out" >>"$log"
    summary=$(grep -E '[0-9]+ (passed|failed|errors?)( |,|$)' "$out" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//')
    echo "run $i/$n: $verdict ($(( $(date +%s) - start )) s; ${summary:-no summary})" | tee -a "$log"
    grep -E '^(FAILED|ERROR) ' "$out" | sed 's/^/    /' | tee -a "$log"
    rm -f "$out"
done
echo "$set_name set: $passed of $n runs passed ($((n - passed)) false failures)" | tee -a "$log"
[ "$passed" = "$n" ]
