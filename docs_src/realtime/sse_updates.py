import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal, TypedDict

from fastapi import Depends, FastAPI, Header, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

HISTORY = 100  # updates kept for clients that reconnect
HEARTBEAT = 10.0  # seconds of silence before a keep-alive comment


class Update(BaseModel):
    service: str = Field(pattern=r"^[a-z0-9-]{1,40}$")  # (1)!
    status: Literal["up", "degraded", "down"]


class Feed:
    """Numbered updates: the last HISTORY of them, and a wake-up for waiting streams."""

    def __init__(self) -> None:
        self.last_id = 0
        self.kept: deque[tuple[int, Update]] = deque(maxlen=HISTORY)  # (2)!
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


async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]  # (3)!
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


async def listening(request: Request) -> AsyncIterator[Feed]:
    feed: Feed = request.state.feed
    feed.listeners += 1
    try:
        yield feed
    finally:
        feed.listeners -= 1  # (4)!


LastEventId = Annotated[str, Header(pattern=r"^[0-9]{1,15}$")]  # (5)!
app = FastAPI(
    title="Server-Sent Events with FastAPI",
    lifespan=lifespan,
    exception_handlers={RequestValidationError: invalid_input},
)


@app.post("/updates", status_code=status.HTTP_201_CREATED)
async def publish(update: Update, request: Request) -> dict[str, int]:
    return {"id": request.state.feed.publish(update)}


@app.get("/updates", response_class=EventSourceResponse)  # (6)!
async def updates(
    feed: Annotated[Feed, Depends(listening)],
    last_event_id: LastEventId = "0",
) -> AsyncIterator[ServerSentEvent]:
    last_id = min(int(last_event_id), feed.last_id)  # (7)!
    while True:
        try:
            async with asyncio.timeout(HEARTBEAT):
                new = await feed.after(last_id)
        except TimeoutError:
            yield ServerSentEvent(comment="ping")  # (8)!
            continue
        for last_id, update in new:
            yield ServerSentEvent(event="update", data=update, id=str(last_id))
