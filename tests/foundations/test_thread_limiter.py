import asyncio

import anyio.to_thread
import pytest

from docs_src.foundations import thread_limiter as snippet
from tests.harness import app_client, run_concurrently

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
async def test_the_lifespan_restores_the_default_size():
    limiter = anyio.to_thread.current_default_thread_limiter()
    before = limiter.total_tokens

    async with app_client(snippet.app):
        assert limiter.total_tokens == snippet.THREAD_TOKENS

    assert limiter.total_tokens == before == 40
