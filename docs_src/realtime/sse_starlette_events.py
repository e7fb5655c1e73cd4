from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from docs_src.realtime.sse_updates import (  # (1)!
    Feed,
    LastEventId,
    Update,
    invalid_input,
    lifespan,
)

PING = 10.0  # seconds between keep-alive comments
SEND_TIMEOUT = 30.0  # seconds a client may take to accept one event

app = FastAPI(
    title="Server-Sent Events with sse-starlette",
    lifespan=lifespan,
    exception_handlers={RequestValidationError: invalid_input},
)


@app.post("/updates", status_code=status.HTTP_201_CREATED)
async def publish(update: Update, request: Request) -> dict[str, int]:
    return {"id": request.state.feed.publish(update)}


@app.get("/updates")
async def updates(
    request: Request,
    last_event_id: LastEventId = "0",
) -> EventSourceResponse:
    feed: Feed = request.state.feed
    events = stream(feed, min(int(last_event_id), feed.last_id))
    return EventSourceResponse(events, ping=PING, send_timeout=SEND_TIMEOUT)  # (2)!


async def stream(feed: Feed, last_id: int) -> AsyncIterator[ServerSentEvent]:
    feed.listeners += 1
    try:
        while True:
            new = await feed.after(last_id)
            for last_id, update in new:
                data = update.model_dump_json()  # (3)!
                yield ServerSentEvent(data, event="update", id=str(last_id))
    finally:
        feed.listeners -= 1
