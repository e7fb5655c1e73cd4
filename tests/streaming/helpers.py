"""Helpers the streaming tests share: a client that stops reading, a logged server,
and the tutorials' CSV export."""

import asyncio
import csv
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.types import ASGIApp, Message

from tests.harness import serve


@asynccontextmanager
async def served(app: ASGIApp, caplog: pytest.LogCaptureFixture) -> AsyncIterator[str]:
    """`serve(app)`, with uvicorn's own log captured by `caplog` too.

    uvicorn's logging setup keeps its records from reaching pytest's handler, so the
    handler is attached to its logger once the server has started.
    """
    uvicorn_error = logging.getLogger("uvicorn.error")
    async with serve(app) as url:
        uvicorn_error.addHandler(caplog.handler)
        try:
            yield url
        finally:
            uvicorn_error.removeHandler(caplog.handler)


async def hang_up_while_sending(app: ASGIApp, path: str, *, chunks: int) -> list[bytes]:
    """Call `app` like a server whose client stops reading, then hangs up.

    `open_stream` (tests/harness.py) cannot play this client: it takes every chunk
    the moment the app sends it, so the app never waits for it.

    The `chunks`-th body chunk never leaves: the socket buffer is full, so the
    app's `send` waits. Then the client disconnects. Returns the chunks the app
    sent, the stuck one included, once the app has finished.
    """
    sent: list[bytes] = []
    stuck, gone = asyncio.Event(), asyncio.Event()
    messages = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> Message:
        if message := next(messages, None):
            return message
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])
            if len(sent) == chunks:
                stuck.set()
                await asyncio.Event().wait()  # until the app cancels its send

    route, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": route,
        "raw_path": route.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    async with asyncio.timeout(5):
        task = asyncio.create_task(app(scope, receive, send))
        await stuck.wait()
        gone.set()
        await task
    return sent


def tutorial_export(fetch_users_batch: Callable[[int, int], Awaitable[Any]]) -> FastAPI:
    """The CSV export the tutorials copy, reading through `fetch_users_batch`."""
    tutorial = FastAPI()

    # --8<-- [start:tutorial-export]
    @tutorial.get("/export/users")
    async def export_users():
        async def csv_stream():
            output = io.StringIO()
            writer = csv.writer(output)
            writer.writerow(["ID", "Name", "Email"])
            yield output.getvalue()
            output.truncate(0)
            output.seek(0)
            offset = 0
            batch_size = 100
            while True:
                users = await fetch_users_batch(offset, batch_size)
                if not users:
                    break
                for user in users:
                    writer.writerow([user.id, user.name, user.email])
                    yield output.getvalue()
                    output.truncate(0)
                    output.seek(0)
                offset += batch_size

        return StreamingResponse(
            csv_stream(),
            media_type="text/csv",
            headers={"Content-Disposition": "attachment; filename=users.csv"},
        )

    # --8<-- [end:tutorial-export]
    return tutorial
