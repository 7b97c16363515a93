#!/usr/bin/env python3
"""bench/multicore_stop.py - how long examples/multicore-echo takes to exit
after SIGTERM while N connections are open.

  python3 bench/multicore_stop.py [BINARY] [CONNS] [THREADS] [ROUNDS]

Starts the example on a free loopback port, opens CONNS connections, has
each echo one message, then sends SIGTERM with every connection still open.
The client closes each connection as soon as it reads EOF (the server's
end()), as a well-behaved peer does. Prints the time from kill() to the
process's exit, and its exit status, per round, then the median.
"""
import os, selectors, signal, socket, subprocess, sys, time

binary = sys.argv[1] if len(sys.argv) > 1 else "build/examples/multicore-echo"
conns = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
threads = sys.argv[3] if len(sys.argv) > 3 else "2"
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5

times = []
for r in range(rounds):
    p = subprocess.Popen([binary, "0", threads], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    port = int(line.split(" port ")[1].split()[0])
    socks = []
    for i in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        socks.append(s)
    for i, s in enumerate(socks):
        s.sendall(b"m%d\n" % i)
    for i, s in enumerate(socks):
        want = b"m%d\n" % i
        got = b""
        while len(got) < len(want):
            got += s.recv(64)
        assert got == want, (got, want)
        s.setblocking(False)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    open_ = len(socks)
    deadline = t0 + 10
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.1):
            try:
                data = key.fileobj.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                open_ -= 1
    status = p.wait(timeout=10)
    dt = (time.monotonic() - t0) * 1000
    times.append(dt)
    print(f"round {r + 1}: {conns} connections, exit status {status}, "
          f"{dt:.1f} ms from SIGTERM to exit")
times.sort()
print(f"median {times[len(times) // 2]:.1f} ms, max {times[-1]:.1f} ms "
      f"({conns} connections, {threads} threads, {rounds} rounds)")
