"""In-process test helpers for FastAPI apps.

The app under test runs in the test's own process and event loop, with no network;
the services it calls can run on 127.0.0.1 (`serve`). Four groups of helpers:

* `app_client`: an `httpx.AsyncClient` for HTTP **and**
  WebSockets, with the app's lifespan running (plain `httpx.ASGITransport` skips it).
* `open_stream`: a streaming request that can read the
  first chunks or Server-Sent Events of an endless response and then leave, the way a
  browser tab closes (`ASGITransport` buffers the whole body, so it never returns).
* `serve` and `FakeUpstream`: a real server on 127.0.0.1 for the upstream services
  an app calls, with the latency and failures a test asks for.
* `timed`, `run_concurrently`
  and `latency_under_load`: the measurements
  behind every "these run at once" and "the loop stays free" claim on the site.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
import pytest
import uvicorn
from anyio.streams.memory import MemoryObjectReceiveStream
from asgi_lifespan import LifespanManager
from httpx_ws import AsyncWebSocketSession, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

T = TypeVar("T")

BASE_URL = "http://test"


@asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[ASGIApp]:
    """Run the app's lifespan around the block.

    Yields the app wrapped so that every request sees the lifespan state
    (`request.state`). Startup errors are raised here; shutdown runs on exit, even
    when the block fails.
    """
    async with LifespanManager(app) as manager:
        yield manager.app


def client_for(app: ASGIApp, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    """A client for an app already started by `running`.

    The transport speaks HTTP and WebSocket, so the same client serves both.

    Args:
        app: the running app.
        raise_app_exceptions: by default an exception that escapes the app is raised
            in the test; `False` returns the 500 response instead, as a real client
            would receive it.
    """
    transport = ASGIWebSocketTransport(app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL)


@asynccontextmanager
async def app_client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan, yield a client bound to it, shut it down on exit.

    Args:
        app: the FastAPI (or any ASGI) app under test.

    Example:
        ```python
        async with app_client(app) as client:
            response = await client.get("/ping")
        ```
    """
    async with running(app) as started, client_for(started) as client:
        yield client


def connect_websocket(
    client: httpx.AsyncClient, path: str, **kwargs: Any
) -> AbstractAsyncContextManager[AsyncWebSocketSession]:
    """Open a WebSocket to `path` through a client bound to a running app.

    A close before `accept()` raises `httpx_ws.WebSocketDisconnect`, whose `code` and
    `reason` tests can assert (for example 1008 for a rejected token).
    """
    return aconnect_ws(path, client, **kwargs)


@asynccontextmanager
async def serve(app: ASGIApp, **options: Any) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 (a free port) and yield its base URL.

    The server runs on the test's own event loop. Use it for the upstream services
    an app under test calls: its HTTP client then really connects, so connection
    limits, timeouts and cancellations behave as in production. On exit it stops
    accepting connections, lets open ones and their handlers finish (2 s at most)
    and closes.

    Args:
        app: the ASGI app to serve, already running if it has a lifespan.
        **options: `uvicorn.Config` options that replace the defaults (no lifespan,
            no WebSocket, warnings only), e.g. `ws="wsproto", log_config=None` to
            speak WebSocket and leave uvicorn's log records to `caplog`.
    """
    settings = {"lifespan": "off", "ws": "none", "log_level": "warning"} | options
    config = uvicorn.Config(app, host="127.0.0.1", port=0, **settings)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    try:
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        # uvicorn's own shutdown() always sleeps 0.1 s; a test server need not.
        for listener in server.servers:
            listener.close()
        for connection in list(server.server_state.connections):
            connection.shutdown()
        await wait_until(lambda: not server.server_state.connections, timeout=2)
        if server.server_state.tasks:
            await asyncio.wait(server.server_state.tasks, timeout=2)
        for listener in server.servers:
            await listener.wait_closed()


async def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float = 2.0,  # noqa: ASYNC109 (the timeout is the point of this helper)
) -> None:
    """Poll `condition` every 5 ms until it is true; fail the test after `timeout` s.

    For effects that happen shortly after the call that caused them, such as an
    upstream noticing that its client hung up.

    Args:
        condition: returns true once the awaited effect has happened.
        timeout: seconds before the test fails.
    """
    with anyio.move_on_after(timeout):
        while not condition():  # noqa: ASYNC110 (the condition is not an event)
            await asyncio.sleep(0.005)
        return
    msg = f"condition still false after {timeout} s"
    raise AssertionError(msg)


async def _relay_late(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    """Copy reader to writer, writing each chunk `delay` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                return
            writer.write(data)
            await writer.drain()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(deliver())
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + delay, data))
            queue.put_nowait((loop.time() + delay, b""))
    finally:
        writer.close()  # one side hung up: hang up on the other, too


@asynccontextmanager
async def latency_proxy(url: str, delay: float) -> AsyncIterator[str]:
    """Put a slow network between the test and the server that `url` names.

    Serves a TCP proxy on 127.0.0.1 and yields `url` with its host and port
    replaced by the proxy's. Every chunk, in each direction, arrives `delay`
    seconds late, so a round trip costs `2 * delay`, as it does to a database
    on another machine; a server on loopback answers too fast to show what
    overlapping round trips buys.

    Args:
        url: a URL with a host and a port, e.g. `postgresql://user@127.0.0.1:5432/db`.
        delay: the one-way delay, in seconds.
    """
    target = urlsplit(url)
    connections: set[asyncio.Task[None]] = set()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = (target.hostname, target.port)
        up_reader, up_writer = await asyncio.open_connection(*server)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_relay_late(reader, up_writer, delay))
                group.create_task(_relay_late(up_reader, writer, delay))
        except* (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for stream in (up_writer, writer):
                stream.close()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(relay(reader, writer))
        connections.add(task)
        task.add_done_callback(connections.discard)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    credentials, _, _ = target.netloc.rpartition("@")
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    try:
        yield urlunsplit(target._replace(netloc=netloc))
    finally:
        server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()


@dataclass
class Reply:
    """How the fake upstream answers one path."""

    json: Any = None
    status: int = 200
    delay: float = 0.0
    text: str | None = None
    content_type: str = "application/json"


class FakeUpstream:
    """A stand-in for an upstream service, with behaviour set per path by the test.

    Every path answers `{"path": ...}` after no delay unless `reply()` says otherwise.
    It records what a test needs to prove a claim about the caller: how many calls
    each path got, the most calls it served at once, and which calls the client
    abandoned (it closed the connection before the answer).

    Example:
        ```python
        upstream.reply("/slow", delay=0.2)
        upstream.reply("/broken", status=502, text="<html>Bad gateway</html>",
                       content_type="text/html")
        ```
    """

    def __init__(self) -> None:
        self.url = ""  # set by the `upstream` fixture once the server listens
        self.replies: dict[str, Reply] = {}
        self.calls: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.abandoned: list[str] = []
        methods = ["GET", "POST", "PUT", "DELETE"]
        self.app = Starlette(
            routes=[Route("/{path:path}", self._answer, methods=methods)]
        )

    def reply(self, path: str, **reply: Any) -> None:
        """Set how `path` answers: `json`, `status`, `delay`, `text`, `content_type`."""
        self.replies[path] = Reply(**reply)

    async def _answer(self, request: Request) -> Response:
        path = request.url.path
        reply = self.replies.get(path, Reply(json={"path": path}))
        self.calls[path] = self.calls.get(path, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            deadline = time.monotonic() + reply.delay
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    self.abandoned.append(path)
                    return Response(status_code=499)
                await asyncio.sleep(min(0.005, reply.delay))
        finally:
            self.in_flight -= 1
        if reply.text is not None:
            return Response(reply.text, reply.status, media_type=reply.content_type)
        return JSONResponse(reply.json, reply.status)


def logged_exceptions(
    caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> list[type[BaseException]]:
    """The exception types that `logger` logged with a traceback, in order.

    Proves an error was logged server-side, with its cause, while the client got
    only a generic message.

    Args:
        caplog: pytest's `caplog` fixture.
        logger: the logger the code under test uses, usually the snippet's `logger`.
    """
    return [
        type(record.exc_info[1])
        for record in caplog.records
        if record.name == logger.name and record.exc_info and record.exc_info[1]
    ]


async def timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    """Await `awaitable` and return its result with the seconds it took.

    Args:
        awaitable: a coroutine or task, for example `client.get("/")`.
    """
    start = time.perf_counter()
    result = await awaitable
    return result, time.perf_counter() - start


async def run_concurrently(
    count: int, make_call: Callable[[], Awaitable[T]]
) -> tuple[list[T], float]:
    """Start `count` calls at once; return their results in order and the wall time.

    Args:
        count: how many calls to start together.
        make_call: makes one call, for example `lambda: client.get("/sync")`.

    Returns:
        The results in the order the calls were made, and the seconds until the
            last one finished.

    Example:
        ```python
        responses, seconds = await run_concurrently(10, lambda: client.get("/sync"))
        ```
    """
    return await timed(asyncio.gather(*(make_call() for _ in range(count))))


async def latency_under_load(
    load: Callable[[], Awaitable[Any]],
    count: int,
    probe: Callable[[], Awaitable[T]],
    *,
    after: float,
) -> tuple[T, float]:
    """Start `count` load calls, then one probe call `after` seconds later.

    Returns the probe's result and its latency, counted from the moment it was due:
    on a blocked event loop even the probe's own timer fires late, and a real client
    that sent its request at that moment would have waited just as long. A fast
    answer while the load runs proves the event loop was free.

    Args:
        load: makes one call of the load, for example a slow request.
        count: how many load calls to start together.
        probe: makes the probe call, for example `lambda: client.get("/ping")`.
        after: seconds to wait before the probe is due, so the load has started.

    Returns:
        The probe's result and its latency in seconds.
    """
    due = time.perf_counter() + after

    async def probe_later() -> tuple[T, float]:
        await asyncio.sleep(after)
        result = await probe()
        return result, time.perf_counter() - due

    *_, probed = await asyncio.gather(*(load() for _ in range(count)), probe_later())
    return probed


@dataclass
class ServerSentEvent:
    """One event as an `EventSource` in a browser would see it.

    A block that holds only comment lines (a keep-alive `: ping`) is kept too, with
    `comment` set, so tests can count heartbeats.
    """

    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None


@dataclass
class StreamedResponse:
    """The head of a streamed response, and readers for its body."""

    status_code: int
    headers: httpx.Headers
    _chunks: MemoryObjectReceiveStream[bytes] = field(repr=False)
    _timeout: float = field(repr=False)
    _buffer: bytes = field(default=b"", repr=False)

    async def _next_chunk(self) -> bytes | None:
        try:
            with anyio.fail_after(self._timeout):
                return await self._chunks.receive()
        except anyio.EndOfStream:
            return None
        except TimeoutError:
            msg = f"no data from the app within {self._timeout} s"
            raise AssertionError(msg) from None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Yield body chunks as the app sends them, until the app ends the body."""
        if self._buffer:
            chunk, self._buffer = self._buffer, b""
            yield chunk
        while (chunk := await self._next_chunk()) is not None:
            yield chunk

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Yield decoded lines (without their line ending) as they complete."""
        while True:
            line, sep, rest = self._buffer.partition(b"\n")
            if sep:
                self._buffer = rest
                yield line.removesuffix(b"\r").decode()
                continue
            chunk = await self._next_chunk()
            if chunk is None:
                if self._buffer:
                    line, self._buffer = self._buffer, b""
                    yield line.decode()
                return
            self._buffer += chunk

    async def read_events(self, count: int) -> list[ServerSentEvent]:
        """Read exactly `count` Server-Sent Events (comment-only blocks included)."""
        events: list[ServerSentEvent] = []
        current = ServerSentEvent()
        seen = False
        data: list[str] = []
        async for line in self.aiter_lines():
            if line == "":
                if seen:
                    current.data = "\n".join(data)
                    events.append(current)
                    if len(events) == count:
                        return events
                current, seen, data = ServerSentEvent(), False, []
                continue
            seen = True
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                current.comment = value
            elif name == "data":
                data.append(value)
            elif name == "event":
                current.event = value
            elif name == "id":
                current.id = value
            elif name == "retry" and value.isdigit():
                current.retry = int(value)
        msg = f"the stream ended after {len(events)} of {count} events"
        raise AssertionError(msg)


@asynccontextmanager
async def open_stream(
    app: ASGIApp,
    path: str,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 5.0,  # noqa: ASYNC109 (bounds each read and the shutdown)
) -> AsyncIterator[StreamedResponse]:
    """Send one request straight to the ASGI app and stream the response.

    Leaving the block disconnects the client for real: the app receives
    `http.disconnect` (as it would from uvicorn), and the block only exits once the
    app has finished, so a test can then assert that the generator's cleanup ran.
    An app that keeps running more than `timeout` seconds after the client left
    fails the test.

    Pass a running app (see `running`) when it has a lifespan.

    Args:
        app: the ASGI app, already running if it has a lifespan.
        path: the path and query string, for example `"/events?room=1"`.
        method: the HTTP method.
        headers: request headers, such as `("Last-Event-ID", "41")`.
        timeout: seconds to wait for each read, for the response to start, and for
            the app to finish once the client has left.

    Example:
        ```python
        async with running(app) as started, open_stream(started, "/events") as stream:
            first, second = await stream.read_events(2)
        ```
    """
    url = httpx.URL(path)
    scope = {
        "type": "http",
        # 2.3, like uvicorn: Starlette then watches for the disconnect while streaming.
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": url.path,
        "raw_path": url.raw_path.split(b"?")[0],
        "query_string": url.query,
        "root_path": "",
        "headers": [(b"host", b"test")]
        + [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    send_chunk, chunks = anyio.create_memory_object_stream[bytes](math.inf)
    started = anyio.Event()
    left = anyio.Event()
    request_sent = False
    head: dict[str, Any] = {}

    async def receive() -> Message:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if left.is_set():
            return  # like uvicorn: what is sent after the client left goes nowhere
        if message["type"] == "http.response.start":
            head["status"] = message["status"]
            head["headers"] = [(k.decode(), v.decode()) for k, v in message["headers"]]
            started.set()
        elif message["type"] == "http.response.body":
            if body := message.get("body", b""):
                await send_chunk.send(body)
            if not message.get("more_body", False):
                send_chunk.close()

    async def call_app() -> None:
        try:
            await app(scope, receive, send)
        finally:
            send_chunk.close()
            started.set()

    task = asyncio.create_task(call_app())
    try:
        with anyio.fail_after(timeout):
            await started.wait()
        if "status" not in head:
            await asyncio.wait({task})
            task.result()  # the app's own error, if it raised before responding
            msg = "the app finished without starting a response"
            raise AssertionError(msg)
        yield StreamedResponse(
            head["status"], httpx.Headers(head["headers"]), chunks, timeout
        )
    finally:
        left.set()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        chunks.close()
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=timeout)
            msg = f"the app was still running {timeout} s after the client left"
            raise AssertionError(msg)
    task.result()
