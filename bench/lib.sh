# bench/lib.sh - what bench/profile and bench/perf share: how to start
# each implementation's server and drive each workload. Sourced; needs
# $out (the build directory) and $here (bench/).

server_cmd() { # server_cmd IMPL MODE PORT -> fills cmd
    # weft_idle: the environment, not `env`, so valgrind traces the server.
    if [ "$1" = weft_idle ]; then export BENCH_IDLE_MS=30000; else unset BENCH_IDLE_MS; fi
    case $1 in
    weft) cmd=("$out/weft_server" "$2" "$3") ;;
    weft_idle) cmd=("$out/weft_server" "$2" "$3") ;;
    raw) cmd=("$out/raw_server" "$2" "$3") ;;
    libuv) cmd=("$out/uv_server" "$2" "$3") ;;
    libevent) cmd=("$out/event_server" "$2" "$3") ;;
    node) cmd=(node "$here/node_server.js" "$2" "$3") ;;
    esac
}
load_args() { # load_args WORKLOAD -> fills largs
    case $1 in
    pong1) largs=(-w pong -c 50 -P 1) ;;
    pong16) largs=(-w pong -c 50 -P 16) ;;
    http) largs=(-w http -c 100 -P 1) ;;
    bulk) largs=(-g 64) ;;
    esac
}
mode_of() {
    case $1 in
    http) echo http ;;
    bulk) echo sink ;;
    *) echo pong ;;
    esac
}
# A value from loadgen's key=value line: kv KEY LINE.
kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
