#!/usr/bin/env bash
# bench/calls.sh - calls from other threads into one loop, weft against
# libuv (uv_async_send + a locked queue), interleaved rounds, medians.
#
#   bash bench/calls.sh                   3 rounds
#   ROUNDS=5 PRODUCERS=4 N=2000000 K=2000 bash bench/calls.sh
#
# Throughput: PRODUCERS threads each make N calls; the loop runs them.
# Latency: K calls 1 ms apart into an idle loop; p50/p99 wake-up (us).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${BENCH_BUILD:-$root/build-bench}
ROUNDS=${ROUNDS:-3}
PRODUCERS=${PRODUCERS:-4}
N=${N:-2000000}
K=${K:-2000}
bash "$here/build.sh" >/dev/null
[ -x "$out/calls_weft" ] || { echo "calls.sh: calls_weft not built" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$ROUNDS"); do
    for impl in weft uv; do
        timeout 120 "$out/calls_$impl" throughput "$PRODUCERS" "$N" >>"$tmp/tp.$impl"
        timeout 120 "$out/calls_$impl" latency "$K" >>"$tmp/lat.$impl"
    done
    echo "round $r done" >&2
done

median() { # median FILE FIELD
    sed -n "s/.*$2=\([0-9.]*\).*/\1/p" "$1" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}
printf '| %s | weft | libuv | weft/libuv |\n| --- | --- | --- | --- |\n' \
    "median of $ROUNDS rounds"
row() { # row LABEL FILE FIELD
    local w u
    w=$(median "$tmp/$2.weft" "$3")
    u=$(median "$tmp/$2.uv" "$3")
    printf '| %s | %s | %s | %.2f |\n' "$1" "$w" "$u" "$(echo "$w / $u" | bc -l)"
}
row "calls/s, $PRODUCERS producers x $N" tp calls_per_s
row "loop CPU ns per call" tp loop_ns_per_call
row "wake-up p50 us (idle loop)" lat p50_us
row "wake-up p99 us" lat p99_us
