import asyncio
import json
import logging

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from httpx_ws import AsyncWebSocketSession, WebSocketNetworkError, aconnect_ws
from httpx_ws import WebSocketDisconnect as ClosedByServer

from docs_src.realtime import websocket_json as snippet
from tests.harness import connect_websocket
from tests.realtime.websocket_server import raw_websocket, serve_websockets

pytestmark = pytest.mark.anyio


@pytest.fixture
def app():
    return snippet.app


async def ask(ws: AsyncWebSocketSession, message: dict) -> dict:
    await ws.send_json(message)
    return await ws.receive_json(timeout=1)


# --8<-- [start:protocol]
async def test_each_message_type_gets_its_reply(client):
    async with connect_websocket(client, "/ws") as ws:
        assert await ask(ws, {"type": "ping"}) == {"type": "pong"}
        reply = await ask(ws, {"type": "subscribe", "topic": "news"})
        assert reply == {"type": "subscribed", "topics": ["news"]}
        reply = await ask(ws, {"type": "subscribe", "topic": "jobs"})
        assert reply == {"type": "subscribed", "topics": ["jobs", "news"]}
        reply = await ask(ws, {"type": "unsubscribe", "topic": "news"})
        assert reply == {"type": "unsubscribed", "topics": ["jobs"]}


TOPIC = ["subscribe", "topic"]  # where the error is: the `topic` of a `subscribe`
BAD_MESSAGES = [
    ("not json", "json_invalid", []),
    ("[1, 2]", "dict_type", []),
    ('{"type": "nope"}', "union_tag_invalid", []),
    ('{"topic": "news"}', "union_tag_not_found", []),
    ('{"type": "subscribe"}', "missing", TOPIC),
    ('{"type": "subscribe", "topic": 5}', "string_type", TOPIC),
    ('{"type": "subscribe", "topic": "News!"}', "string_pattern_mismatch", TOPIC),
]


@pytest.mark.parametrize(("text", "error", "where"), BAD_MESSAGES)
async def test_a_bad_message_gets_an_error_and_the_connection_stays(
    client, text, error, where
):
    async with connect_websocket(client, "/ws") as ws:
        await ask(ws, {"type": "subscribe", "topic": "news"})
        await ws.send_text(text)
        reply = await ws.receive_json(timeout=1)
        assert reply["type"] == "error"
        (detail,) = reply["detail"]
        assert (detail["type"], detail["loc"]) == (error, where)
        assert set(detail) == {"type", "loc", "msg"}  # no input echoed back

        reply = await ask(ws, {"type": "subscribe", "topic": "jobs"})
        assert reply["topics"] == ["jobs", "news"]  # the subscription survived


@pytest.mark.parametrize("tag", ["<img src=x onerror=alert(1)>", {"a": "secret"}])
async def test_an_unknown_type_is_not_quoted_back(client, tag):
    async with connect_websocket(client, "/ws") as ws:
        reply = await ask(ws, {"type": tag})

    (detail,) = reply["detail"]
    assert detail == {
        "type": "union_tag_invalid",
        "loc": [],
        "msg": "Unknown message type",
    }


@pytest.mark.parametrize(
    ("send", "code", "reason"),
    [
        (lambda ws: ws.send_bytes(b'{"type": "ping"}'), 1003, "Send JSON text"),
        (lambda ws: ws.send_text(" " * (snippet.MAX_MESSAGE + 1)), 1009, "Too long"),
    ],
    ids=["binary frame", "oversized"],
)
async def test_binary_and_oversized_frames_close_the_connection(
    client, send, code, reason
):
    async with connect_websocket(client, "/ws") as ws:
        await send(ws)
        with pytest.raises(ClosedByServer) as closed:
            await ws.receive_text(timeout=1)

    assert (closed.value.code, closed.value.reason) == (code, reason)


# --8<-- [end:protocol]
# --8<-- [start:log]
async def test_under_uvicorn_bad_input_logs_no_error(caplog):
    async with (
        serve_websockets(snippet.app) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        async with aconnect_ws("/ws", http) as ws:
            for text, _, _ in BAD_MESSAGES:
                await ws.send_text(text)
                assert (await ws.receive_json(timeout=1))["type"] == "error"
            await ws.send_text("x" * (snippet.MAX_MESSAGE + 1))
            with pytest.raises(ClosedByServer):
                await ws.receive_text(timeout=1)
        async with aconnect_ws("/ws", http) as ws:
            await ws.send_bytes(json.dumps({"type": "ping"}).encode())
            with pytest.raises(ClosedByServer):
                await ws.receive_text(timeout=1)

    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_client_gone_while_a_reply_waits_logs_no_error(caplog, monkeypatch):
    answered = []
    answer = snippet.answer
    monkeypatch.setattr(snippet, "answer", lambda *a: answered.append(1) or answer(*a))
    async with (
        serve_websockets(snippet.app) as url,
        raw_websocket(url, "/ws") as vanishing,  # it never reads
    ):
        for i in range(1000):  # replies list every topic: megabytes in all
            await vanishing.send_text(f'{{"type": "subscribe", "topic": "{i:032}"}}')
        while len(answered) < 1000:  # until a reply waits for the full socket
            seen = len(answered)
            await asyncio.sleep(0.05)
            if len(answered) == seen:
                break
        vanishing.drop()
    # uvicorn has shut down, so the handler is over: its waiting send raised
    # WebSocketDisconnect, and the handler ended quietly.

    assert len(answered) < 1000
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# --8<-- [end:log]
# --8<-- [start:limit]
async def test_uvicorn_closes_a_message_over_ws_max_size_before_the_app_sees_it():
    async with (
        serve_websockets(snippet.app, ws_max_size=1000) as url,
        httpx.AsyncClient(base_url=url) as http,
        aconnect_ws("/ws", http) as ws,
    ):
        await ws.send_text(" " * 1001)
        with pytest.raises(ClosedByServer) as closed:
            await ws.receive_text(timeout=1)

    assert closed.value.code == 1009
    assert closed.value.reason == "Message exceeds the maximum size (1000 bytes)"
    default = uvicorn.Config(snippet.app, log_config=None).ws_max_size
    assert default == 16 * 1024 * 1024


# --8<-- [end:limit]

# --8<-- [start:seed]
seed = FastAPI()


@seed.websocket("/ws/json")
async def json_websocket(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            message_type = data.get("type")
            if message_type == "ping":
                await websocket.send_json({"type": "pong"})
            elif message_type == "message":
                await websocket.send_json(
                    {"type": "response", "data": f"Received: {data.get('content')}"}
                )
    except WebSocketDisconnect:
        print("Client disconnected")


@pytest.mark.parametrize(
    ("text", "error"),
    [("not json", json.JSONDecodeError), ("[1, 2]", AttributeError)],
)
async def test_the_seed_dies_on_bad_json(caplog, text, error):
    async with (
        serve_websockets(seed) as url,
        httpx.AsyncClient(base_url=url) as http,
        aconnect_ws("/ws/json", http) as ws,
    ):
        await ws.send_text(text)
        with pytest.raises(WebSocketNetworkError):  # dropped, no close frame
            await ws.receive_text(timeout=1)

    (logged,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert isinstance(logged.exc_info[1], error)


async def test_the_seed_ignores_an_unknown_type():
    async with (
        serve_websockets(seed) as url,
        httpx.AsyncClient(base_url=url) as http,
        aconnect_ws("/ws/json", http) as ws,
    ):
        await ws.send_json({"type": "subscribe", "topic": "news"})
        with pytest.raises(TimeoutError):  # no answer at all
            await ws.receive_text(timeout=0.1)


# --8<-- [end:seed]
