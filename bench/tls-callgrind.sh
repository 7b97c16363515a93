#!/usr/bin/env bash
# bench/tls-callgrind.sh - user-space instructions per operation of the TLS
# echo servers (weft's example and the raw OpenSSL server), under
# callgrind, instrumented only while bench/tls_load.c measures: one
# connection ping-ponging 64 bytes, one handshake at a time, bulk echo.
# Deterministic where CPU time on this shared host is not (BENCH.md).
# Run bench/tls-limit.sh first (it builds what this uses).
#
#   bench/tls-callgrind.sh [SECS=3] [MB=8]
#
# WEFT_BEFORE=path of another build's tls-echo-server adds it (with its
# own defaults: it may not know TLS_SESSION_TICKETS) as "weft-before".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${BENCH_BUILD:-$root/build-bench}/tls-limit
secs=${1:-3} mb=${2:-8}
certs=$(mktemp -d)
cg=$(mktemp -d)
trap 'rm -rf "$certs" "$cg"' EXIT
"$root/tests/tls/gen-certs.sh" "$certs" >/dev/null
port=$((20000 + RANDOM % 20000))

start() { # NAME TAG
    port=$((port + 1))
    local c=$certs/server.pem k=$certs/server.key
    local vg=(valgrind --tool=callgrind --instr-atstart=no
        "--callgrind-out-file=$cg/$2.%p")
    case $1 in
    weft) TLS_SESSION_TICKETS=0 exec "${vg[@]}" "$out/weft/examples/tls-echo-server" "$c" "$k" "$port" ;;
    weft-notickets) TLS_SESSION_TICKETS=-1 exec "${vg[@]}" "$out/weft/examples/tls-echo-server" "$c" "$k" "$port" ;;
    weft-before) exec "${vg[@]}" "$WEFT_BEFORE" "$c" "$k" "$port" ;;
    raw) exec "${vg[@]}" "$out/tls_raw_server" "$c" "$k" "$port" 2 ;;
    raw-notickets) exec "${vg[@]}" "$out/tls_raw_server" "$c" "$k" "$port" 0 ;;
    esac >/dev/null 2>&1 &
    spid=$!
    for _ in $(seq 600); do
        grep -q ":$(printf '%04X' "$port") 00000000:0000 0A" /proc/net/tcp &&
            return 0
        sleep 0.05
    done
    echo "server $1 did not listen" >&2
    exit 1
}

stop() { # TAG OPS UNIT NAME
    callgrind_control -d "$spid" >/dev/null 2>&1 || true
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    local ir
    ir=$(cat "$cg/$1".* | awk '/^(summary|totals):/ {s += $2} END {print s}')
    printf '%-15s %-12s %8d ops %12.0f instructions per %s\n' "$4" "$1" \
        "$2" "$(echo "$ir / $2" | bc -l)" "$3"
}

ops() { sed -n 's/^[^:]*: \([0-9]*\) in.*/\1/p'; }

load() { SERVER_PID=$spid CALLGRIND=1 "$out/tls_load" "$@"; }

echo "# $(date -u +%FT%TZ) $(valgrind --version), $(openssl version)"
for s in weft-notickets raw-notickets weft raw ${WEFT_BEFORE:+weft-before}; do
    start "$s" "$s.pp"
    n=$(load pingpong "$port" 1 "$secs" | ops)
    stop "$s.pp" "$n" "round trip" "$s"
    start "$s" "$s.hs"
    n=$(load handshake "$port" 1 "$secs" | ops)
    stop "$s.hs" "$n" handshake "$s"
    start "$s" "$s.bulk"
    load bulk "$port" "$mb" >/dev/null
    stop "$s.bulk" "$mb" MiB "$s"
done
