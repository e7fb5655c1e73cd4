import logging

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, WebSocket
from httpx_ws import WebSocketDisconnect as ClosedByServer
from httpx_ws import WebSocketUpgradeError, aconnect_ws

from docs_src.realtime import websocket_auth as snippet
from tests.harness import connect_websocket, wait_until
from tests.realtime.websocket_server import serve_websockets

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(snippet, "LOOKUP_DELAY", 0)
    return snippet.app


def offer(*protocols: str) -> dict:
    # In process, httpx-ws splits this header on "," without stripping the spaces
    # that `subprotocols=[...]` puts after them; uvicorn strips them (see below).
    return {"headers": {"Sec-WebSocket-Protocol": ",".join(protocols)}}


ALICE = offer("bearer", "alice-token")


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


# --8<-- [start:auth]
async def test_a_valid_token_gets_a_welcome(client):
    async with connect_websocket(client, "/chat", **ALICE) as ws:
        assert ws.subprotocol == "bearer"  # the token is not sent back
        with anyio.fail_after(1):
            assert await ws.receive_text() == "Welcome alice"
            await ws.send_text("hi")
            assert await ws.receive_text() == "alice: hi"


@pytest.mark.parametrize(
    "protocols",
    [(), ("bearer",), ("bearer", "forged"), ("alice-token",), ("bearer", "", "x")],
)
async def test_a_missing_or_wrong_token_is_refused_before_accept(client, protocols):
    with pytest.raises(ClosedByServer) as refused:  # (1)!
        async with connect_websocket(client, "/chat", **offer(*protocols)):
            pass

    assert refused.value.code == 1008
    assert refused.value.reason == "Invalid or missing token"


async def test_a_token_in_the_query_string_is_ignored(client):
    with pytest.raises(ClosedByServer) as refused:
        async with connect_websocket(client, "/chat?token=alice-token"):
            pass

    assert refused.value.code == 1008


# --8<-- [end:auth]
async def test_a_binary_frame_is_closed_with_1003(client):
    async with connect_websocket(client, "/chat", **ALICE) as ws:
        assert await ws.receive_text(timeout=1) == "Welcome alice"
        await ws.send_bytes(b"\x00")
        with pytest.raises(ClosedByServer) as closed:
            await ws.receive_text(timeout=1)

    assert closed.value.code == 1003


async def test_a_client_that_leaves_before_its_reply_logs_no_error(caplog):
    ended = []

    async def watched(scope, receive, send) -> None:
        try:
            await snippet.app(scope, receive, send)
        finally:
            ended.append(scope["type"])

    async with (
        serve_websockets(watched) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        async with aconnect_ws(
            "/chat", http, subprotocols=["bearer", "alice-token"]
        ) as ws:
            assert await ws.receive_text(timeout=1) == "Welcome alice"
            await ws.send_text("x" * 10_000_000)  # and leave before the reply
        await wait_until(lambda: "websocket" in ended)

    # `send_text` found the client gone and raised WebSocketDisconnect: caught.
    assert errors(caplog) == []


# --8<-- [start:wire]
async def test_on_the_wire_a_refusal_is_http_403_and_query_tokens_are_logged(caplog):
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    async with (
        serve_websockets(snippet.app, access_log=False) as url,  # (1)!
        httpx.AsyncClient(base_url=url) as http,
    ):
        with pytest.raises(WebSocketUpgradeError) as refused:
            async with aconnect_ws("/chat?token=alice-token", http):
                pass
        async with aconnect_ws(
            "/chat", http, subprotocols=["bearer", "alice-token"]
        ) as ws:
            assert await ws.receive_text(timeout=1) == "Welcome alice"

    assert refused.value.response.status_code == 403  # (2)!
    chat = [r for r in caplog.records if "WebSocket /chat" in r.getMessage()]
    leaked, accepted = [record.getMessage() for record in chat]
    assert leaked.endswith('"WebSocket /chat?token=alice-token" 403')  # (3)!
    assert accepted.endswith('"WebSocket /chat" [accepted]')
    assert {record.name for record in chat} == {"uvicorn.error"}  # (4)!
    assert sum("alice-token" in message for message in caplog.messages) == 1
    assert errors(caplog) == []


# --8<-- [end:wire]
# --8<-- [start:seed]
def verify_token(token: str) -> bool:
    return token == "alice-token"


async def get_current_user_ws(websocket: WebSocket):
    token = websocket.query_params.get("token")
    if not token or not verify_token(token):
        await websocket.close(code=1008)  # Policy violation
        raise HTTPException(status_code=401, detail="Unauthorized")
    return {"name": "alice"}


seed = FastAPI()


@seed.websocket("/ws/authenticated")
async def authenticated_websocket(
    websocket: WebSocket,
    user=Depends(get_current_user_ws),  # noqa: B008 (the seed, as written)
):
    await websocket.accept()


async def test_the_seed_logs_an_error_for_every_refused_client(caplog):
    async with (
        serve_websockets(seed) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        with pytest.raises(WebSocketUpgradeError) as refused:
            async with aconnect_ws("/ws/authenticated?token=forged", http):
                pass

    assert refused.value.response.status_code == 403  # the 401 never leaves
    (error,) = errors(caplog)
    assert error.getMessage().startswith("Exception in ASGI application")
    assert str(error.exc_info[1]) == (
        "Unexpected ASGI message 'websocket.http.response.start', "
        "after sending 'websocket.close'."
    )
    assert isinstance(error.exc_info[1].__context__, HTTPException)


# --8<-- [end:seed]
# --8<-- [start:denial]
async def test_an_http_exception_alone_is_an_http_response_on_uvicorn(caplog):
    refuse = FastAPI()

    async def no_entry(websocket: WebSocket) -> None:
        raise HTTPException(status_code=401, detail="Unauthorized")

    @refuse.websocket("/ws", dependencies=[Depends(no_entry)])
    async def never_reached(websocket: WebSocket) -> None:
        await websocket.accept()

    async with (
        serve_websockets(refuse) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        with pytest.raises(WebSocketUpgradeError) as refused:
            async with aconnect_ws("/ws", http):
                pass
        response = refused.value.response
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"

    assert errors(caplog) == []


# --8<-- [end:denial]
