import asyncio
import logging
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from httpx_ws import AsyncWebSocketSession, WebSocketNetworkError, aconnect_ws
from httpx_ws import WebSocketDisconnect as ClosedByServer

from docs_src.realtime import websocket_broadcast as snippet
from tests.harness import app_client, connect_websocket, running, wait_until
from tests.realtime.websocket_server import raw_websocket, serve_websockets

pytestmark = pytest.mark.anyio


@pytest.fixture
def app():
    return snippet.app


async def expect(ws: AsyncWebSocketSession, *texts: str) -> None:
    """The next messages `ws` receives are exactly `texts`, each within a second."""
    for text in texts:
        assert await ws.receive_text(timeout=1) == text


async def hears(ws: AsyncWebSocketSession, text: str, within: float = 0.2) -> bool:
    """True if `text` is the next message `ws` receives, false if none comes in time."""
    try:
        received = await ws.receive_text(timeout=within)
    except TimeoutError:
        return False
    assert received == text
    return True


async def members(client: httpx.AsyncClient) -> list[str]:
    return (await client.get("/room")).json()


async def join(stack: AsyncExitStack, client: httpx.AsyncClient, name: str):
    return await stack.enter_async_context(connect_websocket(client, f"/chat/{name}"))


# --8<-- [start:room]
async def test_everyone_gets_every_message_and_leaving_is_announced(client):
    async with AsyncExitStack() as stack:
        ann = await join(stack, client, "ann")
        await expect(ann, "ann joined")
        bob = await join(stack, client, "bob")
        await expect(ann, "bob joined")
        await expect(bob, "bob joined")
        assert await members(client) == ["ann", "bob"]

        await bob.send_text("hi all")
        await expect(ann, "bob: hi all")
        await expect(bob, "bob: hi all")

        await bob.close()
        await expect(ann, "bob left")
        assert await members(client) == ["ann"]


async def test_garbage_closes_its_sender_only(client):
    async with AsyncExitStack() as stack:
        ann, bob, cat = [await join(stack, client, n) for n in ("ann", "bob", "cat")]
        await expect(ann, "ann joined", "bob joined", "cat joined")

        await expect(bob, "bob joined", "cat joined")
        await expect(cat, "cat joined")

        await bob.send_bytes(b"\x89PNG")  # (1)!
        with pytest.raises(ClosedByServer) as closed:
            await bob.receive_text(timeout=1)
        assert (closed.value.code, closed.value.reason) == (1003, "Text only")
        await expect(ann, "bob left")
        await expect(cat, "bob left")

        await cat.send_text("x" * (snippet.MAX_MESSAGE + 1))
        with pytest.raises(ClosedByServer) as closed:
            await cat.receive_text(timeout=1)
        assert (closed.value.code, closed.value.reason) == (1009, "Too long")
        await expect(ann, "cat left")

        await ann.send_text("still here")
        await expect(ann, "ann: still here")
        assert await members(client) == ["ann"]


# --8<-- [end:room]
# --8<-- [start:process]
async def test_each_process_has_its_own_room():
    async with (
        app_client(snippet.app) as one,  # (1)!
        app_client(snippet.app) as two,
        connect_websocket(one, "/chat/ann") as ann,
        connect_websocket(two, "/chat/bob") as bob,
    ):
        await expect(ann, "ann joined")
        await expect(bob, "bob joined")
        await ann.send_text("anyone?")
        await expect(ann, "ann: anyone?")
        assert not await hears(bob, "ann: anyone?")
        assert await members(one) == ["ann"]
        assert await members(two) == ["bob"]


# --8<-- [end:process]
@pytest.mark.parametrize("name", ["ann!", "a-b", "x" * 21])
async def test_a_name_that_is_not_a_short_word_is_refused_before_accept(client, name):
    with pytest.raises(ClosedByServer) as refused:
        async with connect_websocket(client, f"/chat/{name}"):
            pass

    assert refused.value.code == 1008
    assert await members(client) == []


class FakeClient:
    """Stands for a WebSocket: `send_text` records, hangs for ever, or fails."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.received: list[str] = []

    async def send_text(self, text: str) -> None:
        if self.behaviour == "hangs":
            await asyncio.Event().wait()  # a full TCP buffer that never drains
        if self.behaviour == "fails":
            raise OSError("connection reset by peer")
        self.received.append(text)


# --8<-- [start:concurrent]
async def test_a_broadcast_sends_to_all_at_once_and_drops_the_bad(monkeypatch):
    monkeypatch.setattr(snippet, "SEND_TIMEOUT", 0.1)
    room = snippet.Room()
    stuck, broken, fine = FakeClient("hangs"), FakeClient("fails"), FakeClient("ok")
    room.members = {stuck: "stuck", broken: "broken", fine: "fine"}

    broadcast = asyncio.create_task(room.broadcast("hello"))
    await wait_until(lambda: fine.received == ["hello"])
    assert not broadcast.done()  # fine got it while the send to stuck still waits
    assert list(room.members.values()) == ["stuck", "fine"]  # broken: dropped

    await broadcast  # returns once stuck's SEND_TIMEOUT is over
    assert list(room.members.values()) == ["fine"]


# --8<-- [end:concurrent]
async def test_in_process_a_client_that_never_reads_is_never_slow(monkeypatch, client):
    monkeypatch.setattr(snippet, "SEND_TIMEOUT", 0.01)
    monkeypatch.setattr(snippet, "MAX_MESSAGE", 64_000)
    big = "x" * 60_000
    async with AsyncExitStack() as stack:
        ann = await join(stack, client, "ann")
        await join(stack, client, "idle")  # never reads
        await expect(ann, "ann joined", "idle joined")
        for _ in range(100):  # 6 MB, more than the TCP test needed
            await ann.send_text(big)
            await expect(ann, f"ann: {big}")

        assert await members(client) == ["ann", "idle"]


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


# --8<-- [start:slow]
async def test_a_vanished_and_a_slow_client_are_dropped(monkeypatch, caplog):
    monkeypatch.setattr(snippet, "SEND_TIMEOUT", 0.1)
    monkeypatch.setattr(snippet, "MAX_MESSAGE", 64_000)
    big = "x" * 60_000
    async with (
        running(snippet.app) as app,
        serve_websockets(app) as url,  # (1)!
        httpx.AsyncClient(base_url=url) as http,
        aconnect_ws("/chat/ann", http) as ann,
        aconnect_ws("/chat/bob", http) as bob,
        raw_websocket(url, "/chat/cat") as cat,
        raw_websocket(url, "/chat/slow") as slow,  # (2)!
    ):
        await expect(ann, "ann joined", "bob joined", "cat joined", "slow joined")
        await expect(bob, "bob joined", "cat joined", "slow joined")

        cat.drop()  # (3)!
        await expect(ann, "cat left")
        await expect(bob, "cat left")
        assert await members(http) == ["ann", "bob", "slow"]

        for _ in range(500):  # (4)!
            await ann.send_text(big)
            await expect(ann, f"ann: {big}")
            await expect(bob, f"ann: {big}")
            if await members(http) == ["ann", "bob"]:
                break
        else:
            pytest.fail("the slow client was never dropped")

        await slow.send_text("am I still in?")  # (5)!
        await ann.send_text("still here?")
        await expect(bob, "ann: still here?")

    assert "dropped slow: TimeoutError()" in caplog.messages
    assert errors(caplog) == []


# --8<-- [end:slow]
# --8<-- [start:seed]
class ConnectionManager:
    def init(self):
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket):
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket):
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str):
        for connection in self.active_connections:
            await connection.send_text(message)


manager = ConnectionManager()
seed = FastAPI()


@seed.websocket("/ws/chat/{client_id}")
async def chat_endpoint(websocket: WebSocket, client_id: str):
    await manager.connect(websocket)
    await manager.broadcast(f"Client {client_id} joined the chat")
    try:
        while True:
            data = await websocket.receive_text()
            await manager.broadcast(f"Client {client_id}: {data}")
    except WebSocketDisconnect:
        manager.disconnect(websocket)
        await manager.broadcast(f"Client {client_id} left the chat")


def test_the_seed_manager_fails_on_first_use():
    with pytest.raises(AttributeError, match="no attribute 'active_connections'"):
        ConnectionManager().disconnect(None)


async def test_one_binary_frame_breaks_the_seed_room_for_others(caplog):
    manager.init()  # the missing `__init__`, called by hand
    async with (
        serve_websockets(seed) as url,
        httpx.AsyncClient(base_url=url) as http,
        aconnect_ws("/ws/chat/ann", http) as ann,
        aconnect_ws("/ws/chat/bob", http) as bob,
    ):
        await expect(ann, "Client ann joined the chat", "Client bob joined the chat")
        await bob.send_bytes(b"\x89PNG")  # bob's handler dies, bob stays listed
        await wait_until(lambda: len(errors(caplog)) == 1)

        await ann.send_text("hello")
        await expect(ann, "Client ann: hello")
        with pytest.raises(WebSocketNetworkError):  # ann is thrown out
            await ann.receive_text(timeout=1)

    bob_error, ann_error = errors(caplog)
    assert repr(bob_error.exc_info[1]) == "KeyError('text')"
    assert str(ann_error.exc_info[1]) == (
        'Cannot call "send" once a close message has been sent.'
    )
    # The live client was removed; the dead one is still listed.
    assert [ws.path_params["client_id"] for ws in manager.active_connections] == ["bob"]


async def test_one_slow_client_stalls_the_seed_room():
    manager.init()
    big = "x" * 60_000
    async with (
        serve_websockets(seed) as url,
        httpx.AsyncClient(base_url=url) as http,
        aconnect_ws("/ws/chat/ann", http) as ann,
        raw_websocket(url, "/ws/chat/slow"),
        aconnect_ws("/ws/chat/bob", http) as bob,
    ):
        await expect(ann, "Client ann joined the chat", "Client slow joined the chat")
        await expect(ann, "Client bob joined the chat")
        await expect(bob, "Client bob joined the chat")
        for _ in range(500):
            await ann.send_text(big)
            await expect(ann, f"Client ann: {big}")  # ann is listed first
            if not await hears(bob, f"Client ann: {big}", within=1):
                break  # the send to slow never returns: bob waits behind it
        else:
            pytest.fail("the room never stalled")
        await ann.send_text("anyone?")
        assert not await hears(bob, f"Client ann: {big}", within=0.5)  # still stuck


# --8<-- [end:seed]
