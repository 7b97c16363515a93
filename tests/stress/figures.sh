#!/usr/bin/env bash
# figures.sh - hostile-conditions figures for weft (not tests: these time
# things). Builds a release weft in a scratch directory, builds
# tests/stress/stress.c against it, runs each situation and prints a table.
#
# Usage: tests/stress/figures.sh [SECS]   (default 5 seconds per window)
# Environment: BUILD (default /tmp/weft-figures), IDLE_N (default 10000).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-/tmp/weft-figures}
secs=${1:-5}
idle_n=${IDLE_N:-10000}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target weft_static >/dev/null
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I"$root/include" \
    "$here/stress.c" "$build/libweft.a" -lssl -lcrypto -lpthread \
    -o "$build/stress"

s="$build/stress"
echo "weft $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?'), $(uname -r), $(nproc) CPUs, ${secs}s windows"
echo
slow=$("$s" slow-reader "$secs" 2>/dev/null)
flood=$("$s" flood "$secs" 2>/dev/null)
emp=$("$s" emfile "$secs" 200 2>/dev/null)
emf=$("$s" emfile "$secs" 0 2>/dev/null)
idle=$("$s" idle "$idle_n" 2>/dev/null)

# field LINE KEY -> value
field() { sed -n "s/.*\b$2=\(\"[^\"]*\"\|[^ ]*\).*/\1/p" <<<"$1" | tr -d '"'; }
resp=$(grep respecting <<<"$slow"); ign=$(grep ignoring <<<"$slow")

printf '%-34s %s\n' "figure" "value"
printf '%-34s %s\n' "----------------------------------" "-----------------------------------------"
printf '%-34s %s\n' "slow reader, respecting false" \
  "RSS +$(field "$resp" rss_growth_kib) KiB over ${secs}s; in weft's queue $(field "$resp" weft_queue_kib) KiB, in the kernel $(field "$resp" kernel_sndq_kib) KiB"
printf '%-34s %s\n' "  RSS over time" "$(field "$resp" series)"
printf '%-34s %s\n' "slow reader, ignoring false" \
  "RSS +$(field "$ign" rss_growth_kib) KiB in $(field "$ign" secs)s ($(field "$ign" handed_mib) MiB handed to write(): the caller's choice)"
printf '%-34s %s\n' "flood, weft side paused" \
  "RSS +$(field "$flood" rss_growth_kib) KiB over ${secs}s; $(field "$flood" weft_read_while_paused) B read; peer wrote $(field "$flood" peer_wrote_kib) KiB: $(field "$flood" weft_rcvq_kib) KiB in weft's socket receive queue, $(field "$flood" peer_sndq_kib) KiB in the peer's send queue"
printf '%-34s %s\n' "  RSS / peer bytes over time" "$(field "$flood" series)"
printf '%-34s %s\n' "  after resume()" "$(field "$flood" read_after_resume_kib) KiB read"
printf '%-34s %s\n' "EMFILE, clients paced" \
  "server CPU $(field "$emp" server_cpu_pct)% at $(field "$emp" connects) connects, $(field "$emp" shed) shed, recovered: $(field "$emp" recovered)"
printf '%-34s %s\n' "EMFILE, clients flat out" \
  "server CPU $(field "$emf" server_cpu_pct)% at $(field "$emf" connects) connects, $(field "$emf" shed) shed ($(field "$emf" us_per_shed) us each), recovered: $(field "$emf" recovered)"
printf '%-34s %s\n' "idle connections" \
  "$(field "$idle" connections): heap $(field "$idle" heap_bytes_per_conn) B/conn (mallinfo2), RSS $(field "$idle" rss_bytes_per_conn) B/conn"
echo
echo "raw:"
printf '%s\n' "$slow" "$flood" "$emp" "$emf" "$idle" | sed 's/^/  /'
