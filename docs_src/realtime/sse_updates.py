import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal, TypedDict

from fastapi import FastAPI, Header, Request, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

HISTORY = 100  # updates kept for clients that reconnect
HEARTBEAT = 10.0  # seconds of silence before a keep-alive comment


class Update(BaseModel):
    service: str
    status: Literal["up", "degraded", "down"]


class Feed:
    """Numbered updates: the last HISTORY of them, and a wake-up for waiting streams."""

    def __init__(self) -> None:
        self.last_id = 0
        self.kept: deque[tuple[int, Update]] = deque(maxlen=HISTORY)  # (1)!
        self.listeners = 0
        self._published = asyncio.Event()

    def publish(self, update: Update) -> int:
        self.last_id += 1
        self.kept.append((self.last_id, update))
        self._published.set()  # wakes every stream waiting in `after`
        self._published = asyncio.Event()
        return self.last_id

    async def after(self, last_id: int) -> list[tuple[int, Update]]:
        """The kept updates after `last_id`; waits for one if there is none yet."""
        while not (new := [(i, u) for i, u in self.kept if i > last_id]):
            await self._published.wait()
        return new


class State(TypedDict):
    feed: Feed


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    yield {"feed": Feed()}


app = FastAPI(title="Server-Sent Events with FastAPI", lifespan=lifespan)


@app.post("/updates", status_code=status.HTTP_201_CREATED)
async def publish(update: Update, request: Request) -> dict[str, int]:
    return {"id": request.state.feed.publish(update)}


@app.get("/updates", response_class=EventSourceResponse)  # (2)!
async def updates(
    request: Request,
    last_event_id: Annotated[int, Header(ge=0)] = 0,  # (3)!
) -> AsyncIterator[ServerSentEvent]:
    feed: Feed = request.state.feed
    last_id = min(last_event_id, feed.last_id)  # (4)!
    feed.listeners += 1
    try:
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT):
                    new = await feed.after(last_id)
            except TimeoutError:
                yield ServerSentEvent(comment="ping")  # (5)!
                continue
            for last_id, update in new:
                yield ServerSentEvent(event="update", data=update, id=str(last_id))
    finally:
        feed.listeners -= 1  # (6)!
