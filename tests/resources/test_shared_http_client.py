from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from docs_src.resources import shared_http_client as snippet
from tests.harness import (
    app_client,
    client_for,
    logged_exceptions,
    run_concurrently,
    serve,
    timed,
    wait_until,
)

pytestmark = pytest.mark.anyio
PEN = {"id": 1, "name": "pen"}
SECRET = "db exploded at 10.0.0.7"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, upstream):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    monkeypatch.setattr(snippet, "TIMEOUT", 1.0)
    return snippet.app


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch, unreachable_url):
    """The app, with an upstream address that refuses connections."""
    monkeypatch.setattr(snippet, "UPSTREAM_URL", unreachable_url)
    return snippet.app


# --8<-- [start:answers]
async def test_what_the_upstream_answers_decides_ours(client, upstream, caplog):
    upstream.reply("/items/1", json=PEN)
    upstream.reply("/items/2", status=404, json={"detail": "Not Found"})
    upstream.reply("/items/3", status=503, json={"error": SECRET})
    upstream.reply("/items/4", text=f"<html>{SECRET}</html>", content_type="text/html")
    upstream.reply("/items/5", json={"error": SECRET})  # a 200, but not an item
    expected = {  # item id -> our status and body
        1: (200, PEN),
        2: (404, {"detail": "Item not found"}),
        3: (502, {"detail": "Upstream failed"}),
        4: (502, {"detail": "Upstream failed"}),
        5: (502, {"detail": "Upstream failed"}),
    }

    for item_id, (code, body) in expected.items():
        response = await client.get(f"/items/{item_id}")

        assert (response.status_code, response.json()) == (code, body)
    assert logged_exceptions(caplog, snippet.logger) == [  # the causes, in the log
        httpx.HTTPStatusError,  # 503
        ValidationError,  # HTML is not JSON
        ValidationError,  # JSON, but not an item
    ]


async def test_a_slow_upstream_is_a_504_and_the_call_is_abandoned(
    monkeypatch, upstream
):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    monkeypatch.setattr(snippet, "TIMEOUT", 0.1)
    upstream.reply("/items/1", json=PEN, delay=2.0)

    async with app_client(snippet.app) as client:
        response, seconds = await timed(client.get("/items/1"))
        await wait_until(lambda: upstream.abandoned == ["/items/1"], timeout=1.0)

    assert response.status_code == 504
    assert response.json() == {"detail": "Upstream timed out"}
    assert 0.1 <= seconds < 1.0  # the timeout, not the upstream's two seconds


# --8<-- [end:answers]
async def test_an_unreachable_upstream_is_a_502(unreachable, caplog):
    async with app_client(unreachable) as client:
        response = await client.get("/items/1")

    assert response.status_code == 502
    assert response.json() == {"detail": "Upstream failed"}
    assert logged_exceptions(caplog, snippet.logger) == [httpx.ConnectError]


async def test_a_bad_id_is_422_and_never_reaches_the_upstream(unreachable):
    async with app_client(unreachable) as client:
        for item_id in ["0", "-1", "abc", "1.5"]:
            response = await client.get(f"/items/{item_id}")

            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == ["path", "item_id"]


# --8<-- [start:one-client]
async def test_one_client_at_most_max_connections_closed_at_shutdown(
    monkeypatch, upstream
):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    monkeypatch.setattr(snippet, "MAX_CONNECTIONS", 3)
    upstream.reply("/items/1", json=PEN, delay=0.05)
    seen: list[httpx.AsyncClient] = []  # the client each request was given

    async def spy(request: Request) -> httpx.AsyncClient:
        seen.append(await snippet.get_http(request))
        return seen[-1]

    monkeypatch.setitem(snippet.app.dependency_overrides, snippet.get_http, spy)
    async with app_client(snippet.app) as client:
        responses, _ = await run_concurrently(9, lambda: client.get("/items/1"))
        assert not seen[0].is_closed

    assert [r.status_code for r in responses] == [200] * 9
    assert len(seen) == 9
    assert len({id(http) for http in seen}) == 1  # one instance for all requests
    assert upstream.max_in_flight == 3  # the others waited for a free connection
    assert seen[0].is_closed  # the lifespan closed it


# --8<-- [end:one-client]
# --8<-- [start:queue]
async def test_the_timeout_bounds_each_wait_not_the_whole_call(monkeypatch, upstream):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    monkeypatch.setattr(snippet, "MAX_CONNECTIONS", 1)
    monkeypatch.setattr(snippet, "TIMEOUT", 0.25)
    upstream.reply("/items/1", json=PEN, delay=0.04)

    async with app_client(snippet.app) as client:
        responses, seconds = await run_concurrently(13, lambda: client.get("/items/1"))

    assert [r.status_code for r in responses] == [200] * 13
    assert seconds > 2 * 0.25  # the last one queued for longer than the timeout


# --8<-- [end:queue]
# --8<-- [start:per-request]
async def test_a_client_per_request_opens_a_connection_per_request(monkeypatch):
    ports: list[int] = []  # the client port of each call, as the upstream sees it

    async def item(request: Request) -> JSONResponse:
        ports.append(request.client.port)
        return JSONResponse(PEN)

    async with serve(Starlette(routes=[Route("/items/1", item)])) as url:
        monkeypatch.setattr(snippet, "UPSTREAM_URL", url)
        async with app_client(snippet.app) as client:
            for _ in range(3):
                await client.get("/items/1")
        shared, ports[:] = ports[:], []

        for _ in range(3):  # what many tutorials do in the route
            async with httpx.AsyncClient() as per_request:
                await per_request.get(f"{url}/items/1")
                assert per_request.timeout == httpx.Timeout(5.0)  # unless you say

    assert len(shared) == len(ports) == 3
    assert len(set(shared)) == 1  # three calls, one connection, kept alive
    assert len(set(ports)) == 3  # three calls, three new connections


# --8<-- [end:per-request]
# --8<-- [start:seed]
async def test_what_the_tutorial_route_does(upstream):
    tutorial = FastAPI()

    @tutorial.get("/io-intensive")
    async def io_intensive():  # as widely copied: no status check, no timeout
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{upstream.url}/data")
            return response.json()

    upstream.reply("/data", status=503, json={"error": "upstream exploded"})
    async with client_for(tutorial, raise_app_exceptions=False) as client:
        error_as_data = await client.get("/io-intensive")
        upstream.reply(
            "/data", status=502, text="<h1>Bad</h1>", content_type="text/html"
        )
        crash = await client.get("/io-intensive")

    assert error_as_data.status_code == 200  # the upstream's error, passed off as data
    assert error_as_data.json() == {"error": "upstream exploded"}
    assert crash.status_code == 500  # an unhandled exception: the HTML is not JSON


# --8<-- [end:seed]


async def test_the_clients_one_timeout_covers_connect_read_write_and_pool():
    async with snippet.lifespan(snippet.app) as state:
        timeout = state["http"].timeout

    assert timeout.as_dict() == {
        "connect": snippet.TIMEOUT,
        "read": snippet.TIMEOUT,
        "write": snippet.TIMEOUT,
        "pool": snippet.TIMEOUT,
    }


async def test_the_tutorial_client_pool(upstream):
    class HTTPClientPool:  # as widely copied, `def init` included
        def init(self):
            self.client = None

        async def get_client(self) -> AsyncIterator[httpx.AsyncClient]:
            if self.client is None:
                self.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
            yield self.client

        async def close(self):
            if self.client:
                await self.client.aclose()

    def make_app(http_pool: HTTPClientPool) -> FastAPI:
        tutorial = FastAPI()

        @tutorial.get("/external-api")
        async def call_external_api(
            client: Annotated[httpx.AsyncClient, Depends(http_pool.get_client)],
        ):
            response = await client.get(f"{upstream.url}/data")
            return response.json()

        return tutorial

    broken = HTTPClientPool()
    async with app_client(make_app(broken)) as client:
        with pytest.raises(AttributeError, match="has no attribute 'client'"):
            await client.get("/external-api")  # `init` never ran

    fixed = HTTPClientPool()
    fixed.init()  # what `__init__` would have done
    async with app_client(make_app(fixed)) as client:
        await client.get("/external-api")
    assert not fixed.client.is_closed  # the app has stopped; the client is still open
    await fixed.close()
