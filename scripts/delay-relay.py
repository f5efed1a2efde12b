#!/usr/bin/env python3
"""A TCP relay that adds latency, for benchmarks: this kernel has no netem.

    delay-relay.py LISTEN_PORT TARGET_PORT [--delay-ms 10] [--no-handshake]

Listens on 127.0.0.1:LISTEN_PORT and forwards every connection to 127.0.0.1:TARGET_PORT,
holding each direction's bytes for DELAY ms (so a request/response costs 2 x DELAY, the
round trip). Order is preserved: a reader queues each chunk with the time it arrived, and a
writer per direction sleeps until that chunk is due, then writes it. Bandwidth is not limited
here (that is tc's job on the target port); the queue is bounded by what the shaped sender
can push in DELAY.

A new connection also pays for the TCP handshake a real link would cost (one round trip
before the first byte can leave the client); --no-handshake leaves that out.

Loopback only. Runs until killed (SIGTERM/SIGINT).
"""
import argparse
import asyncio
import signal
import sys

CHUNK = 64 * 1024


async def pump(reader, writer, delay, not_before):
    """Copies reader to writer, each chunk written `delay` seconds after it arrived (and
    not before `not_before`, the end of the simulated handshake)."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def read_side():
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((max(loop.time(), not_before) + delay, data))
                if not data:  # EOF travels with the same delay as data
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time(), None))

    async def write_side():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:  # the reading side failed: drop the connection
                writer.close()
                return
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    reading = asyncio.create_task(read_side())
    try:
        await write_side()
    except (ConnectionError, OSError):
        writer.close()
    finally:
        reading.cancel()


async def handle(client_r, client_w, target_port, delay, handshake):
    loop = asyncio.get_running_loop()
    # Client's SYN, server's SYN-ACK: the client's first byte leaves one round trip later.
    not_before = loop.time() + (2 * delay if handshake else 0.0)
    try:
        origin_r, origin_w = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(
            pump(client_r, origin_w, delay, not_before),
            pump(origin_r, client_w, delay, not_before),
        )
    finally:
        for w in (origin_w, client_w):
            w.close()


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("listen_port", type=int)
    p.add_argument("target_port", type=int)
    p.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay (default 10)")
    p.add_argument("--no-handshake", action="store_true", help="new connections cost no round trip")
    a = p.parse_args()
    delay = a.delay_ms / 1000.0

    server = await asyncio.start_server(
        lambda r, w: handle(r, w, a.target_port, delay, not a.no_handshake),
        "127.0.0.1",
        a.listen_port,
    )
    print(f"relay 127.0.0.1:{a.listen_port} -> 127.0.0.1:{a.target_port}, "
          f"{a.delay_ms:g} ms each way", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
