import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict

from fastapi import FastAPI, Path, Request, WebSocket, WebSocketException, status

SEND_TIMEOUT = 1.0  # seconds one client may take to accept one message
MAX_MESSAGE = 1000  # characters
logger = logging.getLogger(__name__)


class Room:
    """The chat members connected to this process."""

    def __init__(self) -> None:
        self.members: dict[WebSocket, str] = {}

    async def broadcast(self, text: str) -> None:
        async with asyncio.TaskGroup() as group:  # (1)!
            for websocket in list(self.members):
                group.create_task(self.send(websocket, text))

    async def send(self, websocket: WebSocket, text: str) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT):  # (2)!
                await websocket.send_text(text)
        except Exception as error:  # (3)!
            if (name := self.members.pop(websocket, None)) is not None:
                logger.warning("dropped %s: %r", name, error)


class State(TypedDict):
    room: Room


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    yield {"room": Room()}  # (4)!


app = FastAPI(title="WebSocket broadcast", lifespan=lifespan)
Name = Annotated[str, Path(pattern=r"^\w{1,20}$")]


@app.get("/room")
async def who_is_here(request: Request) -> list[str]:
    return sorted(request.state.room.members.values())


@app.websocket("/chat/{name}")
async def chat(websocket: WebSocket, name: Name) -> None:
    room: Room = websocket.state.room
    await websocket.accept()
    room.members[websocket] = name
    await room.broadcast(f"{name} joined")
    try:
        while (frame := await websocket.receive())["type"] == "websocket.receive":
            if websocket not in room.members:  # (5)!
                break
            if (text := frame.get("text")) is None:  # (6)!
                raise WebSocketException(status.WS_1003_UNSUPPORTED_DATA, "Text only")
            if len(text) > MAX_MESSAGE:
                raise WebSocketException(status.WS_1009_MESSAGE_TOO_BIG, "Too long")
            await room.broadcast(f"{name}: {text}")
    finally:
        if room.members.pop(websocket, None) is not None:  # (7)!
            await room.broadcast(f"{name} left")
