"""A WebSocket pub/sub server that is not shoald, for shoal-load's black-box
tests of --mode pubsub: a client connects to /ANY/PATH?channel=NAME (1-64 of
A-Z a-z 0-9 _ . : -, else 400) and every message it sends goes to every other
connection of the channel, text or binary as sent. With FAULT it gets one
thing wrong on purpose, so that a test can see shoal-load catch it.

    /usr/bin/python3 pubsub_server.py [FAULT] [--listeners N] [--echo-to-sender]

FAULT: "right" (default); "drop" leaves out every 10th message to the
channel's first subscriber; "dup" sends it every 10th message twice;
"reorder" sends it every 10th message after the one that follows; "corrupt"
flips the last byte of every 10th message to it; "crosstalk" also sends
every message of channel NAME-0 to the subscribers of NAME-1. --listeners N
serves N ports that share one set of channels, as N instances joined by
Redis would ("a", "b", ...). Prints the lines tests/shoald_process.cpp reads
ports from. Debian's python3-websockets (10.x, the legacy asyncio server).
"""
import argparse
import asyncio
import http
import re
import urllib.parse

import websockets

parser = argparse.ArgumentParser()
parser.add_argument("fault", nargs="?", default="right",
                    choices=["right", "drop", "dup", "reorder", "corrupt", "crosstalk"])
parser.add_argument("--listeners", type=int, default=1)
parser.add_argument("--echo-to-sender", action="store_true")
args = parser.parse_args()

CHANNEL = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
channels = {}  # name -> list of connections, in the order they joined
counters = {}  # first subscriber's connection -> messages it was due so far
held = {}      # "reorder": the message held back for that connection


def channel_of(path):
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("channel", [])
    return values[0] if len(values) == 1 and CHANNEL.match(values[0]) else None


async def check_request(path, headers):
    if channel_of(path) is None:
        return http.HTTPStatus.BAD_REQUEST, [], b"channel=NAME: 1-64 of A-Z a-z 0-9 _ . : -\n"
    return None


def faulty(message):
    if isinstance(message, str):
        return message[:-1] + chr(ord(message[-1]) ^ 1)
    return message[:-1] + bytes([message[-1] ^ 1])


def deliver(conn, first, message):
    """Sends one message to one connection, getting it wrong if it is the
    channel's first subscriber and this is its 10th."""
    if conn is not first or args.fault in ("right", "crosstalk"):
        websockets.broadcast([conn], message)
        return
    n = counters.get(conn, 0) + 1
    counters[conn] = n
    if conn in held:
        websockets.broadcast([conn], message)
        websockets.broadcast([conn], held.pop(conn))
        return
    if n % 10:
        websockets.broadcast([conn], message)
    elif args.fault == "dup":
        websockets.broadcast([conn], message)
        websockets.broadcast([conn], message)
    elif args.fault == "reorder":
        held[conn] = message
    elif args.fault == "corrupt":
        websockets.broadcast([conn], faulty(message))
    # "drop": nothing


def publish(name, sender, message):
    members = channels.get(name, [])
    # The first subscriber: the first connection that is not the sender.
    first = next((c for c in members if c is not sender), None)
    for conn in members:
        if conn is not sender or args.echo_to_sender:
            deliver(conn, first, message)
    if args.fault == "crosstalk" and name.endswith("-0"):
        for conn in channels.get(name[:-2] + "-1", []):
            websockets.broadcast([conn], message)


async def handler(ws, path=None):
    name = channel_of(ws.path)
    channels.setdefault(name, []).append(ws)
    try:
        async for message in ws:
            publish(name, ws, message)
    except websockets.ConnectionClosed:
        pass
    finally:
        channels[name].remove(ws)
        counters.pop(ws, None)
        held.pop(ws, None)


async def main():
    servers = []
    for i in range(args.listeners):
        server = await websockets.serve(handler, "127.0.0.1", 0, max_size=None, compression=None,
                                        ping_interval=None, process_request=check_request,
                                        max_queue=None, write_limit=1 << 24)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        print('listener "%s" (websocket-pubsub) listening on 127.0.0.1:%d' % (chr(ord("a") + i), port),
              flush=True)
    print("ready:", flush=True)
    await asyncio.Future()


asyncio.run(main())
