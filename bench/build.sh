#!/usr/bin/env bash
# bench/build.sh - builds the benchmark servers and the load generator out
# of tree, in build-bench/ (or $BENCH_BUILD), all with -O2.
#
# weft is built from this repo's sources (Release, static, no tests). If
# weft does not build, the peers are still built, weft_server is left out
# and the script says so on stderr; it exits 0 so that bench/run can still
# measure the peers.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${BENCH_BUILD:-$root/build-bench}
CC=${CC:-gcc}
CFLAGS=${CFLAGS:--O2 -g -std=gnu11 -Wall -Wextra}
jobs=$(nproc)

mkdir -p "$out"

cc() { # cc OUTPUT SOURCE [libs...]
    local o=$1 s=$2
    shift 2
    # Rebuild only when the source or common.h changed.
    if [ -x "$out/$o" ] && [ "$out/$o" -nt "$here/$s" ] &&
        [ "$out/$o" -nt "$here/common.h" ] && [ "${WEFT_FORCE:-}" != 1 ]; then
        return 0
    fi
    # shellcheck disable=SC2086
    $CC $CFLAGS -I"$here" -o "$out/$o" "$here/$s" "$@"
}

cc loadgen loadgen.c
cc raw_server raw_server.c
# shellcheck disable=SC2046 # word splitting wanted
cc uv_server uv_server.c $(pkg-config --cflags --libs libuv)
# shellcheck disable=SC2046
cc event_server event_server.c $(pkg-config --cflags --libs libevent)
# shellcheck disable=SC2046
cc calls_uv calls_bench.c -DUSE_UV $(pkg-config --cflags --libs libuv) -lpthread

# weft: the library from the repo sources, then the server against it.
rm -f "$out/weft.ok"
build_weft() { # build_weft [extra cmake args...]
    cmake -S "$root" -B "$out/weft" -DCMAKE_BUILD_TYPE=Release \
        -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF "$@" \
        >"$out/weft-cmake.log" 2>&1 &&
        cmake --build "$out/weft" --target weft_static -j "$jobs" \
            >"$out/weft-build.log" 2>&1
}
weft_built=0
if build_weft -DCMAKE_C_COMPILER_LAUNCHER=; then
    weft_built=1
elif grep -q 'Werror' "$out/weft-build.log" 2>/dev/null; then
    # The project builds with -Werror; an optimised build can warn where
    # the Debug/RelWithDebInfo builds do not. Measure anyway, but say it.
    echo "build.sh: WARNING: weft's Release build fails on -Werror:" >&2
    grep -E 'error:' "$out/weft-build.log" | sort -u | head -n 5 >&2
    echo "build.sh: retrying with -Wno-error for the benchmark" >&2
    if build_weft -DCMAKE_C_COMPILER_LAUNCHER="$here/cc-no-werror"; then
        weft_built=1
    fi
fi
if [ "$weft_built" = 1 ]; then
    # What libweft.a needs besides itself (OpenSSL, pthread), from the
    # weft.pc the build generates, so a new dependency needs no edit here.
    weft_libs=$(PKG_CONFIG_PATH="$out/weft" pkg-config --static \
        --libs-only-l weft 2>/dev/null | sed 's/-lweft\b//') ||
        weft_libs="-lssl -lcrypto -lpthread"
    # shellcheck disable=SC2086
    if $CC $CFLAGS -I"$here" -I"$root/include" -o "$out/weft_server" \
        "$here/weft_server.c" "$out/weft/libweft.a" $weft_libs -lpthread \
        2>"$out/weft-server.log"; then
        touch "$out/weft.ok"
        # shellcheck disable=SC2086
        $CC $CFLAGS -I"$root/include" -o "$out/calls_weft" \
            "$here/calls_bench.c" "$out/weft/libweft.a" $weft_libs -lpthread
    else
        echo "build.sh: weft_server did not link against libweft.a" \
            "(see $out/weft-server.log):" >&2
        tail -n 15 "$out/weft-server.log" >&2
    fi
else
    echo "build.sh: libweft did not build (see $out/weft-build.log" \
        "and weft-cmake.log); weft is left out:" >&2
    tail -n 15 "$out/weft-build.log" "$out/weft-cmake.log" 2>/dev/null | \
        grep -v '^$' | tail -n 15 >&2 || true
fi
if [ ! -e "$out/weft.ok" ]; then
    rm -f "$out/weft_server"
fi

# UDP (bench/udp.sh): the load generator and the raw, libuv and weft servers.
cc udp_loadgen udp_loadgen.c
cc udp_raw udp_raw.c
# shellcheck disable=SC2046
cc udp_uv udp_uv.c $(pkg-config --cflags --libs libuv)
if [ -e "$out/weft.ok" ]; then
    # shellcheck disable=SC2086
    $CC $CFLAGS -I"$here" -I"$root/include" -o "$out/udp_weft" \
        "$here/udp_weft.c" "$out/weft/libweft.a" $weft_libs -lpthread
fi
