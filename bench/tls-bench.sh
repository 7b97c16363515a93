#!/usr/bin/env bash
# bench/tls-bench.sh - builds bench/tls_bench.c against a Release weft and
# runs it and bench/tls_bench_node.js with the same arguments (see
# bench/README-tls.md). Separate from bench/run.
#
#   bench/tls-bench.sh [SECONDS] [CONCURRENCY] [MB] [REPEATS] [PP_SECONDS]
#
# weft and Node alternate, REPEATS times per certificate, so that a
# neighbour's load on a shared machine hits both alike.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${BENCH_BUILD:-$root/build-bench}/tls
secs=${1:-5} conc=${2:-16} mb=${3:-1024} reps=${4:-3} pp=${5:-3}

mkdir -p "$out"
cmake -S "$root" -B "$out/weft" -DCMAKE_BUILD_TYPE=Release \
    -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF \
    -DCMAKE_C_COMPILER_LAUNCHER="$here/cc-no-werror" >"$out/cmake.log"
cmake --build "$out/weft" --target weft_static -j "$(nproc)" >"$out/build.log"
${CC:-gcc} -O2 -g -std=gnu11 -Wall -Wextra -I"$root/include" \
    -o "$out/tls_bench" "$here/tls_bench.c" "$out/weft/libweft.a" \
    -lssl -lcrypto -lpthread

certs=$(mktemp -d)
trap 'rm -rf "$certs"' EXIT
"$root/tests/tls/gen-certs.sh" "$certs" --rsa >/dev/null

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(openssl version), node $(node --version)"
for cert in server server-rsa; do
    for _ in $(seq "$reps"); do
        "$out/tls_bench" "$certs" "$cert" "$secs" "$conc" "$mb" "$pp"
        node "$here/tls_bench_node.js" "$certs" "$cert" "$secs" "$conc" "$mb" "$pp"
    done
done
