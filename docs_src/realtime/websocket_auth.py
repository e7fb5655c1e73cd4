import asyncio
from typing import Annotated

from fastapi import (
    Depends,
    FastAPI,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
    status,
)
from pydantic import BaseModel

LOOKUP_DELAY = 0.05  # a database or identity-provider round trip


class User(BaseModel):
    id: int
    username: str


SESSIONS = {"alice-token": User(id=1, username="alice")}  # stands for your store


async def find_user(token: str) -> User | None:
    await asyncio.sleep(LOOKUP_DELAY)
    return SESSIONS.get(token)


async def websocket_user(websocket: WebSocket) -> User:
    match websocket.scope.get("subprotocols", []):  # (1)!
        case ["bearer", token]:
            user = await find_user(token)
        case _:
            user = None
    if user is None:
        raise WebSocketException(  # (2)!
            status.WS_1008_POLICY_VIOLATION, "Invalid or missing token"
        )
    return user


WebSocketUser = Annotated[User, Depends(websocket_user)]
app = FastAPI(title="WebSocket authentication")


@app.websocket("/chat")
async def chat(websocket: WebSocket, user: WebSocketUser) -> None:
    await websocket.accept(subprotocol="bearer")  # (3)!
    await websocket.send_text(f"Welcome {user.username}")
    try:
        async for text in websocket.iter_text():
            await websocket.send_text(f"{user.username}: {text}")
    except WebSocketDisconnect:  # gone while we answered, as on the echo page
        pass
    except KeyError:  # a binary frame, as on the echo page
        raise WebSocketException(
            status.WS_1003_UNSUPPORTED_DATA, "Send text frames"
        ) from None
