import asyncio
import logging
import re
from contextvars import ContextVar

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from docs_src.concurrency import request_context as snippet
from tests.harness import app_client, client_for, timed

pytestmark = pytest.mark.anyio
DELAY = 0.05
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=snippet.__name__)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(snippet, "DELAY", DELAY)
    return snippet.app


def snippet_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == snippet.__name__]


# --8<-- [start:everywhere]
async def test_one_id_in_the_endpoint_dependency_task_log_and_header(client, caplog):
    response = await client.get("/orders/7", headers={"X-Request-ID": "req-0007"})

    assert response.headers["X-Request-ID"] == "req-0007"
    assert response.json() == {
        "endpoint": "req-0007",
        "dependency": "req-0007",
        "task": "req-0007",
    }
    (record,) = snippet_records(caplog)
    assert record.request_id == "req-0007"
    formatter = logging.Formatter("%(request_id)s %(message)s")
    assert formatter.format(record) == "req-0007 looked up order 7"
    assert snippet.request_id.get() == "-"  # reset once the request is over


async def test_without_an_id_the_server_makes_one(client):
    response = await client.get("/orders/7")

    request_id = response.headers["X-Request-ID"]
    assert GENERATED.fullmatch(request_id)
    assert response.json()["endpoint"] == request_id


# --8<-- [end:everywhere]
# --8<-- [start:hostile]
HOSTILE = [
    "short",  # under 8 characters
    "a" * 65,  # over 64
    "x" * 10_000,
    "two words",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "id%0d%0aSet-Cookie:%20session=stolen",
    "ünïcödé-request",
]


@pytest.mark.parametrize("incoming", HOSTILE, ids=range(len(HOSTILE)))
async def test_a_malformed_id_is_replaced_not_echoed(client, caplog, incoming):
    headers = {"X-Request-ID": incoming.encode()}

    response = await client.get("/orders/7", headers=headers)

    request_id = response.headers["X-Request-ID"]
    assert GENERATED.fullmatch(request_id)  # a fresh id of our own
    assert response.json()["endpoint"] == request_id
    assert incoming not in response.text
    assert snippet_records(caplog)[0].request_id == request_id


# --8<-- [end:hostile]
# --8<-- [start:concurrent]
async def test_concurrent_requests_never_see_each_others_ids(client, caplog):
    def call(i: int):
        return client.get(f"/orders/{i}", headers={"X-Request-ID": f"request-{i:03d}"})

    responses, seconds = await timed(asyncio.gather(*(call(i) for i in range(1, 51))))

    assert seconds < 25 * DELAY  # overlapped: one after another would take 50 * DELAY
    for i, response in enumerate(responses, start=1):
        mine = f"request-{i:03d}"
        assert response.headers["X-Request-ID"] == mine
        assert response.json() == {"endpoint": mine, "dependency": mine, "task": mine}
    logged = {r.getMessage(): r.request_id for r in snippet_records(caplog)}
    assert logged == {f"looked up order {i}": f"request-{i:03d}" for i in range(1, 51)}


# --8<-- [end:concurrent]
@pytest.mark.parametrize("order_id", ["0", "abc"])
async def test_a_bad_order_id_is_422_and_still_has_an_id(client, order_id):
    response = await client.get(f"/orders/{order_id}")

    assert response.status_code == 422
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


# --8<-- [start:crash]
async def test_a_500_from_an_unhandled_exception_has_no_id():
    seen: list[str] = []  # the request id the 500 handler sees

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        seen.append(snippet.request_id.get())
        return JSONResponse({"detail": "Internal server error"}, 500)

    app = FastAPI(exception_handlers={Exception: unexpected})
    app.add_middleware(snippet.RequestIdMiddleware)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("a bug")

    async with client_for(app, raise_app_exceptions=False) as client:
        response = await client.get("/crash", headers={"X-Request-ID": "req-0500"})

    assert response.status_code == 500
    assert "X-Request-ID" not in response.headers  # built outside the middleware,
    assert seen == ["-"]  # after it had reset the variable


# --8<-- [end:crash]


# --8<-- [start:base-http]
user: ContextVar[str] = ContextVar("user", default="nobody")


class SeenAfterTheApp:
    """Pure ASGI middleware: records what it sees once the endpoint has run."""

    def __init__(self, app: ASGIApp, seen: dict[str, str], name: str) -> None:
        self.app, self.seen, self.name = app, seen, name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.seen[self.name] = user.get()


async def test_base_http_middleware_hides_what_the_endpoint_set():
    seen: dict[str, str] = {}
    app = FastAPI()
    app.add_middleware(SeenAfterTheApp, seen=seen, name="pure ASGI, inside")

    @app.middleware("http")  # the decorator builds a BaseHTTPMiddleware
    async def seen_after_call_next(request, call_next):
        response = await call_next(request)
        seen["BaseHTTPMiddleware"] = user.get()
        return response

    app.add_middleware(SeenAfterTheApp, seen=seen, name="pure ASGI, outside")

    @app.get("/")
    async def endpoint() -> None:
        user.set("alice")  # say, by an authentication dependency

    async with app_client(app) as client:
        await client.get("/")

    assert app.user_middleware[1].cls is BaseHTTPMiddleware
    assert seen == {
        "pure ASGI, inside": "alice",  # same task as the endpoint: it sees the change
        "BaseHTTPMiddleware": "nobody",  # hidden: call_next ran the app elsewhere
        "pure ASGI, outside": "nobody",  # and from every middleware around it
    }


# --8<-- [end:base-http]


async def test_values_set_before_call_next_do_reach_the_endpoint():
    app = FastAPI()

    @app.middleware("http")
    async def set_before_call_next(request, call_next):
        token = user.set("bob")
        try:
            return await call_next(request)
        finally:
            user.reset(token)

    @app.get("/")
    async def endpoint() -> dict[str, str]:
        return {"user": user.get()}

    async with app_client(app) as client:
        response = await client.get("/")

    assert response.json() == {"user": "bob"}
