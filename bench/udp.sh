#!/usr/bin/env bash
# bench/udp.sh - weft's datagram sockets against a raw recvmmsg/sendmmsg
# loop, libuv's uv_udp (UV_UDP_RECVMMSG) and Node's dgram, in one run.
#
#   echo    64-byte echo: one server socket, 16 client sockets with 4
#           datagrams in flight each (64 in flight)
#   stream  one-way 1,200-byte datagrams from one socket into a sink
#   capped  the same stream with the server held to half a core (a cgroup
#           CPU quota of 5 ms per 10 ms): the generator then outruns the
#           server, whose own cost per datagram decides the rate, instead
#           of the generator's (which the plain stream measures, since on
#           loopback the sender's core does the kernel's receive work).
#           Needs root and a writable cgroup cpu controller; skipped
#           otherwise.
#   gso     the same 1,200-byte datagrams sent as QUIC senders send them:
#           UDP GSO trains of 32. Each server reads with its best idiom:
#           weft and raw with UDP GRO (a train arrives as one buffer;
#           weft splits it into its datagrams again, raw counts them by
#           the segment size), libuv 1.44 and Node without (they have no
#           GRO: the kernel cuts each train into 32 datagrams for them).
#           Not in the default set: run it with WORKLOADS=gso.
#
# Server on CPU 0, load on CPU 1; implementations interleaved for ROUNDS
# rounds, a fresh server per measurement, WARMUP seconds before each
# DURATION-second window; medians with min and max, weft's ratio to each
# peer, and the server's CPU time per datagram (us). Never in CI.
#
#   ROUNDS=5 DURATION=3 IMPLS="weft raw libuv node" bash bench/udp.sh
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${BENCH_BUILD:-$root/build-bench}
[ -n "${CI:-}" ] && { echo "bench/udp.sh: not in CI" >&2; exit 0; }
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
IMPLS=${IMPLS:-weft raw libuv node}
WORKLOADS=${WORKLOADS:-echo stream capped}

# The cgroup that holds a capped server: v2 (cpu.max) or v1 (cfs quota).
cgroup=""
cap_setup() {
    local d
    if [ -w /sys/fs/cgroup/cgroup.subtree_control ] 2>/dev/null; then
        d=/sys/fs/cgroup/weft-udp-bench
        mkdir -p "$d" 2>/dev/null && echo "5000 10000" >"$d/cpu.max" 2>/dev/null &&
            cgroup=$d && return 0
    fi
    d=/sys/fs/cgroup/cpu/weft-udp-bench
    if mkdir -p "$d" 2>/dev/null && echo 10000 >"$d/cpu.cfs_period_us" &&
        echo 5000 >"$d/cpu.cfs_quota_us"; then
        cgroup=$d
        return 0
    fi
    return 1
}
if [[ " $WORKLOADS " == *" capped "* ]] && ! cap_setup; then
    echo "bench/udp.sh: no writable cgroup cpu controller: capped skipped" >&2
    WORKLOADS=${WORKLOADS//capped/}
fi
cap_teardown() {
    [ -n "$cgroup" ] || return 0
    if [ -f "$cgroup/cgroup.procs" ] && [ -n "$(cat "$cgroup/cgroup.procs")" ]; then
        return 0 # still in use; leave it
    fi
    rmdir "$cgroup" 2>/dev/null || true
}
trap cap_teardown EXIT

BENCH_BUILD=$out bash "$here/build.sh" >/dev/null || exit 1
res=$out/results/udp-$(date -u +%Y%m%dT%H%M%SZ).tsv
mkdir -p "$out/results"
: >"$res"
countfile=$(mktemp /tmp/weft-udp-count.XXXXXX)
port=$((20000 + RANDOM % 20000))

server_cmd() { # impl mode port
    case $1 in
    weft) echo "$out/udp_weft $2 $3 $countfile" ;;
    raw) echo "$out/udp_raw $2 $3 $countfile" ;;
    libuv) echo "$out/udp_uv $2 $3 $countfile" ;;
    node) echo "node $here/udp_node.js $2 $3 $countfile" ;;
    esac
}

for ((r = 1; r <= ROUNDS; r++)); do
    for w in $WORKLOADS; do
        for impl in $IMPLS; do
            port=$((port + 1))
            case $w in
            echo) mode=echo gen=echo ;;
            gso) mode=gro gen=gso ;;
            *) mode=sink gen=stream ;;
            esac
            # shellcheck disable=SC2046
            taskset -c 0 $(server_cmd "$impl" "$mode" "$port") &
            spid=$!
            # the whole process (Node's threads too) into the quota
            [ "$w" = capped ] && echo "$spid" >"$cgroup/cgroup.procs"
            # until the port is bound (node takes ~0.1-0.3 s to start)
            for _ in $(seq 100); do
                grep -qi ":$(printf '%04X' "$port") " /proc/net/udp && break
                sleep 0.02
            done
            line=$(timeout $((${DURATION%.*} * 3 + 20)) taskset -c 1 \
                "$out/udp_loadgen" "$gen" "$port" "$spid" "$countfile" \
                "$DURATION" "$WARMUP")
            kill -TERM "$spid" 2>/dev/null
            wait "$spid" 2>/dev/null
            echo "round $r $w $impl: $line" >&2
            printf '%s\t%s\t%s\t%s\n' "$r" "$w" "$impl" "$line" >>"$res"
        done
    done
done
rm -f "$countfile"

python3 - "$res" "$IMPLS" <<'PY'
import sys, statistics as st, re
rows = {}
for line in open(sys.argv[1]):
    r, w, impl, rest = line.rstrip('\n').split('\t')
    kv = dict(x.split('=') for x in rest.split())
    rows.setdefault((w, impl), []).append({k: float(v) for k, v in kv.items()})
impls = sys.argv[2].split()
for w in ('echo', 'stream', 'capped', 'gso'):
    if not any((w, i) in rows for i in impls):
        continue
    title = {'echo': '64-byte echo, 64 in flight (16 clients x 4), datagrams/s answered',
             'stream': 'one-way 1,200-byte stream into a sink, datagrams/s received',
             'capped': 'the same stream, server held to half a core, datagrams/s received',
             'gso': 'the same stream sent in UDP GSO trains of 32, datagrams/s received'}[w]
    print(f'\n### {title}\n')
    print('| impl | median | min | max | weft/this | server us/dgram (median) | server CPU % | client CPU % |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    wmed = st.median(x['rate'] for x in rows.get((w, 'weft'), [{'rate': 0}]))
    for i in impls:
        xs = rows.get((w, i))
        if not xs:
            continue
        rates = [x['rate'] for x in xs]
        med = st.median(rates)
        ratio = f'{wmed / med:.2f}' if med and i != 'weft' else '-'
        print(f"| {i} | {med:,.0f} | {min(rates):,.0f} | {max(rates):,.0f} | {ratio} | "
              f"{st.median(x['server_us'] for x in xs):.3f} | "
              f"{st.median(x['server_cpu'] for x in xs):.0f} | {st.median(x['client_cpu'] for x in xs):.0f} |")
    # same-round ratios: weft / raw per round
    for peer in impls:
        if peer == 'weft' or (w, peer) not in rows or (w, 'weft') not in rows:
            continue
        rs = [a['rate'] / b['rate'] for a, b in zip(rows[(w, 'weft')], rows[(w, peer)]) if b['rate']]
        if rs:
            print(f"\nweft/{peer} per round: " + ' '.join(f'{x:.2f}' for x in rs) + f" (median {st.median(rs):.2f})", end='')
    print()
print(f'\nraw results: {sys.argv[1]}')
PY
