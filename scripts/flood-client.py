#!/usr/bin/env python3
"""A bounded flood against an HTTP server on 127.0.0.1, then new clients timed.

Opens SLOW slow-loris connections (part of a request head, then nothing) and IDLE keep-alive
connections (one full answer each, then nothing), from source addresses 127.0.0.2-250 so no
per-address limit is reached; then times PROBES new clients from 127.0.0.1, one after the
other, each a full GET of PATH. Every wait is bounded; the connections close on exit.

Usage: flood-client.py PORT PATH [SLOW [IDLE [PROBES]]]   (defaults 1100 10000 20)
"""

import asyncio
import resource
import socket
import sys
import time

STEP = 2.0  # seconds a flood client waits for its connection or answer
PROBE_LIMIT = 10.0  # seconds a probe may take before it counts as locked out


def source(i):
    return f"127.0.0.{2 + i % 249}"


async def connect(src, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.bind((src, 0))
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), STEP)
    return await asyncio.open_connection(sock=s)


async def get(reader, writer, path):
    """One GET over the connection; True if it was answered 200 in full."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: flood\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200")


async def flood(n, client):
    gate = asyncio.Semaphore(256)

    async def one(i):
        async with gate:
            try:
                return await client(i)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                return None

    return [c for c in await asyncio.gather(*(one(i) for i in range(n))) if c]


async def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    slow_n, idle_n, probes = (list(map(int, sys.argv[3:])) + [1100, 10000, 20][len(sys.argv) - 3:])[:3]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    partial = f"GET {path} HTTP/1.1\r\nHost: flood\r\n".encode()

    async def slow(i):
        r, w = await connect(source(i), port)
        w.write(partial)
        await w.drain()
        return w

    async def idle(i):
        r, w = await connect(source(i), port)
        ok = await asyncio.wait_for(get(r, w, path), STEP)
        return w if ok else None

    t0 = time.monotonic()
    held = await flood(slow_n, slow)
    print(f"slow-loris connected   {len(held):6d} of {slow_n}")
    kept = await flood(idle_n, idle)
    print(f"keep-alive answered    {len(kept):6d} of {idle_n}")
    print(f"flood set up in        {time.monotonic() - t0:6.1f} s")
    times, locked_out = [], 0
    for _ in range(probes):
        t = time.monotonic()
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), PROBE_LIMIT)
            ok = await asyncio.wait_for(get(r, w, path), PROBE_LIMIT - (time.monotonic() - t))
            w.close()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            ok = False
        dt = time.monotonic() - t
        if ok:
            times.append(dt)
        else:
            locked_out += 1
    times.sort()
    if times:
        p50 = times[len(times) // 2] * 1000
        print(f"new clients answered   {len(times):6d} of {probes}: median {p50:.1f} ms, "
              f"slowest {times[-1] * 1000:.1f} ms")
    print(f"new clients locked out {locked_out:6d} (no full answer within {PROBE_LIMIT:.0f} s)")
    for w in held + kept:
        w.close()


asyncio.run(main())
