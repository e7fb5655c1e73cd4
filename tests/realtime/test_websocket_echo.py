import logging

import anyio
import httpx
import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from httpx_ws import WebSocketDisconnect as ClosedByServer
from httpx_ws import WebSocketNetworkError, aconnect_ws

from docs_src.realtime import websocket_echo as snippet
from tests.harness import connect_websocket, wait_until
from tests.realtime.websocket_server import raw_websocket, serve_websockets

pytestmark = pytest.mark.anyio


@pytest.fixture
def app():
    return snippet.app


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


# --8<-- [start:echo]
async def test_every_text_message_is_echoed(client):
    async with connect_websocket(client, "/echo") as ws:
        for text in ["hi", "你好", ""]:
            await ws.send_text(text)
            with anyio.fail_after(1):
                assert await ws.receive_text() == f"Echo: {text}"


async def test_a_binary_frame_is_closed_with_1003(client):
    async with connect_websocket(client, "/echo") as ws:
        await ws.send_bytes(b"\x00\x01")
        with anyio.fail_after(1), pytest.raises(ClosedByServer) as closed:
            await ws.receive_text()

    assert closed.value.code == 1003
    assert closed.value.reason == "Send text frames"


# --8<-- [end:echo]
# --8<-- [start:leaving]
async def test_a_client_that_leaves_ends_the_handler_cleanly(caplog):
    caplog.set_level(logging.INFO)
    async with (
        serve_websockets(snippet.app) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        async with aconnect_ws("/echo", http) as ws:
            await ws.send_text("hi")
            assert await ws.receive_text(timeout=1) == "Echo: hi"
        # The client sent a close frame and left: the loop ended, `finally` ran.
        await wait_until(lambda: "echo: client gone" in caplog.messages)

        async with raw_websocket(url, "/echo") as vanishing:
            await vanishing.send_text("hi")
            vanishing.drop()  # no close frame: the network went away
        await wait_until(lambda: caplog.messages.count("echo: client gone") == 2)

        async with aconnect_ws("/echo", http) as ws:
            await ws.send_text("x" * 10_000_000)  # and leave before the echo
        # The echo found the client gone: `send_text` raised WebSocketDisconnect.
        await wait_until(lambda: caplog.messages.count("echo: client gone") == 3)

    assert caplog.messages.count("echo: client connected") == 3
    assert errors(caplog) == []


# --8<-- [end:leaving]
# --8<-- [start:seed]
seed = FastAPI()


@seed.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(f"Echo: {data}")
    except WebSocketDisconnect:
        print("Client disconnected")


async def test_the_seed_crashes_on_a_binary_frame(caplog):
    async with (
        serve_websockets(seed) as url,
        httpx.AsyncClient(base_url=url) as http,
        aconnect_ws("/ws", http) as ws,
    ):
        await ws.send_bytes(b"\x00\x01")
        with pytest.raises(WebSocketNetworkError):  # no close frame: a dropped line
            await ws.receive_text(timeout=1)

    (error,) = errors(caplog)
    assert error.getMessage().startswith("Exception in ASGI application")
    assert repr(error.exc_info[1]) == "KeyError('text')"


# --8<-- [end:seed]
