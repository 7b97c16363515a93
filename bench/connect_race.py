#!/usr/bin/env python3
"""The table of issue 12: time to connect when a name's first address is
bad, weft (bench/connect_race.c) against Node 20's net.connect (whose
autoSelectFamily is on by default). Names come from nss_wrapper's hosts
file, so both clients resolve them the same way. Loopback only.

usage: bench/connect_race.py path/to/connect_race [runs]
"""
import os, socket, subprocess, sys, tempfile, time, statistics

WRAP = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"
NODE = ("const t0=process.hrtime.bigint();"
        "const s=require('net').connect({host:process.argv[1],port:+process.argv[2]});"
        "s.on('connect',()=>{console.log((Number(process.hrtime.bigint()-t0)/1e6).toFixed(1),s.remoteAddress);s.destroy()});"
        "s.on('error',e=>console.log((Number(process.hrtime.bigint()-t0)/1e6).toFixed(1),'error',e.message))")

def listener(fam, addr, port, backlog):
    l = socket.socket(fam)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    l.bind((addr, port)); l.listen(backlog)
    return l

def run(cmd, env, timeout):
    t = time.time()
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                             timeout=timeout).stdout.strip()
    except subprocess.TimeoutExpired:
        out = "timeout after %.0f s" % (time.time() - t)
    return out

def main():
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    hosts = tempfile.NamedTemporaryFile("w", delete=False)
    hosts.write("::1 lh.test\n127.0.0.1 lh.test\n"
                "fd00::99 unreach.test\n127.0.0.1 unreach.test\n"
                "::1 drop.test\n127.0.0.1 drop.test\n")
    hosts.close()
    env = dict(os.environ, LD_PRELOAD=WRAP, NSS_WRAPPER_HOSTS=hosts.name)
    good = listener(socket.AF_INET, "127.0.0.1", 0, 128)
    port = good.getsockname()[1]
    drop = listener(socket.AF_INET6, "::1", port, 0)
    filler = socket.create_connection(("::1", port))  # fills the queue
    # nothing on ::1 at this one: refused at once
    good2 = listener(socket.AF_INET, "127.0.0.1", 0, 128)
    port2 = good2.getsockname()[1]
    cases = [("localhost, server on 127.0.0.1 only (::1 refused)", "lh.test",
              good2, port2),
             ("fd00::99 unreachable, then 127.0.0.1", "unreach.test", good,
              port),
             ("::1 drops SYNs (full accept queue), then 127.0.0.1",
              "drop.test", good, port)]
    for name, host, good, port in cases:
        for who, cmd in (("weft", [binary, host, str(port)]),
                         ("node", ["node", "-e", NODE, host, str(port)])):
            res = []
            for _ in range(runs):
                out = run(cmd, env, 20)
                res.append(out)
                # accept what reached the good server
                good.settimeout(0.05)
                try:
                    while True: good.accept()[0].close()
                except OSError: pass
            ms = [float(r.split()[0]) for r in res if r and r[0].isdigit()]
            print("%-52s %-4s median %8.1f ms  min %6.1f  max %8.1f  (%s)" % (
                name, who, statistics.median(ms) if ms else -1,
                min(ms) if ms else -1, max(ms) if ms else -1, res[-1]))
    filler.close(); drop.close(); good.close(); good2.close(); os.unlink(hosts.name)

main()
