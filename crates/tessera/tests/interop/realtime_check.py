"""Tessera's real-time hub from Python clients: `websockets` and `httpx-sse`.

Reads {"base": …, "token": …, "user_id": …} on stdin, prints a JSON report on stdout.
"""

import asyncio
import json
import sys

import httpx
import websockets
from httpx_sse import connect_sse


def publish(client, base, token, channel, data):
    response = client.post(
        f"{base}/api/v1/realtime/publish",
        headers={"authorization": f"Bearer {token}"},
        json={"channel": channel, "type": "interop.note", "data": data},
    )
    response.raise_for_status()
    return response.json()["id"]


async def websocket_checks(base, token, channel):
    report = {}
    ws_base = base.replace("http://", "ws://")
    with httpx.Client() as client:
        # No credential: refused with a plain HTTP 401 before any upgrade.
        try:
            async with websockets.connect(f"{ws_base}/api/v1/realtime/ws"):
                report["unauthenticated"] = "accepted"
        except websockets.exceptions.InvalidStatus as refused:
            report["unauthenticated"] = refused.response.status_code

        minted = client.post(
            f"{base}/api/v1/realtime/ticket", headers={"authorization": f"Bearer {token}"}
        )
        ticket = minted.json()["ticket"]
        url = f"{ws_base}/api/v1/realtime/ws?ticket={ticket}"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
            report["subscribed"] = json.loads(await ws.recv())
            sent = publish(client, base, token, channel, {"via": "websockets"})
            message = json.loads(await asyncio.wait_for(ws.recv(), 15))
            report["ws_event_matches"] = message["event"]["id"] == sent
            report["ws_event"] = message["event"]["data"]
        # The ticket was single-use.
        try:
            async with websockets.connect(url):
                report["reused_ticket"] = "accepted"
        except websockets.exceptions.InvalidStatus as refused:
            report["reused_ticket"] = refused.response.status_code
    return report


def sse_checks(base, token, channel):
    report = {}
    with httpx.Client(timeout=15) as client:
        headers = {"authorization": f"Bearer {token}"}
        url = f"{base}/api/v1/realtime/sse?channel={channel}"
        with connect_sse(client, "GET", url, headers=headers) as source:
            events = source.iter_sse()
            first = next(events)
            report["sse_first"] = first.event
            with httpx.Client() as publisher:
                sent = publish(publisher, base, token, channel, {"via": "httpx-sse"})
            event = next(events)
            report["sse_event_name"] = event.event
            report["sse_id_matches"] = event.id == str(sent)
            report["sse_event"] = json.loads(event.data)["data"]
    return report


def main():
    given = json.load(sys.stdin)
    channel = f"user:{given['user_id']}"
    report = asyncio.run(websocket_checks(given["base"], given["token"], channel))
    report.update(sse_checks(given["base"], given["token"], channel))
    print(json.dumps(report))


main()
