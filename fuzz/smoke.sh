#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS; fails if any target crashes, leaks,
# times out or runs out of memory. CI runs `fuzz/smoke.sh 30`.
#
# Usage: fuzz/smoke.sh SECONDS [TARGET...]      (from the repository root or anywhere)
#
#   SECONDS   run time per target (libFuzzer -max_total_time)
#   TARGET    targets to run; default: every target `cargo fuzz list` names
#
# Environment:
#   FUZZ_SCRATCH  where runs write the inputs they discover (default: $TMPDIR/fuzz-work or
#                 /tmp/fuzz-work); one directory per target. The committed seeds in
#                 fuzz/corpus/TARGET are read, never written: only seeds are committed.
#   FUZZ_LOGS     where each target's libFuzzer log goes (default: $FUZZ_SCRATCH/logs)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Crash inputs land
# in fuzz/artifacts/TARGET/ (ignored by git); reproduce one with
# `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-…`, minimise it with
# `cargo +nightly fuzz tmin TARGET fuzz/artifacts/TARGET/crash-…`.
set -euo pipefail

usage() {
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
}
[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
seconds=$1
shift

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
scratch=${FUZZ_SCRATCH:-${TMPDIR:-/tmp}/fuzz-work}
logs=${FUZZ_LOGS:-$scratch/logs}
dict=$fuzz_dir/dict/sip.dict
mkdir -p "$logs"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "smoke.sh: cargo-fuzz is missing; run: cargo install cargo-fuzz" >&2
    exit 2
fi

cd "$fuzz_dir/.."
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$fuzz_dir")
fi

echo "== building ${#targets[@]} fuzz target(s)"
if [[ $# -gt 0 ]]; then
    for t in "${targets[@]}"; do
        cargo +nightly fuzz build --fuzz-dir "$fuzz_dir" "$t"
    done
else
    cargo +nightly fuzz build --fuzz-dir "$fuzz_dir"
fi

failed=()
summary=()
for t in "${targets[@]}"; do
    work=$scratch/$t
    seeds=$fuzz_dir/corpus/$t
    log=$logs/$t.log
    mkdir -p "$work" "$seeds"
    echo "== $t: ${seconds}s (new inputs in $work, log in $log)"
    status=0
    # The scratch corpus comes first: libFuzzer writes new inputs to the first directory.
    cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" "$t" "$work" "$seeds" -- \
        -max_total_time="$seconds" -dict="$dict" -rss_limit_mb=2048 -max_len=20000 \
        -timeout=25 -print_final_stats=1 >"$log" 2>&1 || status=$?
    # The last status line (`#N DONE cov: … corp: … exec/s: …`) and the run count.
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    runs=$(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1 || true)
    echo "   ${done_line:-no DONE line}"
    echo "   ${runs:-no run count}"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$done_line")
    if [[ $status -ne 0 ]]; then
        failed+=("$t")
        echo "   FAILED (exit $status); last lines of the log:"
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|artifact' "$log" | head -n 20 | sed 's/^/   | /' || true
        summary+=("$(printf '%-10s %6ss %12s %8s %7s  %s' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${corp:-?}" FAIL)")
    else
        summary+=("$(printf '%-10s %6ss %12s %8s %7s  %s' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${corp:-?}" ok)")
    fi
done

echo "== summary"
printf '%-10s %7s %12s %8s %7s  %s\n' target time execs exec/s corpus result
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "smoke.sh: crashes in: ${failed[*]} (inputs in $fuzz_dir/artifacts/)" >&2
    exit 1
fi
echo "smoke.sh: ${#targets[@]} target(s) ran ${seconds}s each without a crash"
