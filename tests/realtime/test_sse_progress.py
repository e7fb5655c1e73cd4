import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from docs_src.realtime import sse_progress as snippet
from tests.harness import open_stream

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(snippet, "STEPS", 3)
    monkeypatch.setattr(snippet, "DELAY", 0.05)
    return snippet.app


@pytest.fixture
def closed(caplog: pytest.LogCaptureFixture):
    """How many times the snippet logged that its stream closed."""
    caplog.set_level(logging.INFO, logger=snippet.__name__)
    return lambda: caplog.messages.count("progress stream closed")


# --8<-- [start:wire]
async def test_events_are_sent_as_text_event_stream(client, closed):
    response = await client.get("/progress")  # the stream ends, so this returns

    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.text == (
        'event: progress\ndata: {"step": 1, "of": 3}\n\n'
        'event: progress\ndata: {"step": 2, "of": 3}\n\n'
        'event: progress\ndata: {"step": 3, "of": 3}\n\n'
        "event: done\ndata: finished\n\n"
    )
    assert closed() == 1


# --8<-- [end:wire]
# --8<-- [start:leave]
async def test_a_client_that_leaves_stops_the_work(app, closed, monkeypatch):
    monkeypatch.setattr(snippet, "STEPS", 20)  # 1 s of work in all
    made: list[str | None] = []  # every event the generator creates

    def recorded(**fields) -> ServerSentEvent:
        made.append(fields.get("event"))
        return ServerSentEvent(**fields)

    monkeypatch.setattr(snippet, "ServerSentEvent", recorded)

    async with open_stream(app, "/progress") as stream:
        (first,) = await stream.read_events(1)
        assert first.data == '{"step": 1, "of": 20}'
        assert closed() == 0  # still working on step 2

    assert closed() == 1  # the generator's `finally` ran before the request ended
    made_by_then = len(made)
    await asyncio.sleep(4 * snippet.DELAY)  # time for four more steps
    assert len(made) == made_by_then < 5  # none came: the work stopped


# --8<-- [end:leave]
# --8<-- [start:text-plain]
async def test_hand_written_data_lines_as_text_plain_are_not_an_event_stream():
    seed = FastAPI()

    async def generate_data_stream() -> AsyncIterator[str]:  # the tutorial's code
        for i in range(5):
            await asyncio.sleep(0)
            yield f"data: {i}\n\n"

    @seed.get("/stream-data")
    async def stream_data() -> StreamingResponse:
        return StreamingResponse(generate_data_stream(), media_type="text/plain")

    async with open_stream(seed, "/stream-data") as stream:
        events = await stream.read_events(5)

    assert [event.data for event in events] == ["0", "1", "2", "3", "4"]
    assert stream.headers["content-type"] == "text/plain; charset=utf-8"
    assert "x-accel-buffering" not in stream.headers


# --8<-- [end:text-plain]
# --8<-- [start:dict]
async def test_a_dict_is_the_data_not_the_fields():
    seed = FastAPI()

    @seed.get("/sse", response_class=EventSourceResponse)
    async def sse() -> AsyncIterator[dict[str, str]]:
        yield {"event": "message", "data": "Message 0"}  # sse-starlette's shape

    async with open_stream(seed, "/sse") as stream:
        (event,) = await stream.read_events(1)

    assert event.event is None  # no event name: the browser sees a plain "message"
    assert event.data == '{"event":"message","data":"Message 0"}'


# --8<-- [end:dict]
