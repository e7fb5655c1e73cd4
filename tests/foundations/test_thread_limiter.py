import asyncio

import pytest

from docs_src.foundations import thread_limiter as snippet
from tests.harness import run_concurrently

DELAY = 0.25
pytestmark = pytest.mark.anyio


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(snippet, "DELAY", DELAY)
    return snippet.app


# --8<-- [start:resized]
async def test_the_lifespan_resized_the_pool(client):
    response = await client.get("/threadpool")

    assert response.json() == {"total": snippet.THREAD_TOKENS, "in_use": 0}


async def test_41_def_requests_now_fit_in_one_round(client):
    responses, seconds = await run_concurrently(41, lambda: client.get("/sync"))

    assert {r.status_code for r in responses} == {200}
    assert seconds < 1.6 * DELAY  # with 40 threads this took two rounds


async def test_the_pool_reports_threads_in_use(client):
    async def busy_threads() -> dict:
        await asyncio.sleep(DELAY / 2)  # while the sleepers hold their threads
        return (await client.get("/threadpool")).json()

    *_, usage = await asyncio.gather(
        *(client.get("/sync") for _ in range(50)), busy_threads()
    )

    assert usage == {"total": snippet.THREAD_TOKENS, "in_use": 50}


# --8<-- [end:resized]
async def test_threadpool_is_read_only(client):
    response = await client.post("/threadpool", json={"total": 1})
    assert response.status_code == 405
