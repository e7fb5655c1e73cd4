import asyncio
import gc
import json
import sys
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import fastapi.sse
import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.sse import EventSourceResponse, ServerSentEvent

from docs_src.realtime import sse_updates as snippet
from tests.harness import open_stream, serve, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, feeds):
    monkeypatch.setattr(snippet, "HISTORY", 3)
    monkeypatch.setattr(snippet, "HEARTBEAT", 5.0)  # no test here waits for one
    return snippet.app


async def publish(client, service: str, status: str) -> int:
    response = await client.post(
        "/updates", json={"service": service, "status": status}
    )
    assert response.status_code == 201
    return response.json()["id"]


async def next_update(stream):
    """The next event that is not a keep-alive comment."""
    while (event := (await stream.read_events(1))[0]).comment is not None:
        pass
    return event


def summary(events) -> list[tuple[str | None, str | None, dict]]:
    return [(e.event, e.id, json.loads(e.data)) for e in events]


# --8<-- [start:live]
async def test_every_open_stream_gets_every_update(running_app, client):
    async with (
        open_stream(running_app, "/updates") as first,
        open_stream(running_app, "/updates") as second,
    ):
        await publish(client, "api", "degraded")
        await publish(client, "db", "down")

        for stream in (first, second):
            assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert summary(await stream.read_events(2)) == [
                ("update", "1", {"service": "api", "status": "degraded"}),
                ("update", "2", {"service": "db", "status": "down"}),
            ]


async def test_an_update_on_the_wire(running_app, client):
    await publish(client, "api", "up")

    async with open_stream(running_app, "/updates") as stream:
        chunk = await anext(stream.aiter_bytes())

    assert chunk == b'event: update\ndata: {"service":"api","status":"up"}\nid: 1\n\n'


# --8<-- [end:live]
# --8<-- [start:hang]
async def test_client_get_never_returns_from_an_endless_stream(client, feeds):
    with anyio.move_on_after(0.2) as waited:
        await client.get("/updates")  # ASGITransport waits for the whole body

    assert waited.cancelled_caught
    assert feeds[0].listeners == 0  # the cancelled request closed its generator


# --8<-- [end:hang]
# --8<-- [start:resume]
async def test_a_client_that_reconnects_gets_only_what_it_missed(running_app, client):
    for status in ("up", "degraded", "down"):
        await publish(client, "api", status)

    headers = [("Last-Event-ID", "1")]  # what a browser sends when it reconnects
    async with open_stream(running_app, "/updates", headers=headers) as stream:
        missed = await stream.read_events(2)
        await publish(client, "api", "up")
        (live,) = await stream.read_events(1)

    assert [event.id for event in [*missed, live]] == ["2", "3", "4"]


async def test_only_the_last_updates_are_kept(running_app, client):
    for _ in range(5):
        await publish(client, "api", "up")

    headers = [("Last-Event-ID", "1")]
    async with open_stream(running_app, "/updates", headers=headers) as stream:
        events = await stream.read_events(3)

    assert [event.id for event in events] == ["3", "4", "5"]  # 2 is gone


@pytest.mark.parametrize(
    "last_event_id", ["abc", "-1", "1.5", "", "+1", "1.0", "1_000", " 1"]
)
async def test_a_malformed_last_event_id_is_a_422(running_app, last_event_id):
    headers = [("Last-Event-ID", last_event_id)]
    async with open_stream(running_app, "/updates", headers=headers) as stream:
        body = b"".join([chunk async for chunk in stream.aiter_bytes()])

    assert stream.status_code == 422
    assert stream.headers["content-type"] == "application/json"
    (error,) = json.loads(body)["detail"]
    assert error["loc"] == ["header", "last-event-id"]


async def test_an_id_this_server_never_sent_starts_at_the_live_position(
    running_app, client
):
    await publish(client, "api", "up")
    await publish(client, "api", "down")

    headers = [("Last-Event-ID", "57")]  # from before a restart, say
    async with open_stream(running_app, "/updates", headers=headers) as stream:
        await publish(client, "api", "up")
        (event,) = await stream.read_events(1)

    assert event.id == "3"


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


# --8<-- [end:resume]
# --8<-- [start:heartbeat]
async def test_an_idle_stream_sends_a_keep_alive_comment(
    monkeypatch, running_app, client
):
    monkeypatch.setattr(snippet, "HEARTBEAT", 0.05)

    async with open_stream(running_app, "/updates") as stream:
        pings = await stream.read_events(2)
        await publish(client, "api", "up")
        update = await next_update(stream)

    assert [(e.comment, e.data, e.event) for e in pings] == [("ping", "", None)] * 2
    assert (update.event, update.id) == ("update", "1")


def test_fastapi_also_pings_every_15_seconds_of_silence():
    assert fastapi.sse.KEEPALIVE_COMMENT == b": ping\n\n"
    assert fastapi.sse._PING_INTERVAL == 15.0  # private: read it, don't patch it


# --8<-- [end:heartbeat]
# --8<-- [start:leave]
async def test_a_client_that_leaves_is_forgotten(running_app, client, feeds):
    (feed,) = feeds
    async with open_stream(running_app, "/updates") as stream:
        await publish(client, "api", "up")
        await stream.read_events(1)
        assert feed.listeners == 1

    assert feed.listeners == 0  # `listening` closed before the request ended
    await publish(client, "api", "down")  # and nothing is sent to a stream that is gone


async def test_a_client_that_leaves_during_a_backlog_is_forgotten(
    running_app, client, feeds
):
    (feed,) = feeds
    for _ in range(3):
        await publish(client, "api", "up")

    with pytest.raises(ExceptionGroup) as raised:  # FastAPI 0.165, as shown below
        async with open_stream(running_app, "/updates") as stream:
            await stream.read_events(1)  # and leave with two updates still to send

    assert raised.group_contains(anyio.BrokenResourceError)
    assert feed.listeners == 0  # `listening` closed all the same


# --8<-- [end:leave]
# --8<-- [start:cancelled-error]
async def test_a_generator_stopped_at_a_yield_gets_no_cancelled_error():
    seen: list[str] = []
    app = FastAPI()

    @app.get("/burst", response_class=EventSourceResponse)
    async def burst() -> AsyncIterator[ServerSentEvent]:
        try:
            for i in range(1000):  # faster than the client reads
                yield ServerSentEvent(data=i)
        except asyncio.CancelledError:  # the tutorial's cleanup
            seen.append("except CancelledError")
        finally:
            seen.append(f"finally, during {sys.exc_info()[0].__name__}")

    with pytest.raises(ExceptionGroup) as raised:
        async with open_stream(app, "/burst") as stream:
            await stream.read_events(2)

    assert raised.group_contains(anyio.BrokenResourceError)  # the request fails
    assert seen == []  # the request is over, and the generator is not closed yet
    del raised, stream
    gc.collect()  # only the garbage collector closes it, with GeneratorExit
    await wait_until(lambda: seen == ["finally, during GeneratorExit"])


# --8<-- [end:cancelled-error]
# --8<-- [start:too-late]
async def test_an_error_raised_inside_the_generator_comes_after_the_200():
    app = FastAPI()

    @app.get("/updates", response_class=EventSourceResponse)
    async def updates(
        last_event_id: Annotated[str, Header()] = "0",
    ) -> AsyncIterator[ServerSentEvent]:
        if not last_event_id.isdigit():
            raise HTTPException(422, "Last-Event-ID must be a number")
        yield ServerSentEvent(data="never sent")

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        headers = {"Last-Event-ID": "abc"}
        async with client.stream("GET", "/updates", headers=headers) as response:
            assert response.status_code == 200  # sent before the generator ran
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete"):
                await response.aread()  # then the connection is cut


# --8<-- [end:too-late]
