#!/usr/bin/env python3
"""bench_link.py -- a slow "network" between S3 clients and a local server, for
scripts/bench-peers.sh: scripts/testserver/faultproxy.py (no faults) with

  --delay-ms N     N ms before each request is forwarded (faultproxy's own --delay-ms), and
  --reply-ms N     N ms before each response head from the server is passed back;
  --rate-mbit R    the bodies limited to R Mbit/s in each direction, shared by all
                   connections (as on one full-duplex link); 0 = no limit.

So with --delay-ms 10 --reply-ms 10 every request costs 20 ms more than on loopback (30 ms
with Expect: 100-continue, whose interim answer is delayed too). Bodies are not delayed,
only rate-limited. What it does not model: the TCP handshake of a new connection costs no
round trip, and there is no loss or TCP slow start.

  bench_link.py --upstream http://127.0.0.1:PORT [--port-file F] [--delay-ms 10]
                [--reply-ms 10] [--rate-mbit 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "testserver"))
import faultproxy  # noqa: E402


class Bucket:
    """A shared rate limit: each read of n bytes reserves n/rate seconds of the link, and the
    reader waits until its slot has passed (less a little burst)."""

    BURST = 0.002  # seconds of traffic that may go through at once

    def __init__(self, bytes_per_s: float) -> None:
        self.rate = bytes_per_s
        self.until = 0.0

    async def take(self, n: int) -> None:
        now = asyncio.get_running_loop().time()
        self.until = max(self.until, now) + n / self.rate
        wait = self.until - now - self.BURST
        if wait > 0:
            await asyncio.sleep(wait)


def limit(reader, bucket: Bucket | None) -> None:
    """Makes reader.read() (which carries every body faultproxy forwards) obey bucket."""
    if bucket is None:
        return
    read = reader.read

    async def limited(n=-1):
        data = await read(n)
        if data:
            await bucket.take(len(data))
        return data

    reader.read = limited


def install(reply_s: float, up: Bucket | None, down: Bucket | None) -> None:
    upstream_readers: set[int] = set()
    read_head = faultproxy.read_head

    async def delayed_read_head(reader):
        head = await read_head(reader)
        if head is not None and reply_s > 0 and id(reader) in upstream_readers:
            await asyncio.sleep(reply_s)
        return head

    faultproxy.read_head = delayed_read_head

    connect = faultproxy.Proxy.connect

    async def slow_connect(self):
        reader, writer = await connect(self)
        upstream_readers.add(id(reader))
        limit(reader, down)
        orig_close = writer.close

        def close():
            upstream_readers.discard(id(reader))
            orig_close()

        writer.close = close
        return reader, writer

    faultproxy.Proxy.connect = slow_connect

    serve = faultproxy.Proxy.serve

    async def slow_serve(self, creader, cwriter):
        limit(creader, up)
        await serve(self, creader, cwriter)

    faultproxy.Proxy.serve = slow_serve


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True)
    p.add_argument("--port-file")
    p.add_argument("--delay-ms", type=int, default=10)
    p.add_argument("--reply-ms", type=int, default=10)
    p.add_argument("--rate-mbit", type=float, default=1000)
    a = p.parse_args()
    rate = a.rate_mbit * 1e6 / 8
    up = Bucket(rate) if rate > 0 else None
    down = Bucket(rate) if rate > 0 else None
    install(a.reply_ms / 1000, up, down)
    argv = ["--upstream", a.upstream, "--delay-ms", str(a.delay_ms), "--quiet"]
    if a.port_file:
        argv += ["--port-file", a.port_file]
    return faultproxy.main(argv)


if __name__ == "__main__":
    sys.exit(main())
