#!/usr/bin/env python3
"""faultproxy.py -- an HTTP/1.1 proxy that makes S3 and STS misbehave, for s3role's tests.

It sits between s3role and the local test server (s3role_moto.py): point both --endpoint-url
and --sts-endpoint at it. Requests are forwarded byte for byte (SigV4 signatures stay valid:
the Host header is the proxy's, as the client signed it), bodies are streamed (a 1 GiB object
passes through in 256 KiB pieces), and client connections are kept alive, each with its own
upstream connection.

Each request is sorted into a class:
  sts    an STS call: signed for service "sts", or an unsigned awsQuery POST to "/" with a
         form body (AssumeRoleWithWebIdentity, AssumeRoleWithSAML)
  s3     every other request, except:
  other  the test server's own endpoints (/s3role-test/..., /moto-api/...): never faulted

Per class, each fault kind has a fraction of requests it hits (decided by a seeded random
generator per class, so a run is reproducible for the same order of requests):
  slowdown        S3: 503 SlowDown; STS: 400 Throttling (real error bodies; none for HEAD)
  internal        S3: 500 InternalError; STS: 500 InternalFailure
  reset_request   the request never reaches the server: the proxy reads part of its body
                  (or just its head) and resets the connection (TCP RST)
  reset_response  the server handles the request; the proxy forwards the response head and
                  part of the body (or part of the head, when there is no body) and resets
  stall           the proxy reads the request head and never answers, until stall is
                  switched off for that class; then it closes the connection
  stall_body      answers with a body: the head and part of the body, then nothing more
                  until stall_body is switched off (then a close). Other requests pass.
  truncate        GET answers of 200/206 with a body: the head with the full Content-Length,
                  then part of the body, then a clean close (FIN). Other requests pass.
A class may also be limited to some HTTP methods ("methods": ["GET", "HEAD"]), and S3's
server-side copies (requests with x-amz-copy-source: CopyObject, UploadPartCopy) let through
("copies": false), so that a rename still works while uploads of new bytes fail.

CLI:
  --upstream URL       the server to forward to (required), e.g. http://127.0.0.1:5000
  --port N             listen port on 127.0.0.1 (0 = a free one; default 0)
  --port-file PATH     once listening, write {"port", "endpoint", "pid"} there (atomically;
                       it is left there at exit)
  --seed N             seed of the fault decisions (default 1)
  --delay-ms N         add N ms before forwarding each request (also a crude link shaper)
  --faults JSON        initial faults, as for POST /faultproxy/faults
  --quiet              log only warnings and errors (each injected fault is logged at info)

Control endpoints (answered by the proxy itself; never faulted):
  GET  /faultproxy/state    JSON: faults, methods, injected counts by class and kind,
                            requests seen by class, delay_ms, seed
  POST /faultproxy/faults   JSON body {"s3": {"slowdown": 0.2, "internal": 0.1,
                            "methods": ["GET"]}, "sts": {"stall": 1}, "seed": 7}: replaces the
                            faults of each class given (an empty object clears them); a new
                            seed restarts the random sequences. Answers with the state.
  POST /faultproxy/reset    no faults, stalls released, counts zeroed
  POST /faultproxy/delay    body: milliseconds

The process exits on SIGTERM/SIGINT, and by itself when its parent process goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import socket
import struct
import sys
import tempfile
import urllib.parse
import uuid

KINDS = ("slowdown", "internal", "reset_request", "reset_response", "stall", "stall_body",
         "truncate")
CLASSES = ("s3", "sts")
CHUNK = 256 << 10
HEAD_LIMIT = 1 << 20

log = logging.getLogger("faultproxy")


class Closed(Exception):
    """The connection cannot carry another request."""


class Request:
    def __init__(self, head: bytes) -> None:
        self.head = head
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise Closed(f"bad request line {lines[0]!r}")
        self.method, self.target, self.version = parts
        self.path = urllib.parse.urlsplit(self.target).path
        self.headers = parse_headers(lines[1:])

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def body_framing(self) -> tuple[str, int]:
        return framing(self.headers)

    def wants_close(self) -> bool:
        conn = (self.header("connection") or "").lower()
        return "close" in conn or (self.version == "HTTP/1.0" and "keep-alive" not in conn)


class Response:
    def __init__(self, head: bytes) -> None:
        self.head = head
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            self.status = int(parts[1])
        except (IndexError, ValueError):
            raise Closed(f"bad status line {lines[0]!r}") from None
        self.version = parts[0]
        self.headers = parse_headers(lines[1:])

    def body_framing(self, method: str) -> tuple[str, int]:
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            return ("none", 0)
        kind, n = framing(self.headers)
        return ("close", 0) if kind == "none" and "content-length" not in self.headers else (kind, n)

    def wants_close(self) -> bool:
        conn = (self.headers.get("connection") or "").lower()
        return "close" in conn or self.version == "HTTP/1.0"


def parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return headers


def framing(headers: dict[str, str]) -> tuple[str, int]:
    """How a message's body is delimited: ("chunked", 0), ("length", n) or ("none", 0)."""
    if "chunked" in (headers.get("transfer-encoding") or "").lower():
        return ("chunked", 0)
    if "content-length" in headers:
        try:
            n = int(headers["content-length"])
        except ValueError:
            raise Closed("bad Content-Length") from None
        return ("length", n) if n > 0 else ("none", 0)
    return ("none", 0)


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The next message head, or None at a clean end of the connection."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise Closed("connection ended inside a head") from None
        return None
    except asyncio.LimitOverrunError:
        raise Closed("head too large") from None


async def copy_length(reader, writer, n: int, stop_after: int | None = None) -> int:
    """Copies n bytes (or only stop_after of them); returns the bytes copied."""
    want = n if stop_after is None else min(n, stop_after)
    done = 0
    while done < want:
        data = await reader.read(min(CHUNK, want - done))
        if not data:
            raise Closed("connection ended inside a body")
        if writer is not None:
            writer.write(data)
            await writer.drain()
        done += len(data)
    return done


async def copy_chunked(reader, writer, stop_after: int | None = None) -> int:
    """Copies a chunked body as it is framed (sizes, data, trailers); with stop_after, stops
    once that many framed bytes went through. Returns the framed bytes copied."""
    done = 0

    def out(data: bytes) -> bool:
        nonlocal done
        if stop_after is not None and done + len(data) > stop_after:
            data = data[: stop_after - done]
        if writer is not None:
            writer.write(data)
        done += len(data)
        return stop_after is not None and done >= stop_after

    while True:
        line = await reader.readuntil(b"\r\n")
        if out(line):
            return done
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, then the empty line
                t = await reader.readuntil(b"\r\n")
                if out(t) or t == b"\r\n":
                    break
            if writer is not None:
                await writer.drain()
            return done
        left = size + 2  # data and its CRLF
        while left:
            data = await reader.read(min(CHUNK, left))
            if not data:
                raise Closed("connection ended inside a chunk")
            left -= len(data)
            if out(data):
                return done
            if writer is not None:
                await writer.drain()


async def copy_body(reader, writer, kind: str, n: int, stop_after: int | None = None) -> int:
    if kind == "length":
        return await copy_length(reader, writer, n, stop_after)
    if kind == "chunked":
        return await copy_chunked(reader, writer, stop_after)
    if kind == "close":
        done = 0
        while stop_after is None or done < stop_after:
            data = await reader.read(CHUNK if stop_after is None else min(CHUNK, stop_after - done))
            if not data:
                break
            if writer is not None:
                writer.write(data)
                await writer.drain()
            done += len(data)
        return done
    return 0


async def flush(writer) -> None:
    """Waits until everything written is in the kernel's hands."""
    writer.transport.set_write_buffer_limits(high=0)
    await writer.drain()


async def hold(released: asyncio.Event, reader) -> None:
    """Waits until `released` is set or the client goes away (what it still sends is read
    and dropped)."""
    async def gone():
        while await reader.read(CHUNK):
            pass
    tasks = {asyncio.ensure_future(released.wait()), asyncio.ensure_future(gone())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def reset(writer) -> None:
    """Closes with a TCP RST (SO_LINGER 0), as a peer that crashed would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def classify(req: Request) -> str:
    if req.path.startswith(("/s3role-test/", "/moto-api/")):
        return "other"
    auth = req.header("authorization") or ""
    if "/sts/aws4_request" in auth:
        return "sts"
    if "/iam/aws4_request" in auth:
        return "other"
    ctype = (req.header("content-type") or "").lower()
    if (req.method == "POST" and req.path == "/" and not auth
            and ctype.startswith("application/x-www-form-urlencoded")):
        return "sts"
    return "s3"


def error_response(cls: str, kind: str, method: str, close: bool) -> bytes:
    rid = uuid.uuid4().hex[:16].upper()
    if cls == "sts":
        status, code, message = ((400, "Throttling", "Rate exceeded") if kind == "slowdown"
                                 else (500, "InternalFailure", "The request processing has failed "
                                       "because of an unknown error, exception or failure."))
        fault = "Sender" if status == 400 else "Receiver"
        body = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                f"<Error><Type>{fault}</Type><Code>{code}</Code><Message>{message}</Message>"
                f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode()
        ctype = "text/xml"
    else:
        status, code, message = ((503, "SlowDown", "Please reduce your request rate.")
                                 if kind == "slowdown" else
                                 (500, "InternalError", "We encountered an internal error. "
                                  "Please try again."))
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                f"<RequestId>{rid}</RequestId><HostId>faultproxy</HostId></Error>").encode()
        ctype = "application/xml"
    if method == "HEAD":
        body = b""
    reason = {400: "Bad Request", 500: "Internal Server Error", 503: "Slow Down"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nx-amz-request-id: {rid}\r\nServer: faultproxy\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode() + body


class ClassFaults:
    """The faults of one class of requests, and what they did."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.fractions: dict[str, float] = {}
        self.methods: set[str] | None = None
        self.copies = True
        self.rng = random.Random(f"{seed}/{name}")
        self.injected = {k: 0 for k in KINDS}
        self.requests = 0
        self.released = asyncio.Event()

    def configure(self, spec: dict) -> None:
        methods = spec.get("methods")
        copies = spec.get("copies", True)
        if not isinstance(copies, bool):
            raise ValueError(f"{self.name}.copies: true or false")
        fractions = {}
        for k, v in spec.items():
            if k in ("methods", "copies"):
                continue
            if k not in KINDS:
                raise ValueError(f"unknown fault kind {k!r}; kinds: {', '.join(KINDS)}")
            v = float(v)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{self.name}.{k}: a fraction is between 0 and 1")
            if v > 0:
                fractions[k] = v
        if sum(fractions.values()) > 1.0 + 1e-9:
            raise ValueError(f"{self.name}: the fractions add up to more than 1")
        self.methods = {m.upper() for m in methods} if methods else None
        self.copies = copies
        stalls = {"stall", "stall_body"}
        had_stall = bool(stalls & set(self.fractions))
        self.fractions = fractions
        if had_stall and not stalls & set(fractions):
            self.release()

    def release(self) -> None:
        """Lets every stalled connection of this class go (they are closed)."""
        self.released.set()
        self.released = asyncio.Event()

    def choose(self, method: str, is_copy: bool) -> str | None:
        self.requests += 1
        if not self.fractions or (self.methods is not None and method not in self.methods):
            return None
        if is_copy and not self.copies:
            return None
        u, acc = self.rng.random(), 0.0
        for kind in KINDS:
            acc += self.fractions.get(kind, 0.0)
            if u < acc:
                return kind
        return None

    def cut(self, n: int) -> int:
        """Where to cut n bytes: somewhere strictly inside, when there is an inside."""
        return self.rng.randint(1, n - 1) if n >= 2 else 0

    def count(self, kind: str) -> None:
        self.injected[kind] += 1
        log.info("injected %s on %s (%d so far)", kind, self.name, self.injected[kind])


class Proxy:
    def __init__(self, upstream: str, seed: int, delay_ms: int) -> None:
        u = urllib.parse.urlsplit(upstream)
        if u.scheme != "http" or not u.hostname:
            raise ValueError("--upstream must be http://HOST:PORT")
        self.up_host, self.up_port = u.hostname, u.port or 80
        self.seed = seed
        self.delay_ms = delay_ms
        self.faults = {c: ClassFaults(c, seed) for c in CLASSES}
        self.other_requests = 0

    # -- control ------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "faults": {c: f.fractions for c, f in self.faults.items()},
            "methods": {c: sorted(f.methods) if f.methods else None for c, f in self.faults.items()},
            "copies": {c: f.copies for c, f in self.faults.items()},
            "injected": {c: f.injected for c, f in self.faults.items()},
            "requests": {**{c: f.requests for c, f in self.faults.items()},
                         "other": self.other_requests},
            "delay_ms": self.delay_ms,
            "seed": self.seed,
        }

    def set_faults(self, spec: dict) -> None:
        if not isinstance(spec, dict):
            raise ValueError("a JSON object is expected")
        unknown = set(spec) - set(CLASSES) - {"seed"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; classes: {', '.join(CLASSES)}")
        for c in CLASSES:
            if c in spec and not isinstance(spec[c], dict):
                raise ValueError(f"{c}: a JSON object of fractions is expected")
        if "seed" in spec:
            self.seed = int(spec["seed"])
            for c, f in self.faults.items():
                f.rng = random.Random(f"{self.seed}/{c}")
        for c in CLASSES:
            if c in spec:
                self.faults[c].configure(spec[c])
        log.warning("faults now %s", json.dumps(self.state()["faults"]))

    def reset_all(self) -> None:
        for c, f in self.faults.items():
            f.configure({})
            f.release()
            f.injected = {k: 0 for k in KINDS}
            f.requests = 0
        self.other_requests = 0

    async def control(self, req: Request, body: bytes, writer) -> None:
        status, out = 200, b""
        try:
            if req.path == "/faultproxy/state" and req.method == "GET":
                out = json.dumps(self.state()).encode()
            elif req.path == "/faultproxy/faults" and req.method == "POST":
                self.set_faults(json.loads(body or b"{}"))
                out = json.dumps(self.state()).encode()
            elif req.path == "/faultproxy/reset" and req.method == "POST":
                self.reset_all()
                out = json.dumps(self.state()).encode()
            elif req.path == "/faultproxy/delay" and req.method == "POST":
                self.delay_ms = max(0, int(body.strip() or b"0"))
                out = json.dumps(self.state()).encode()
            else:
                status, out = 404, b'{"error": "unknown faultproxy endpoint"}'
        except (ValueError, TypeError) as e:
            status, out = 400, json.dumps({"error": str(e)}).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(out)}\r\n\r\n".encode() + out)
        await writer.drain()

    # -- forwarding ---------------------------------------------------------------------------
    async def serve(self, creader, cwriter) -> None:
        upstream: tuple | None = None
        try:
            while True:
                head = await read_head(creader)
                if head is None:
                    return
                req = Request(head)
                if req.path.startswith("/faultproxy/"):
                    kind, n = req.body_framing()
                    body = await creader.readexactly(n) if kind == "length" else b""
                    await self.control(req, body, cwriter)
                    if req.wants_close():
                        return
                    continue
                upstream = await self.one(req, creader, cwriter, upstream)
                if upstream is None:
                    return
        except (Closed, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as e:
            log.debug("connection ends: %s", e)
        finally:
            if upstream is not None:
                upstream[1].close()
            if not cwriter.is_closing():
                cwriter.close()

    async def connect(self):
        return await asyncio.open_connection(self.up_host, self.up_port, limit=HEAD_LIMIT)

    async def one(self, req: Request, creader, cwriter, upstream):
        """Handles one request; returns the upstream connection to keep, or None to close the
        client connection."""
        cls = classify(req)
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        faults = self.faults.get(cls)
        if faults is None:
            self.other_requests += 1
            kind = None
        else:
            kind = faults.choose(req.method, req.header("x-amz-copy-source") is not None)
        body_kind, body_len = req.body_framing()
        expects_continue = "100-continue" in (req.header("expect") or "").lower()

        if kind == "stall":
            faults.count("stall")
            await hold(faults.released, creader)
            return None
        if kind in ("slowdown", "internal"):
            faults.count(kind)
            close = expects_continue or req.wants_close()
            if not expects_continue:
                await copy_body(creader, None, body_kind, body_len)
            cwriter.write(error_response(cls, kind, req.method, close))
            await cwriter.drain()
            return None if close else upstream
        if kind == "reset_request":
            faults.count(kind)
            if body_kind == "length" and not expects_continue:
                await copy_length(creader, None, body_len, faults.cut(body_len))
            reset(cwriter)
            return None

        reused = upstream is not None and not upstream[0].at_eof()
        if not reused:
            if upstream is not None:
                upstream[1].close()
            upstream = await self.connect()
        ureader, uwriter = upstream
        uwriter.write(req.head)
        sending = asyncio.create_task(copy_body(creader, uwriter, body_kind, body_len))
        try:
            while True:
                rhead = await read_head(ureader)
                if rhead is None and reused and body_kind == "none":
                    # The server had closed the kept connection: send it again on a new one.
                    reused = False
                    uwriter.close()
                    upstream = await self.connect()
                    ureader, uwriter = upstream
                    uwriter.write(req.head)
                    continue
                if rhead is None:
                    raise Closed("the server closed the connection without answering")
                resp = Response(rhead)
                if 100 <= resp.status < 200 and resp.status != 101:
                    cwriter.write(rhead)
                    await cwriter.drain()
                    continue
                break
            rkind, rlen = resp.body_framing(req.method)
            if kind == "truncate" and not (req.method == "GET" and resp.status in (200, 206)
                                           and rkind == "length" and rlen >= 2):
                kind = None  # nothing to truncate: the answer passes
            if kind == "stall_body" and not (rkind == "length" and rlen >= 2):
                kind = None
            if kind in ("reset_response", "stall_body", "truncate"):
                # The answer is cut short: part of it goes out, then a reset (reset_response),
                # nothing until the stall is switched off (stall_body), or a clean close.
                faults.count(kind)
                if rkind == "none":
                    cwriter.write(rhead[: max(1, len(rhead) // 2)])
                else:
                    cwriter.write(rhead)
                    limit = faults.cut(rlen) if rkind == "length" else faults.rng.randint(1, 4096)
                    await copy_body(ureader, cwriter, rkind, rlen, limit)
                await flush(cwriter)
                if kind == "reset_response":
                    reset(cwriter)
                elif kind == "stall_body":
                    await hold(faults.released, creader)
                sending.cancel()
                uwriter.close()
                return None
            cwriter.write(rhead)
            await copy_body(ureader, cwriter, rkind, rlen)
            await cwriter.drain()
        except BaseException:
            sending.cancel()
            uwriter.close()
            raise
        if not sending.done():
            await asyncio.wait({sending}, timeout=1.0)
        if not sending.done():
            # The server answered before it had the whole request: neither connection can
            # carry another request.
            sending.cancel()
            uwriter.close()
            return None
        sending.result()
        if rkind == "close" or resp.wants_close() or req.wants_close():
            uwriter.close()
            return None
        return upstream


def write_atomically(path: str, data: dict) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".faultproxy.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


async def main_async(args) -> int:
    proxy = Proxy(args.upstream, args.seed, args.delay_ms)
    if args.faults:
        proxy.set_faults(json.loads(args.faults))

    async def on_client(r, w):
        await proxy.serve(r, w)

    server = await asyncio.start_server(on_client, "127.0.0.1", args.port, limit=HEAD_LIMIT,
                                        reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    if args.port_file:
        write_atomically(args.port_file, {"port": port, "endpoint": endpoint, "pid": os.getpid()})
    log.warning("listening on %s, forwarding to %s", endpoint, args.upstream)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            if os.getppid() != parent:
                log.warning("parent process %d went away: shutting down", parent)
                break
    server.close()
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, metavar="URL", help="server to forward to")
    p.add_argument("--port", type=int, default=0, help="listen port (0 = a free one)")
    p.add_argument("--port-file", metavar="PATH", help="write the port JSON here when ready")
    p.add_argument("--seed", type=int, default=1, help="seed of the fault decisions")
    p.add_argument("--delay-ms", type=int, default=0, metavar="N",
                   help="milliseconds added before forwarding each request")
    p.add_argument("--faults", metavar="JSON", help="initial faults (see POST /faultproxy/faults)")
    p.add_argument("--quiet", action="store_true", help="log only warnings and errors")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="faultproxy: %(message)s", stream=sys.stderr)
    try:
        return asyncio.run(main_async(args))
    except ValueError as e:
        print(f"faultproxy: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
