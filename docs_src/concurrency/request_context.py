import asyncio
import logging
import re
import uuid
from contextvars import ContextVar
from typing import Annotated

from fastapi import Depends, FastAPI, Path
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DELAY = 0.1  # a lookup that gives other requests time to run
VALID_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")  # (1)!
request_id: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdMiddleware:  # (2)!
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        rid = incoming if VALID_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)  # (3)!


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()  # (4)!
        return True


logger = logging.getLogger(__name__)
logger.addFilter(RequestIdFilter())
app = FastAPI(title="Request context")
app.add_middleware(RequestIdMiddleware)


async def current_request_id() -> str:
    return request_id.get()


async def look_up(order_id: int) -> str:
    await asyncio.sleep(DELAY)
    logger.info("looked up order %d", order_id)
    return request_id.get()


@app.get("/orders/{order_id}")
async def read_order(
    order_id: Annotated[int, Path(ge=1)],
    from_dependency: Annotated[str, Depends(current_request_id)],
) -> dict[str, str]:
    from_task = await asyncio.create_task(look_up(order_id))  # (5)!
    return {
        "endpoint": request_id.get(),
        "dependency": from_dependency,
        "task": from_task,
    }
