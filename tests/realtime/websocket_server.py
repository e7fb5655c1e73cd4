"""A real uvicorn server that speaks WebSocket: for what no in-process client sees.

`tests.harness.serve` starts uvicorn with `ws="none"`: its upstreams speak HTTP only.
Some WebSocket claims are about uvicorn itself: the HTTP 403 that a close before
`accept()` becomes on the wire, the lines it logs (query strings included), the error
it logs when a handler raises, and the back-pressure of a client that stops reading.
In process, `httpx-ws` turns an exception in the app into a close frame and logs
nothing, so "no error in the log" can only be proven here.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import wsproto
import wsproto.events
from starlette.types import ASGIApp

from tests.harness import serve


def serve_websockets(app: ASGIApp, **options: Any) -> AbstractAsyncContextManager[str]:
    """`tests.harness.serve` with WebSockets (wsproto) and uvicorn's log in `caplog`.

    Args:
        app: the ASGI app, already running if it has a lifespan.
        **options: more `uvicorn.Config` options, such as `access_log=False`.
    """
    return serve(app, ws="wsproto", log_config=None, log_level="info", **options)


class RawWebSocket:
    """A WebSocket client with nothing between the test and the socket.

    It reads only during the handshake, so it stands for a client whose network or
    tab has stalled: once its small receive buffer is full, TCP stops the server's
    writes to it. `drop()` vanishes without a close frame, like a lost network.
    """

    def __init__(self, sock: socket.socket, connection: wsproto.WSConnection) -> None:
        self.sock = sock
        self.connection = connection

    async def send_text(self, text: str) -> None:
        frame = self.connection.send(wsproto.events.TextMessage(data=text))
        await asyncio.get_running_loop().sock_sendall(self.sock, frame)

    def drop(self) -> None:
        reset(self.sock)


@asynccontextmanager
async def raw_websocket(
    url: str, path: str, *, receive_buffer: int = 4096
) -> AsyncIterator[RawWebSocket]:
    """Open a WebSocket to `path` on the server at `url` and never read from it."""
    loop = asyncio.get_running_loop()
    address = httpx.URL(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (address.host, address.port))
        connection = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        request = wsproto.events.Request(host=address.host, target=path)
        await loop.sock_sendall(sock, connection.send(request))
        accepted = False
        while not accepted:
            data = await loop.sock_recv(sock, 1)  # one byte: read nothing past the head
            connection.receive_data(data or None)
            for event in connection.events():
                if isinstance(event, wsproto.events.RejectConnection):
                    msg = f"the server rejected the handshake: {event.status_code}"
                    raise AssertionError(msg)
                accepted = isinstance(event, wsproto.events.AcceptConnection)
        yield RawWebSocket(sock, connection)
    finally:
        if sock.fileno() != -1:
            reset(sock)


def reset(sock: socket.socket) -> None:
    """Close with linger 0: a TCP reset, with no close frame and no FIN before it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
