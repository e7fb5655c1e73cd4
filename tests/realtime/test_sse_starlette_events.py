import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator

import anyio
import pytest
import sse_starlette.sse
import uvicorn
from fastapi import FastAPI
from sse_starlette import EventSourceResponse
from sse_starlette.sse import AppStatus, SendTimeoutError
from starlette.types import ASGIApp, Message

from docs_src.realtime import sse_starlette_events as snippet
from docs_src.realtime import sse_updates
from tests.harness import client_for, open_stream, running

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, feeds):
    monkeypatch.setattr(snippet, "PING", 5.0)  # no test here waits for one
    monkeypatch.setattr(snippet, "SEND_TIMEOUT", 0.05)
    return snippet.app


# --8<-- [start:global-state]
@pytest.fixture(autouse=True)
async def no_sse_starlette_state_is_left_behind() -> AsyncIterator[None]:
    """sse-starlette keeps process-wide state; check it and reset it after each test.

    A flag set when a server shuts down, and per thread: the streams waiting for
    that shutdown, and one watcher task that polls for it.
    """
    yield
    state = sse_starlette.sse._get_shutdown_state()
    assert state.events == set()  # every stream has unregistered
    assert not AppStatus.should_exit  # no test ended the streams of the next one
    watchers = [
        task
        for task in asyncio.all_tasks()
        if task.get_coro().__qualname__ == "_shutdown_watcher"
    ]
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    assert not state.watcher_started  # the next event loop starts its own watcher


async def test_a_shutdown_signal_ends_every_stream_in_the_process(
    monkeypatch, running_app, client
):
    await publish(client, "api", "up")
    monkeypatch.setattr(AppStatus, "should_exit", False)  # restored after the test
    server = uvicorn.Server(uvicorn.Config(running_app))
    server.handle_exit(signal.SIGINT, None)  # what uvicorn runs on Ctrl+C
    assert AppStatus.should_exit  # sse-starlette replaced that handler at import

    async with open_stream(running_app, "/updates") as stream:
        body = b"".join([chunk async for chunk in stream.aiter_bytes()])

    assert stream.status_code == 200
    assert body == b""  # even a stream opened afterwards ends at once, empty


# --8<-- [end:global-state]
async def publish(client, service: str, status: str) -> int:
    response = await client.post(
        "/updates", json={"service": service, "status": status}
    )
    assert response.status_code == 201
    return response.json()["id"]


# --8<-- [start:wire]
async def test_the_same_events_with_other_line_endings(running_app, client):
    await publish(client, "api", "down")

    async with open_stream(running_app, "/updates") as stream:
        chunk = await anext(stream.aiter_bytes())

    assert chunk == (
        b'id: 1\r\nevent: update\r\ndata: {"service":"api","status":"down"}\r\n\r\n'
    )
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["cache-control"] == "no-store"
    assert stream.headers["x-accel-buffering"] == "no"


async def test_resuming_works_the_same(running_app, client):
    for status in ("up", "degraded", "down"):
        await publish(client, "api", status)

    headers = [("Last-Event-ID", "1")]
    async with open_stream(running_app, "/updates", headers=headers) as stream:
        events = await stream.read_events(2)

    assert [(e.id, json.loads(e.data)["status"]) for e in events] == [
        ("2", "degraded"),
        ("3", "down"),
    ]


@pytest.mark.parametrize("last_event_id", ["abc", "+1", "1_000"])
async def test_a_malformed_last_event_id_is_a_422(running_app, last_event_id):
    headers = [("Last-Event-ID", last_event_id)]
    async with open_stream(running_app, "/updates", headers=headers) as stream:
        body = b"".join([chunk async for chunk in stream.aiter_bytes()])

    assert stream.status_code == 422
    assert json.loads(body)["detail"][0]["loc"] == ["header", "last-event-id"]


async def test_a_dict_is_the_fields_here():
    seed = FastAPI()

    @seed.get("/sse")
    async def sse() -> EventSourceResponse:
        async def event_generator() -> AsyncIterator[dict[str, str]]:
            yield {"event": "message", "data": "Message 0"}  # the tutorial's shape

        return EventSourceResponse(event_generator())

    async with open_stream(seed, "/sse") as stream:
        (event,) = await stream.read_events(1)

    assert (event.event, event.data) == ("message", "Message 0")


@pytest.mark.parametrize(
    "body",
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e309",
        b'{"service": "\\ud800", "status": "up"}',  # a lone surrogate
        b'{"service": "' + b"a" * 41 + b'", "status": "up"}',
        b'{"service": "api", "status": "sideways"}',
    ],
)
async def test_a_bad_update_is_a_422_that_echoes_nothing(client, feeds, body):
    response = await client.post(
        "/updates", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    for error in response.json()["detail"]:
        assert set(error) == {"type", "loc", "msg"}  # no input echoed back
    assert feeds[0].last_id == 0  # nothing was published


# --8<-- [end:wire]
# --8<-- [start:ping]
async def test_ping_is_a_timestamped_comment(monkeypatch, running_app):
    monkeypatch.setattr(snippet, "PING", 0.05)

    async with open_stream(running_app, "/updates") as stream:
        pings = await stream.read_events(2)

    for ping in pings:
        assert re.fullmatch(
            r"ping - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00:00", ping.comment
        )
        assert (ping.data, ping.event) == ("", None)


# --8<-- [end:ping]
# --8<-- [start:leave]
async def test_a_client_that_leaves_is_forgotten(running_app, client, feeds):
    (feed,) = feeds
    async with open_stream(running_app, "/updates") as stream:
        await publish(client, "api", "up")
        await stream.read_events(1)
        assert feed.listeners == 1

    assert feed.listeners == 0


# --8<-- [end:leave]
# --8<-- [start:send-timeout]
async def call_as_a_stuck_client(app: ASGIApp, path: str) -> None:
    """Send one request, then never read the body and never hang up.

    What a server sees from a client whose network died without a goodbye.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()  # no disconnect ever comes

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            await anyio.sleep_forever()  # the socket never drains

    await app(scope, receive, send)


async def test_a_stuck_client_is_dropped_after_the_send_timeout(
    running_app, client, feeds
):
    (feed,) = feeds
    await publish(client, "api", "up")

    with anyio.fail_after(2), pytest.raises(SendTimeoutError):
        await call_as_a_stuck_client(running_app, "/updates")

    assert feed.listeners == 0  # the generator was closed, its `finally` ran


async def test_fastapi_is_still_waiting_long_after_the_send_timeout():
    async with running(sse_updates.app) as native, client_for(native) as client:
        await publish(client, "api", "up")
        with anyio.move_on_after(0.2) as waited:  # 4 x the send timeout above
            await call_as_a_stuck_client(native, "/updates")

    assert waited.cancelled_caught  # still waiting when the test gave up


# --8<-- [end:send-timeout]
