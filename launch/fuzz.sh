#!/usr/bin/env bash
# Coverage-guided fuzzing of contrast's readers of untrusted files (docs/reliability.md, "Fuzzing").
#   launch/fuzz.sh TARGET [SECONDS]    fuzz one target (default 60 s)
#   launch/fuzz.sh all SECONDS         every target in turn, SECONDS each
# Targets: checkpoint-manifest checkpoint dataset-manifest dataset dataset-frames dataset-stream npy idx safetensors config png jpeg tar text.
#
# Builds contrast-fuzz with libFuzzer and AddressSanitizer (-DFUZZING, see below) in
# .build/fuzz, then runs each target from its committed seed corpus Tests/Fuzz/corpus/TARGET (read only;
# inputs that add coverage go to .build/fuzz/corpus/TARGET). A crash, a hang (> 10 s per input) or an
# allocation over 2 GB stops the target and leaves the input in .build/fuzz/artifacts/TARGET/: fix the
# reader, then copy the input to Tests/Fuzz/regressions/TARGET/, which the normal test suite replays.
# Prints executions and crashes per target; exits 1 if any target crashed.
# Environment: NICE (default 10), FUZZ_FLAGS (extra libFuzzer flags, e.g. -fork=1 -ignore_crashes=1 to go on
# past a crash).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

targets=(checkpoint-manifest checkpoint dataset-manifest dataset dataset-frames dataset-stream npy idx safetensors config png jpeg tar text)
usage() { echo "usage: launch/fuzz.sh TARGET [SECONDS] | all SECONDS (targets: ${targets[*]})" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
if [[ $1 == all ]]; then
    [[ $# -eq 2 ]] || usage
    chosen=("${targets[@]}")
else
    [[ " ${targets[*]} " == *" $1 "* ]] || usage
    chosen=("$1")
fi
seconds=${2:-60}
nice_level=${NICE:-10}

# libFuzzer's coverage instrumentation and AddressSanitizer, with libFuzzer's library less its main:
# SwiftPM's executable main must run (it calls LLVMFuzzerRunDriver), and -sanitize=fuzzer would link a
# second one. The library is C++ (libstdc++).
scratch=.build/fuzz
toolchain=$(dirname "$(readlink -f "$(command -v swiftc)")")/..
libfuzzer=$(ls "$toolchain"/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a | head -1)
nice -n "$nice_level" swift build -c release --product contrast-fuzz --scratch-path "$scratch" \
    -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp -Xswiftc -DFUZZING \
    -Xlinker --whole-archive -Xlinker "$libfuzzer" -Xlinker --no-whole-archive -Xlinker -lstdc++
binary=$(swift build -c release --scratch-path "$scratch" --show-bin-path)/contrast-fuzz

# The Swift runtime's backtracer would catch a trap before libFuzzer does, and no input would be saved.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:handle_sigill=1:allocator_may_return_null=0}

summary=()
crashed=0
for target in "${chosen[@]}"; do
    corpus=$scratch/corpus/$target
    artifacts=$scratch/artifacts/$target
    log=$scratch/logs/$target.log
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    before=$(find "$artifacts" -type f | wc -l)
    echo "== $target: $seconds s"
    status=0
    CONTRAST_FUZZ_TARGET=$target nice -n "$nice_level" "$binary" "$corpus" "Tests/Fuzz/corpus/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=16384 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 ${FUZZ_FLAGS:-} >"$log" 2>&1 || status=$?
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # A crash ends the run before the final statistics: take the last status line's count.
    [[ -n $executions ]] || executions=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
    if (( status != 0 || crashes > 0 )); then
        crashed=1
        grep -E 'Fatal error|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY|Test unit written' "$log" | head -5 || true
    fi
    summary+=("$(printf '%-20s %12s executions  %d crashes  (exit %d, log %s)' "$target" "${executions:-0}" "$crashes" "$status" "$log")")
done
echo
printf '%s\n' "${summary[@]}"
exit "$crashed"
