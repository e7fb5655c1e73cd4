from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from docs_src.resources import lifespan_state as snippet
from tests.harness import app_client, run_concurrently, running

pytestmark = pytest.mark.anyio


class RecordedPool(snippet.ConnectionPool):
    """The snippet's pool, remembering every instance the app creates."""

    created: list[snippet.ConnectionPool]

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.created.append(self)


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[snippet.ConnectionPool]:
    monkeypatch.setattr(RecordedPool, "created", [], raising=False)
    monkeypatch.setattr(snippet, "ConnectionPool", RecordedPool)
    return RecordedPool.created


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, upstream, pools):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    monkeypatch.setattr(snippet, "TIMEOUT", 1.0)
    return snippet.app


# --8<-- [start:open-once]
async def test_resources_open_once_and_close_at_shutdown():
    async with snippet.lifespan(snippet.app) as state:
        pool, http = state["pool"], state["http"]
        assert pool.is_open
        assert not http.is_closed

    assert not pool.is_open
    assert http.is_closed


async def test_every_request_sees_the_same_resources(app, upstream, pools):
    async with app_client(app) as client:
        responses, _ = await run_concurrently(5, lambda: client.get("/health"))

    assert [r.status_code for r in responses] == [200] * 5
    assert [r.json() for r in responses] == [{"database": True, "upstream": True}] * 5
    assert upstream.calls == {"/health": 5}
    assert len(pools) == 1  # one pool for every request, not one per request
    assert not pools[0].is_open  # and the lifespan closed it


# --8<-- [end:open-once]
# --8<-- [start:startup-fails]
async def test_a_failed_startup_closes_what_was_opened(monkeypatch, pools):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", "http://localhost:eighty")  # a typo

    with pytest.raises(httpx.InvalidURL, match="Invalid port"):
        async with running(snippet.app):
            pytest.fail("the app must not start")

    (pool,) = pools
    assert not pool.is_open  # the pool opened before the failure is closed


# --8<-- [end:startup-fails]
# --8<-- [start:without-a-stack]
async def test_without_an_exit_stack_the_pool_leaks(pools):
    @asynccontextmanager
    async def lifespan(app) -> AsyncIterator[dict]:  # the common tutorial shape
        pool = snippet.ConnectionPool(1)
        await pool.open()
        http = httpx.AsyncClient(base_url="http://localhost:eighty")  # raises
        yield {"pool": pool, "http": http}
        await http.aclose()
        await pool.close()

    with pytest.raises(httpx.InvalidURL):
        async with lifespan(snippet.app):
            pass

    assert pools[0].is_open  # nobody closed it


# --8<-- [end:without-a-stack]
async def test_an_unhealthy_upstream_is_a_503(client, upstream):
    upstream.reply("/health", status=500, json={"error": "down"})

    response = await client.get("/health")

    assert response.status_code == 503
    assert response.json() == {"database": True, "upstream": False}


async def test_an_unreachable_upstream_is_a_503(monkeypatch, pools, unreachable_url):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", unreachable_url)
    async with app_client(snippet.app) as client:
        response = await client.get("/health")

    assert response.status_code == 503
    assert response.json() == {"database": True, "upstream": False}
