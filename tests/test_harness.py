"""The harness is code the site teaches, so it is tested like a snippet."""

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request, WebSocket, WebSocketException, status
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from httpx_ws import WebSocketDisconnect

from tests.harness import (
    app_client,
    connect_websocket,
    latency_proxy,
    latency_under_load,
    open_stream,
    run_concurrently,
    running,
    wait_until,
)

pytestmark = pytest.mark.anyio


def make_app(log: list[str]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        log.append("startup")
        yield {"greeting": "hello"}
        log.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/greeting")
    async def greeting(request: Request) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    @app.get("/ticks", response_class=EventSourceResponse)
    async def ticks() -> AsyncIterator[ServerSentEvent]:
        try:
            for i in range(1_000_000):
                yield ServerSentEvent(data={"n": i}, id=str(i), event="tick")
                await asyncio.sleep(0.01)
        finally:
            log.append("ticks cleaned up")

    @app.get("/lines")
    async def lines() -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            yield ": comment\n\nda"  # a frame split across chunks
            yield "ta: one\ndata: two\nretry: 50\n\n"
            yield "last line without newline"

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/stubborn")
    async def stubborn() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"x"
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.15)  # ignores the client leaving, for a while

        return StreamingResponse(body())

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        if websocket.query_params.get("token") != "ok":
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, "bad token")
        await websocket.accept()
        async for message in websocket.iter_text():
            await websocket.send_text(message.upper())

    return app


async def test_app_client_runs_the_lifespan_around_requests():
    log: list[str] = []
    async with app_client(make_app(log)) as client:
        assert log == ["startup"]
        response = await client.get("/greeting")
    assert response.json() == {"greeting": "hello"}
    assert log == ["startup", "shutdown"]


async def test_websockets_echo_and_rejections_carry_their_close_code():
    async with app_client(make_app([])) as client:
        async with connect_websocket(client, "/ws?token=ok") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "HI"
        with pytest.raises(WebSocketDisconnect) as rejected:
            async with connect_websocket(client, "/ws"):
                pass
    assert rejected.value.code == 1008
    assert rejected.value.reason == "bad token"


async def test_open_stream_reads_events_then_disconnects_for_real():
    log: list[str] = []
    async with running(make_app(log)) as app, open_stream(app, "/ticks") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = await stream.read_events(3)
        assert "ticks cleaned up" not in log

    assert [(e.event, e.id, e.data) for e in events] == [
        ("tick", "0", '{"n": 0}'),
        ("tick", "1", '{"n": 1}'),
        ("tick", "2", '{"n": 2}'),
    ]
    assert log == ["startup", "ticks cleaned up", "shutdown"]


async def test_events_and_lines_survive_chunk_boundaries():
    async with running(make_app([])) as app:
        async with open_stream(app, "/lines") as stream:
            comment, event = await stream.read_events(2)
        async with open_stream(app, "/lines") as stream:
            lines = [line async for line in stream.aiter_lines()]

    assert comment.comment == "comment"
    assert (event.data, event.retry) == ("one\ntwo", 50)
    assert lines[-1] == "last line without newline"


async def test_a_stream_that_ends_too_early_fails_clearly():
    async with running(make_app([])) as app, open_stream(app, "/lines") as stream:
        with pytest.raises(AssertionError, match="ended after 2 of 5 events"):
            await stream.read_events(5)


async def test_an_app_that_ignores_the_disconnect_fails_the_test():
    async with running(make_app([])) as app:
        with pytest.raises(
            AssertionError, match=re.escape("still running 0.1 s after")
        ):
            async with open_stream(app, "/stubborn", timeout=0.1) as stream:
                assert [chunk async for chunk in _first(stream)] == [b"x"]


async def _first(stream) -> AsyncIterator[bytes]:
    async for chunk in stream.aiter_bytes():
        yield chunk
        return


async def test_a_silent_stream_fails_instead_of_hanging():
    app = FastAPI()

    @app.get("/silent")
    async def silent() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            await asyncio.sleep(10)
            yield b"never"

        return StreamingResponse(body())

    async with open_stream(app, "/silent", timeout=0.1) as stream:
        with pytest.raises(
            AssertionError, match=re.escape("no data from the app within 0.1 s")
        ):
            await stream.read_events(1)


async def test_timing_helpers_measure_overlap_and_loop_stalls():
    async def sleeper() -> str:
        await asyncio.sleep(0.1)
        return "ok"

    async def hog() -> None:
        time.sleep(0.1)  # noqa: ASYNC251 (blocks the loop on purpose)

    results, seconds = await run_concurrently(5, sleeper)
    assert results == ["ok"] * 5
    assert seconds < 0.3
    _, free = await latency_under_load(sleeper, 5, sleeper, after=0.02)
    _, stalled = await latency_under_load(hog, 3, sleeper, after=0.02)
    assert free < 0.2
    assert stalled > 0.25  # waited for the hogs, then slept its own 0.1 s


async def test_the_fake_upstream_answers_as_told_and_counts(upstream):
    upstream.reply("/users/1", json={"id": 1}, delay=0.05)
    upstream.reply("/broken", status=502, text="<h1>Bad</h1>", content_type="text/html")
    limits = httpx.Limits(max_connections=2)
    async with httpx.AsyncClient(base_url=upstream.url, limits=limits) as client:
        responses, _ = await run_concurrently(6, lambda: client.get("/users/1"))
        broken = await client.get("/broken")
        default = await client.get("/anything")

    assert [r.json() for r in responses] == [{"id": 1}] * 6
    assert upstream.calls["/users/1"] == 6
    assert upstream.max_in_flight == 2  # the client's connection limit held
    assert (broken.status_code, broken.text) == (502, "<h1>Bad</h1>")
    assert broken.headers["content-type"].startswith("text/html")
    assert default.json() == {"path": "/anything"}


async def test_the_fake_upstream_sees_a_client_that_gives_up(upstream):
    upstream.reply("/slow", delay=5)
    async with httpx.AsyncClient(base_url=upstream.url) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await client.get("/slow")
        await wait_until(lambda: upstream.abandoned != [])  # noticed shortly after

    assert upstream.abandoned == ["/slow"]
    assert upstream.in_flight == 0


async def test_wait_until_fails_clearly_when_nothing_happens():
    with pytest.raises(AssertionError, match=re.escape("still false after 0.05 s")):
        await wait_until(lambda: False, timeout=0.05)


async def test_the_latency_proxy_delays_each_way_and_keeps_the_bytes():
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        async with latency_proxy(f"tcp://user:pw@{host}:{port}/db", 0.05) as slow:
            assert slow.startswith("tcp://user:pw@127.0.0.1:")
            assert slow.endswith("/db")
            assert not slow.startswith(f"tcp://user:pw@{host}:{port}/")
            proxy_port = int(slow.rsplit(":", 1)[1].split("/")[0])
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            started = time.perf_counter()
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            round_trip = time.perf_counter() - started
            writer.close()
            assert await reader.read() == b""  # the proxy hung up after the server
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()

    assert 0.1 <= round_trip < 1.0  # two one-way delays of 0.05 s
