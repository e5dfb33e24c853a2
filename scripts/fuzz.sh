#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (see README.md, "Fuzzing").
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS (default 60) per target; all targets when none is named. Installs cargo-fuzz if it
# is missing, builds the targets (stable toolchain, RUSTC_BOOTSTRAP=1 for the sanitizer-coverage
# flags), then runs FUZZ_JOBS (default 2) targets at a time, each from a temporary copy of its
# committed corpus fuzz/corpus/TARGET, so the repository is not modified. Prints per target the
# executions and OK or CRASH; a crashing input is kept in fuzz/artifacts/TARGET/ and its path is
# printed. Exits non-zero if any target crashed, timed out or failed to run.
#
# Environment: FUZZ_JOBS (parallel targets, default 2), FUZZ_SANITIZER (cargo fuzz -s: none,
# address, ...; default none: the code under test is safe Rust), FUZZ_ARGS (extra libFuzzer
# flags, e.g. "-max_len=512").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

die() {
    echo "fuzz.sh: $*" >&2
    exit 2
}

SECS=${1:-60}
[ $# -gt 0 ] && shift
[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "SECONDS: expected a positive integer, got '$SECS'"
JOBS=${FUZZ_JOBS:-2}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "FUZZ_JOBS: expected a positive integer, got '$JOBS'"
SANITIZER=${FUZZ_SANITIZER:-none}
read -r -a EXTRA_ARGS <<<"${FUZZ_ARGS:-}"

# cargo-fuzz passes -Z flags (sanitizer coverage); the stable compiler accepts them with this.
export RUSTC_BOOTSTRAP=1

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH=$HOME/.cargo/bin:$PATH
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup) first"
# libfuzzer-sys compiles libFuzzer itself, which is C++.
if ! command -v c++ >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing g++ (libFuzzer is built from C++ sources)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
    else
        die "no C++ compiler (c++): install g++ or clang"
    fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

FUZZ_DIR=$ROOT/fuzz
TARGET_DIR=$FUZZ_DIR/target
mapfile -t ALL < <(cargo fuzz list --fuzz-dir "$FUZZ_DIR")
[ ${#ALL[@]} -gt 0 ] || die "no fuzz targets found in $FUZZ_DIR"
if [ $# -gt 0 ]; then
    TARGETS=("$@")
    for t in "${TARGETS[@]}"; do
        printf '%s\n' "${ALL[@]}" | grep -qxF -- "$t" || die "unknown target '$t' (targets: ${ALL[*]})"
    done
else
    TARGETS=("${ALL[@]}")
fi

# -O with -a: optimised, but with debug assertions and overflow checks, which turn silent
# arithmetic bugs into crashes. One build for all targets (they share every dependency).
BUILD=(cargo fuzz build --fuzz-dir "$FUZZ_DIR" --target-dir "$TARGET_DIR" -O -a -s "$SANITIZER")
echo "== ${BUILD[*]}"
t0=$SECONDS
if [ $# -eq 1 ]; then
    "${BUILD[@]}" "${TARGETS[0]}"
else
    "${BUILD[@]}"
fi
echo "== built in $((SECONDS - t0)) s"

HOST=$(rustc -vV | sed -n 's/^host: //p')
BIN_DIR=$TARGET_DIR/$HOST/release

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ipop-fuzz.XXXXXX")
KEEP_WORK=0
cleanup() {
    # Fuzzers still running (interrupted): each is a `timeout` process we started, whose pid
    # is in its .pid file; timeout passes the signal on to the fuzzer.
    local f
    for f in "$WORK"/*.pid; do
        [ -e "$f" ] || continue
        kill "$(cat "$f")" 2>/dev/null || true
    done
    if [ "$KEEP_WORK" = 0 ]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One target: a private copy of the corpus, a hard time limit above libFuzzer's own, and the
# log and exit status left in $WORK for the summary.
run_one() {
    local t=$1
    local corpus=$WORK/corpus/$t
    mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$t"
    if [ -d "$FUZZ_DIR/corpus/$t" ]; then
        cp -R "$FUZZ_DIR/corpus/$t/." "$corpus/"
    fi
    timeout --kill-after=10 "$((SECS + 60))" \
        "$BIN_DIR/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$FUZZ_DIR/artifacts/$t/" \
        "${EXTRA_ARGS[@]}" "$corpus" >"$WORK/$t.log" 2>&1 &
    local pid=$! rc=0
    echo "$pid" >"$WORK/$t.pid"
    wait "$pid" || rc=$?
    rm -f "$WORK/$t.pid"
    echo "$rc" >"$WORK/$t.rc"
}

echo "== fuzzing ${#TARGETS[@]} target(s), ${SECS} s each, $JOBS at a time"
t0=$SECONDS
running=0
for t in "${TARGETS[@]}"; do
    [ -x "$BIN_DIR/$t" ] || die "$BIN_DIR/$t: not built"
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    echo "   start $t ($((SECONDS - t0)) s)"
    run_one "$t" &
    running=$((running + 1))
done
wait || true
elapsed=$((SECONDS - t0))

failed=0
printf '%-16s %12s %9s %8s  %s\n' target execs exec/s corpus result
for t in "${TARGETS[@]}"; do
    log=$WORK/$t.log
    rc=$(cat "$WORK/$t.rc" 2>/dev/null || echo "?")
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    files=$(find "$WORK/corpus/$t" -type f | wc -l)
    if [ "$rc" = 0 ]; then
        result=OK
    else
        failed=1
        case $rc in
            124 | 137) result="HUNG (killed after $((SECS + 60)) s)" ;;
            70) result="SLOW INPUT (one input ran over 10 s)" ;;
            71) result="OUT OF MEMORY" ;;
            *) result="CRASH (exit $rc)" ;;
        esac
    fi
    printf '%-16s %12s %9s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$files" "$result"
done

for t in "${TARGETS[@]}"; do
    rc=$(cat "$WORK/$t.rc" 2>/dev/null || echo "?")
    [ "$rc" = 0 ] && continue
    KEEP_WORK=1
    echo
    echo "== $t failed (exit $rc); log: $WORK/$t.log"
    # The panic message (the line after "panicked at"), libFuzzer's verdict, and where the
    # input went (with its base64, for when the artifact is gone with the CI machine).
    grep -E -A1 "panicked at" "$WORK/$t.log" | head -n 4 || true
    grep -E "^==[0-9]+== ERROR|Test unit written to|^Base64:|^SUMMARY" "$WORK/$t.log" || true
    echo "-- last lines of the log:"
    tail -n 12 "$WORK/$t.log"
    echo "-- reproduce: $BIN_DIR/$t <artifact>   (or: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -O -a -s $SANITIZER $t <artifact>)"
done

echo
if [ "$failed" != 0 ]; then
    echo "== fuzz: FAILED (fuzzing took ${elapsed} s)"
    exit 1
fi
echo "== fuzz: ok, ${#TARGETS[@]} target(s) in ${elapsed} s"
