"""A WebSocket echo server that is not shoald, for shoal-load's black-box
tests of the response controls: it reads size=, delay=, close_after= and
close_code= from the upgrade URL's query as the spec says, and either does
what they ask or gets each of them wrong on purpose, so that a test can see
shoal-load tell the two apart.

    /usr/bin/python3 controls_server.py MODE

MODE: "right" does what the controls ask; "wrong" sends echoes one byte short
of size=, sends them at once whatever delay= says, and closes after
close_after= echoes with close_code + 1; "ignore" echoes every message as it
came and never closes; "corrupt" is "right" with one byte of every echo
changed. It prints the lines tests/shoald_process.cpp reads a port from, and
"path: TARGET" for every upgrade, the request target as it arrived.
Debian's python3-websockets (10.x, the legacy asyncio server).
"""
import asyncio
import sys
import urllib.parse

import websockets

MODE = sys.argv[1]


def duration_s(text):
    for unit, scale in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * scale
    return int(text)


def resized(message, size):
    if size is None:
        return message
    if not message:
        return " " * size if isinstance(message, str) else b""
    return (message * (size // len(message) + 1))[:size]


async def handler(ws, path=None):
    target = ws.path
    print("path: " + target, flush=True)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query, keep_blank_values=True))
    size = int(query["size"]) if "size" in query else None
    delay = duration_s(query["delay"]) if "delay" in query else 0
    close_after = int(query["close_after"]) if "close_after" in query else None
    close_code = int(query.get("close_code", "1000"))
    if MODE == "ignore":
        size, delay, close_after = None, 0, None
    if MODE == "wrong":
        size = None if size is None else max(size - 1, 0)
        delay = 0
        close_code += 1
    echoes = 0
    try:
        if close_after == 0:
            await ws.close(close_code, "close_after")
            return
        async for message in ws:
            echo = resized(message, size)
            if MODE == "corrupt" and echo:
                last = echo[-1]
                echo = echo[:-1] + (chr(ord(last) ^ 1) if isinstance(echo, str) else bytes([last ^ 1]))
            if delay:
                await asyncio.sleep(delay)
            await ws.send(echo)
            echoes += 1
            if close_after is not None and echoes == close_after:
                await ws.close(close_code, "close_after")
                return
    except websockets.ConnectionClosed:
        pass


async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None, compression=None,
                                ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print('listener "ws" (websocket-echo) listening on 127.0.0.1:%d' % port, flush=True)
        print("ready:", flush=True)
        await asyncio.Future()


asyncio.run(main())
