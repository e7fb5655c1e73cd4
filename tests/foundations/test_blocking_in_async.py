import asyncio
import os

import pytest

from docs_src.foundations import blocking_in_async as snippet
from tests.harness import latency_under_load, run_concurrently

DELAY = 0.15
pytestmark = pytest.mark.anyio


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(snippet, "DELAY", DELAY)
    return snippet.app


# --8<-- [start:blocking]
async def test_a_blocking_call_serialises_requests_and_stalls_the_loop(client):
    responses, seconds = await run_concurrently(3, lambda: client.get("/blocking"))
    ping, latency = await latency_under_load(
        lambda: client.get("/blocking"), 3, lambda: client.get("/ping"), after=DELAY / 4
    )

    assert [r.json() for r in responses] == [{"result": "done"}] * 3
    assert seconds > 2.8 * DELAY  # one at a time: 3 x DELAY
    assert ping.status_code == 200
    assert latency > 2.5 * DELAY  # /ping waited for all three


# --8<-- [end:blocking]
# --8<-- [start:offloaded]
@pytest.mark.parametrize("path", ["/offloaded", "/executor"])
async def test_offloaded_calls_run_at_once_and_the_loop_stays_free(client, path):
    responses, seconds = await run_concurrently(4, lambda: client.get(path))
    ping, latency = await latency_under_load(
        lambda: client.get(path), 4, lambda: client.get("/ping"), after=DELAY / 4
    )

    assert [r.json() for r in responses] == [{"result": "done"}] * 4
    assert seconds < 2 * DELAY
    assert ping.status_code == 200
    assert latency < DELAY / 2


# --8<-- [end:offloaded]
# --8<-- [start:default-executor]
async def test_the_default_executor_is_smaller_than_the_threadpool(client):
    cpus = getattr(os, "process_cpu_count", os.cpu_count)() or 1  # 3.13+: usable CPUs
    workers = min(32, cpus + 4)  # asyncio's default executor size

    _, fits = await run_concurrently(workers, lambda: client.get("/executor"))
    _, one_more = await run_concurrently(workers + 1, lambda: client.get("/executor"))

    assert fits < 1.6 * DELAY
    assert one_more > 1.9 * DELAY  # waited for a second round
    _, threadpool = await run_concurrently(
        workers + 1, lambda: client.get("/offloaded")
    )
    assert threadpool < 1.6 * DELAY  # AnyIO's 40 threads take them all at once


# --8<-- [end:default-executor]
async def test_unknown_route_is_404_not_a_hang(client):
    response = await asyncio.wait_for(client.get("/blocking/extra"), timeout=1)
    assert response.status_code == 404
