from typing import Annotated, Any, Literal

from fastapi import FastAPI, WebSocket, WebSocketDisconnect, WebSocketException, status
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

MAX_MESSAGE = 4096  # characters
Topic = Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")]


class Ping(BaseModel):
    type: Literal["ping"]


class Subscribe(BaseModel):
    type: Literal["subscribe"]
    topic: Topic


class Unsubscribe(BaseModel):
    type: Literal["unsubscribe"]
    topic: Topic


Incoming = TypeAdapter(  # (1)!
    Annotated[Ping | Subscribe | Unsubscribe, Field(discriminator="type")]
)
app = FastAPI(title="A JSON protocol over WebSocket")


@app.websocket("/ws")
async def protocol(websocket: WebSocket) -> None:
    await websocket.accept()
    topics: set[str] = set()
    try:
        while (frame := await websocket.receive())["type"] != "websocket.disconnect":
            await websocket.send_json(answer(frame.get("text"), topics))  # (2)!
    except WebSocketDisconnect:  # (3)!
        pass


def answer(text: str | None, topics: set[str]) -> dict[str, Any]:
    if text is None:
        raise WebSocketException(status.WS_1003_UNSUPPORTED_DATA, "Send JSON text")
    if len(text) > MAX_MESSAGE:
        raise WebSocketException(status.WS_1009_MESSAGE_TOO_BIG, "Too long")
    try:
        message = Incoming.validate_json(text)  # (4)!
    except ValidationError as error:
        detail = error.errors(
            include_url=False, include_context=False, include_input=False
        )
        for item in detail:
            if item["type"] == "union_tag_invalid":  # (5)!
                item["msg"] = "Unknown message type"
        return {"type": "error", "detail": detail}  # (6)!
    match message:  # (7)!
        case Ping():
            return {"type": "pong"}
        case Subscribe(topic=topic):
            topics.add(topic)
            return {"type": "subscribed", "topics": sorted(topics)}
        case Unsubscribe(topic=topic):
            topics.discard(topic)
            return {"type": "unsubscribed", "topics": sorted(topics)}
