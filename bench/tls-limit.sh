#!/usr/bin/env bash
# bench/tls-limit.sh - the TLS echo example (examples/tls-echo-server.c)
# beside a raw OpenSSL-on-epoll echo server (bench/tls_raw_server.c, the
# practical limit) and Node's tls (bench/tls_echo_node.js), each server in
# its own process on CPU 0, the load (bench/tls_load.c) on CPU 1.
# Servers alternate, a fresh one per measurement; medians of ROUNDS.
# See bench/README-tls.md. Never run in CI.
#
#   bench/tls-limit.sh [latency] [memory] [cpu]     (default: all three)
#
# env: ROUNDS=3, LAT_N=200 (connections per latency run), N=2000
# (silent connections), IDLE_N=500 (idle TLS connections, set up one at a
# time: 42 ms each where the greeting stalls), SECS=3 (per CPU
# measurement), MB=256 (bulk),
# WEFT_BEFORE=path of another build's tls-echo-server, measured as
# "weft-before" beside the rest.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${BENCH_BUILD:-$root/build-bench}/tls-limit
rounds=${ROUNDS:-3} lat_n=${LAT_N:-200} n=${N:-2000} secs=${SECS:-3}
idle_n=${IDLE_N:-500}
mb=${MB:-256}
what=${*:-latency memory cpu}

mkdir -p "$out"
cmake -S "$root" -B "$out/weft" -DCMAKE_BUILD_TYPE=Release \
    -DWEFT_BUILD_TESTS=OFF \
    -DCMAKE_C_COMPILER_LAUNCHER="$here/cc-no-werror" >"$out/cmake.log"
cmake --build "$out/weft" --target tls-echo-server echo-server \
    -j "$(nproc)" >"$out/build.log"
${CC:-gcc} -O2 -g -Wall -Wextra -o "$out/tls_load" "$here/tls_load.c" \
    -lssl -lcrypto
${CC:-gcc} -O2 -g -Wall -Wextra -o "$out/tls_raw_server" \
    "$here/tls_raw_server.c" -lssl -lcrypto

certs=$(mktemp -d)
results=$(mktemp)
trap 'rm -rf "$certs" "$results"' EXIT
"$root/tests/tls/gen-certs.sh" "$certs" >/dev/null
ulimit -n "$(ulimit -Hn)"
port=$((20000 + RANDOM % 20000))
spid=

# start NAME: a fresh server on a fresh port, on CPU 0.
start() {
    port=$((port + 1))
    local c=$certs/server.pem k=$certs/server.key
    local bin=$out/weft/examples/tls-echo-server
    case $1 in
    weft) TLS_SESSION_TICKETS=0 exec taskset -c 0 "$bin" "$c" "$k" "$port" ;;
    weft-notickets) TLS_SESSION_TICKETS=-1 exec taskset -c 0 "$bin" "$c" "$k" "$port" ;;
    weft-before) exec taskset -c 0 "$WEFT_BEFORE" "$c" "$k" "$port" ;;
    raw) exec taskset -c 0 "$out/tls_raw_server" "$c" "$k" "$port" 2 ;;
    raw-notickets) exec taskset -c 0 "$out/tls_raw_server" "$c" "$k" "$port" 0 ;;
    node) exec taskset -c 0 node "$here/tls_echo_node.js" "$c" "$k" "$port" ;;
    plain) exec taskset -c 0 "$out/weft/examples/echo-server" "$port" ;;
    esac >/dev/null 2>&1 &
    spid=$!
    for _ in $(seq 100); do
        if grep -q ":$(printf '%04X' "$port") 00000000:0000 0A" \
            /proc/net/tcp 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "server $1 did not listen" >&2
    exit 1
}

stop() {
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$spid/status"; }

load() { SERVER_PID=$spid taskset -c 1 "$out/tls_load" "$@"; }

servers="weft raw node${WEFT_BEFORE:+ weft-before}"
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(openssl version), node $(node --version), load avg $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ $what == *latency* ]]; then
    for r in $(seq "$rounds"); do
        for s in $servers; do
            for v in 13 12; do
                start "$s"
                line=$(if [[ $v == 12 ]]; then TLS12=1 load latency "$port" "$lat_n"; else load latency "$port" "$lat_n"; fi)
                stop
                echo "latency $s tls$v $line" | tee -a "$results"
            done
        done
    done
fi

if [[ $what == *memory* ]]; then
    for r in $(seq "$rounds"); do
        for kind in silent idle; do
            for s in plain $servers; do
                [[ $kind == idle && $s == plain ]] && continue
                start "$s"
                sleep 0.5
                before=$(rss_kb)
                count=$n
                [[ $kind == idle ]] && count=$idle_n
                coproc LOAD { load "$kind" "$port" "$count"; }
                read -r _ <&"${LOAD[0]}"
                sleep 2.5 # past weft's 1 s idle check
                after=$(rss_kb)
                # What is live: glibc keeps freed chunks inside the heap
                # (RSS is a high-water mark); malloc_trim(0) gives whole
                # free pages back. Needs gdb and ptrace rights.
                trimmed=-
                if command -v gdb >/dev/null &&
                    gdb -p "$spid" -batch -ex 'call (int) malloc_trim(0)' \
                        >/dev/null 2>&1; then
                    trimmed=$(( ($(rss_kb) - before) * 1024 / count ))
                fi
                eval "exec ${LOAD[1]}>&-"
                wait "$LOAD_PID" 2>/dev/null || true
                stop
                echo "memory $s $kind $before $after" \
                    "$(( (after - before) * 1024 / count )) B per connection," \
                    "$trimmed after malloc_trim" |
                    tee -a "$results"
            done
        done
    done
fi

if [[ $what == *cpu* ]]; then
    for r in $(seq "$rounds"); do
        for s in weft-notickets raw-notickets weft raw node${WEFT_BEFORE:+ weft-before}; do
            start "$s"
            echo "cpu $s $(load pingpong "$port" 50 "$secs")" | tee -a "$results"
            stop
            start "$s"
            echo "cpu $s $(load handshake "$port" 16 "$secs")" | tee -a "$results"
            stop
            start "$s"
            echo "cpu $s $(load bulk "$port" "$mb")" | tee -a "$results"
            stop
        done
    done
fi

echo "# medians of $rounds rounds (min-max)"
python3 - "$results" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == 'latency':
        m = re.search(r'p50 ([\d.]+) p90 [\d.]+ p99 ([\d.]+)', line)
        rows.setdefault(('latency p50 ms', f[1], f[2]), []).append(float(m[1]))
        rows.setdefault(('latency p99 ms', f[1], f[2]), []).append(float(m[2]))
    elif f[0] == 'memory':
        rows.setdefault(('B per connection', f[1], f[2]), []).append(int(f[5]))
        if f[9] != '-':
            rows.setdefault(('B per connection, trimmed', f[1], f[2]), []).append(int(f[9]))
    elif f[0] == 'cpu':
        m = re.search(r'^cpu \S+ (.*?): .*server ([\d.]+) us per (.*)$', line.strip())
        if m:
            rows.setdefault(('server us per ' + m[3], f[1], m[1]), []).append(float(m[2]))
for k in sorted(rows):
    v = rows[k]
    print(f'{k[0]:32} {k[1]:15} {k[2]:22} {statistics.median(v):10.3f} ({min(v):.3f}-{max(v):.3f})')
EOF
