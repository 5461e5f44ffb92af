#!/usr/bin/env bash
# fuzz.sh -- builds the libFuzzer target fuzz_recv with clang into build-fuzz
# and runs it on a copy of the committed corpus (tests/fuzz/corpus) for a
# bounded time: arg 1 in seconds, default 60. Exits non-zero on a crash,
# leak, sanitizer report or timeout; the input that did it is kept in
# build-fuzz/fuzz-artifacts/ (replay it: build-fuzz/tests/fuzz/fuzz_recv FILE).
set -euo pipefail

secs="${1:-60}"
case "$secs" in
  '' | *[!0-9]*) echo "usage: $0 [seconds]" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DSHOAL_FUZZ=ON -DSHOAL_TESTS=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz_recv -j"$(nproc)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$build/fuzz-artifacts"
cp "$root"/tests/fuzz/corpus/* "$work/corpus/"

echo "fuzz_recv: ${secs}s on $(ls "$work/corpus" | wc -l) seed inputs"
# libFuzzer exits non-zero on any finding; set -e passes that on.
"$build/tests/fuzz/fuzz_recv" -max_len=1400 -max_total_time="$secs" -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -dict="$root/tests/fuzz/fuzz_recv.dict" \
  -artifact_prefix="$build/fuzz-artifacts/" "$work/corpus"
echo "fuzz_recv: no crash in ${secs}s"
