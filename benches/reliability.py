#!/usr/bin/env python3
"""Reliability figures of the daemon, measured from outside on loopback.

  idle   500 connections that never send a UUID are held open; 20 real
         calls (UUID, 1 s of audio, hangup) are then made: how many are
         answered, and how long the idle connections last.
  db     first audio back (UUID sent -> first frame received) over 20 calls
         each, with the database up (SQLite) and away (a MySQL address that
         accepts connections and never answers, the worst case), in one run.

Usage: benches/reliability.py [idle|db|all]   (HARK=path/to/hark, default
target/release/hark; build it with `cargo build --release -p hark`).
Traffic goes to 127.0.0.1 only; every step is bounded in time.
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HARK = os.environ.get("HARK", "target/release/hark")


def start(config: str):
    d = tempfile.mkdtemp(prefix="hark-rel-")
    path = os.path.join(d, "hark.toml")
    with open(path, "w") as f:
        f.write(config)
    p = subprocess.Popen(
        [HARK, "serve", "--config", path],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "HARK_LOG": "info"},
        cwd=d,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        line = p.stderr.readline()
        if "listening listener=" in line:
            addr = [w for w in line.split() if w.startswith("address=")][0][8:]
            host, port = addr.rsplit(":", 1)
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, (host, int(port))
    p.kill()
    raise SystemExit("hark did not start")


def config(extra_server="", store=""):
    return f"""
[server]
{extra_server}

[[listener]]
name = "main"
address = "127.0.0.1:0"
agent = "echo"

[agent.echo]
kind = "echo"
delay_ms = 100
{store}
"""


def call(addr, audio_ms=1000, timeout=5.0):
    """One call: UUID, audio frames every 20 ms, hangup. Returns (answered,
    seconds from the UUID to the first frame back)."""
    s = socket.create_connection(addr, timeout=timeout)
    s.settimeout(timeout)
    s.sendall(b"\x01\x00\x10" + uuid.uuid4().bytes)
    t0 = time.monotonic()
    first = None
    got = bytearray()
    frame = b"\x10\x01\x40" + b"\x07\x00" * 160
    s.setblocking(False)
    for _ in range(audio_ms // 20):
        try:
            s.sendall(frame)
        except BlockingIOError:
            pass
        end = time.monotonic() + 0.02
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                if first is None:
                    first = time.monotonic() - t0
                got += chunk
            except BlockingIOError:
                time.sleep(0.002)
    s.setblocking(True)
    try:
        s.sendall(b"\x00\x00\x00")
    except OSError:
        pass
    s.close()
    answered = len(got) > 3 and got[:3] != b"\x00\x00\x00"
    return answered, first


def watch_closes(conns, until):
    """Records when hark closes each connection (from a thread)."""
    import selectors

    sel = selectors.DefaultSelector()
    closed = {}
    for i, (c, _) in enumerate(conns):
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ, i)
    while time.monotonic() < until and len(closed) < len(conns):
        for key, _ in sel.select(timeout=0.05):
            i = key.data
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed[i] = time.monotonic() - conns[i][1]
                sel.unregister(key.fileobj)
    return closed


def idle():
    p, addr = start(config("max_calls = 200\nmax_pending = 64"))
    try:
        conns = []
        for _ in range(500):
            c = socket.create_connection(addr, timeout=5)
            conns.append((c, time.monotonic()))
        result = {}
        t = threading.Thread(
            target=lambda: result.update(watch_closes(conns, time.monotonic() + 15))
        )
        t.start()
        time.sleep(0.5)
        results = [call(addr) for _ in range(20)]
        answered = sum(1 for ok, _ in results if ok)
        print(f"idle: 500 idle connections opened; real calls answered: {answered} of 20")
        t.join()
        closed = list(result.values())
        if closed:
            q = statistics.quantiles(closed, n=100)
            print(
                f"idle: {len(closed)} of 500 closed by hark (evicted by newer ones, or "
                f"at the UUID timeout); lasted p50 {q[49]:.3f} s, p99 {q[98]:.3f} s, "
                f"max {max(closed):.3f} s"
            )
        else:
            print("idle: none of the 500 was closed within 15 s")
        for c, _ in conns:
            c.close()
    finally:
        p.kill()


def black_hole():
    """A TCP server that accepts and never answers: a database that is away
    without refusing (a dead host behind a live balancer, a hung server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1024)
    held = []

    def run():
        while True:
            try:
                c, _ = srv.accept()
                held.append(c)
            except OSError:
                return

    threading.Thread(target=run, daemon=True).start()
    return srv


def db():
    d = tempfile.mkdtemp(prefix="hark-rel-db-")
    up_store = f'\n[store]\nurl = "sqlite://{d}/up.db"\nspool = "{d}/up.spool"\n'
    hole = black_hole()
    port = hole.getsockname()[1]
    away_store = (
        f'\n[store]\nurl = "mysql://root@127.0.0.1:{port}/test"\nspool = "{d}/away.spool"\n'
    )
    out = {}
    for name, store in (("up", up_store), ("away", away_store)):
        p, addr = start(config("", store))
        try:
            time.sleep(3)  # the writer's first check of the database
            firsts = []
            for _ in range(20):
                ok, first = call(addr, audio_ms=200)
                if first is not None:
                    firsts.append(first * 1000)
            out[name] = firsts
        finally:
            p.kill()
    for name, firsts in out.items():
        firsts.sort()
        print(
            f"db {name}: first audio back p50 {statistics.median(firsts):.2f} ms, "
            f"max {max(firsts):.2f} ms over {len(firsts)} calls"
        )


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("idle", "all"):
        idle()
    if what in ("db", "all"):
        db()
