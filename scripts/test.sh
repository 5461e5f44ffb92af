#!/usr/bin/env bash
# test.sh -- the whole test suite, as CI runs it (.ci/run calls this).
#
#   1. scripts/setup.sh                        installs missing Debian packages
#   2. build/       -DSHOAL_WERROR=ON          unit, simulation and process tests
#   3. build-asan/  -DSHOAL_SANITIZE=ON        the same suite under ASan + UBSan,
#                                              less the tests labelled heavy
#   4. scripts/fuzz.sh 60                      libFuzzer on the receive path
#
# Stops at the first failure and says which step failed; prints a summary at
# the end. Sized for 2 cores: 4.5 minutes from nothing for the membership
# suite when this was written; the budget for everything is 15 minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

JOBS=${SHOAL_JOBS:-2}
FUZZ_SECONDS=${SHOAL_FUZZ_SECONDS:-60}
# Safety net per ctest run; every test also has its own TIMEOUT.
CTEST_LIMIT=${SHOAL_CTEST_LIMIT:-1500}
LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/shoal-test.XXXXXX")

SUMMARY=()
CURRENT=""
PASSED=0 # ctest results over both suites
FAILED=0
T0=$SECONDS

on_exit() {
    local rc=$?
    if [[ $rc -ne 0 && -n "$CURRENT" ]]; then
        echo
        echo "=================================================================="
        echo "test.sh: FAILED in step: $CURRENT (exit $rc)"
        echo "test.sh: logs in $LOG_DIR"
        echo "=================================================================="
        SUMMARY+=("FAIL  $(printf '%-34s' "$CURRENT")")
        print_summary
        echo "ctest: ${PASSED} passed, ${FAILED} failed"
    fi
}
trap on_exit EXIT

print_summary() {
    echo
    echo "---------------------------- summary -----------------------------"
    local line
    for line in "${SUMMARY[@]}"; do
        echo "  $line"
    done
    echo "  total time: $((SECONDS - T0)) s"
    echo "------------------------------------------------------------------"
}

# step NAME CMD...: runs CMD, records its duration; the EXIT trap reports a failure.
step() {
    local name=$1
    shift
    CURRENT=$name
    echo
    echo "==> $name"
    local t=$SECONDS
    "$@"
    SUMMARY+=("ok    $(printf '%-34s' "$name") $((SECONDS - t)) s")
    CURRENT=""
}

# run_ctest DIR LABEL [CTEST-ARGS]: runs the suite in DIR; output kept in $LOG_DIR/LABEL.log.
# Extra arguments go to ctest (the ASan run leaves out tests labelled heavy).
run_ctest() {
    local dir=$1 log="$LOG_DIR/$2.log" rc=0
    shift 2
    timeout --kill-after=30 "$CTEST_LIMIT" \
        ctest --test-dir "$dir" --output-on-failure -j"$JOBS" "$@" 2>&1 | tee "$log" || rc=$?
    # ctest's closing line: "100% tests passed, 0 tests failed out of 42"
    local line
    line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1 || true)
    if [[ -n "$line" ]]; then
        local total failed
        failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
        total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
        PASSED=$((PASSED + total - failed))
        FAILED=$((FAILED + failed))
        if [[ "$total" -eq 0 ]]; then
            echo "test.sh: ctest in $dir ran no test" >&2
            return 1
        fi
    fi
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "test.sh: ctest in $dir exceeded ${CTEST_LIMIT}s" >&2
    fi
    if [[ -z "$line" && $rc -eq 0 ]]; then
        echo "test.sh: ctest in $dir printed no result line" >&2
        return 1
    fi
    return "$rc"
}

configure_build() {
    local dir=$1
    shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHOAL_WERROR=ON "$@"
    cmake --build "$dir" -j"$JOBS"
}

step "setup (scripts/setup.sh)" bash scripts/setup.sh

step "build (build/, -Werror)" configure_build build -DSHOAL_SANITIZE=OFF
step "tests (build/)" run_ctest build tests

step "build (build-asan/, ASan+UBSan)" configure_build build-asan -DSHOAL_SANITIZE=ON
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
step "tests (build-asan/, ASan+UBSan)" run_ctest build-asan tests-asan -LE heavy

if [[ ! -f scripts/fuzz.sh ]]; then
    CURRENT="fuzz (scripts/fuzz.sh)"
    echo "test.sh: scripts/fuzz.sh is missing" >&2
    exit 1
fi
step "fuzz (scripts/fuzz.sh ${FUZZ_SECONDS})" bash scripts/fuzz.sh "$FUZZ_SECONDS"

rm -rf "$LOG_DIR" # kept only when a step fails
print_summary
echo "all steps passed"
echo "ctest: ${PASSED} passed, ${FAILED} failed"
