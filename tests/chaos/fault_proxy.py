"""A fault-injecting HTTP proxy in front of the local S3 server, for the chaos run.

usage: python fault_proxy.py LISTEN_PORT UPSTREAM_PORT

Each request is forwarded on its own upstream connection. With faults on, a share of
requests (TALLY_CHAOS_RATE per mille for each kind, default 25) meets one of the faults a
real network and a real S3 produce:

- before:  503 Slow Down, never forwarded;
- after:   forwarded (it takes effect), then answered 500;
- reset:   forwarded (it takes effect), then the client connection is reset (RST);
- late:    answered 500 at once, forwarded 0.2-2 s later (it lands after the caller gave up);
- delay:   forwarded after 0-200 ms.

Only writes (PUT, POST, DELETE) get the faults that hide an effect; reads get before and
delay. Control, on the proxy itself: GET /__chaos/stats (counts as JSON),
POST /__chaos/quiesce (faults off, then waits until every late request has landed),
POST /__chaos/resume (faults on again, counts reset).
"""
import asyncio
import json
import os
import random
import socket
import struct
import sys

listen_port = int(sys.argv[1])
upstream_port = int(sys.argv[2])
rate = int(os.environ.get("TALLY_CHAOS_RATE", "25"))
rng = random.Random(int(os.environ.get("TALLY_CHAOS_SEED", "1")))
faults_on = True
late_tasks = set()
stats = {"requests": 0, "before": 0, "after": 0, "reset": 0, "late": 0, "delay": 0}


async def read_message(reader, is_response=False, writer=None, head_only=False):
    """Reads one HTTP/1.1 message: (start line, header list, body). A request that expects
    `100 Continue` (the AWS SDK for JavaScript sends its bodies so) gets it from the proxy."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    start, headers = lines[0], []
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
    lower = {k.lower(): v for k, v in headers}
    if writer is not None and lower.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        headers = [(k, v) for k, v in headers if k.lower() != "expect"]
    if head_only:
        # The answer to a HEAD carries the headers of a body, never the body.
        body = b""
    elif "chunked" in lower.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # trailers until an empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
    elif "content-length" in lower:
        body = await reader.readexactly(int(lower["content-length"]))
    elif is_response:
        body = await reader.read()
    else:
        body = b""
    return start, headers, body


def encode(start, headers, body, close=False, length=None):
    skip = {"content-length", "connection", "transfer-encoding", "keep-alive"}
    out = [start] + [f"{k}: {v}" for k, v in headers if k.lower() not in skip]
    out.append(f"Content-Length: {len(body) if length is None else length}")
    out.append("Connection: close" if close else "Connection: keep-alive")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body


async def forward(start, headers, body):
    reader, writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    writer.write(encode(start, headers, body, close=True))
    await writer.drain()
    head_only = start.split(" ")[0] == "HEAD"
    response = await read_message(reader, is_response=True, head_only=head_only)
    writer.close()
    return response


def canned(status, reason, code, message):
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return (f"HTTP/1.1 {status} {reason}", [("Content-Type", "application/xml")], body)


async def land_late(start, headers, body):
    await asyncio.sleep(rng.uniform(0.2, 2.0))
    try:
        await forward(start, headers, body)
    except Exception:
        pass


def reset(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def control(path, writer):
    global faults_on
    if path.startswith("/__chaos/quiesce"):
        faults_on = False
        while late_tasks:
            await asyncio.gather(*list(late_tasks), return_exceptions=True)
    elif path.startswith("/__chaos/resume"):
        faults_on = True
        for k in stats:
            stats[k] = 0
    body = json.dumps(stats).encode()
    writer.write(encode("HTTP/1.1 200 OK", [("Content-Type", "application/json")], body, True))
    await writer.drain()
    writer.close()


async def handle(reader, writer):
    try:
        while True:
            try:
                start, headers, body = await read_message(reader, writer=writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            method, path = start.split(" ")[0], start.split(" ")[1]
            if path.startswith("/__chaos/"):
                await control(path, writer)
                return
            stats["requests"] += 1
            write = method in ("PUT", "POST", "DELETE")
            kinds = ["before", "delay"] + (["after", "reset", "late"] if write else [])
            fault = None
            if faults_on:
                for kind in kinds:
                    if rng.randrange(1000) < rate:
                        fault = kind
                        break
            if fault:
                stats[fault] += 1
            if os.environ.get("TALLY_CHAOS_TRACE"):
                print(f"proxy: {start} -> {fault or 'ok'}", file=sys.stderr, flush=True)
            if fault == "before":
                response = canned(503, "Slow Down", "SlowDown", "injected: refused")
            elif fault == "late":
                task = asyncio.ensure_future(land_late(start, headers, body))
                late_tasks.add(task)
                task.add_done_callback(late_tasks.discard)
                response = canned(500, "Internal Server Error", "InternalError", "injected: late")
            else:
                if fault == "delay":
                    await asyncio.sleep(rng.uniform(0, 0.2))
                response = await forward(start, headers, body)
                if fault == "after":
                    response = canned(500, "Internal Server Error", "InternalError", "injected")
                elif fault == "reset":
                    reset(writer)
                    return
            if method == "HEAD":
                # Keep the Content-Length the server gave (of the object), with no body.
                status, hdrs, _ = response
                length = next((v for k, v in hdrs if k.lower() == "content-length"), "0")
                writer.write(encode(status, hdrs, b"", length=length))
            else:
                writer.write(encode(*response))
            await writer.drain()
    except Exception as e:  # a broken client connection ends its handler only
        print(f"proxy: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        if not writer.is_closing():
            writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print(f"fault proxy on 127.0.0.1:{listen_port} -> 127.0.0.1:{upstream_port}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
