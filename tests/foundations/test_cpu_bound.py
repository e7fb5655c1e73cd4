import multiprocessing
import os
from collections.abc import Callable

import pytest

from docs_src.foundations import cpu_bound as snippet
from tests.harness import app_client, run_concurrently, timed

pytestmark = pytest.mark.anyio
WORK = {"n": 1_500_000}  # about 0.1 s of pure-Python arithmetic
ROUTES = ["/threads/sum-of-squares", "/processes/sum-of-squares"]


@pytest.fixture
def app():
    return snippet.app


async def two_at_once_vs_one(client, path: str, holds: Callable[[float], bool]):
    """How much longer two concurrent calls take than one: 2.0 means no parallelism.

    Other load on the machine only ever adds time, so each side is the best of the
    rounds so far, and measuring stops as soon as the claimed bound holds.
    """
    await run_concurrently(2, lambda: client.get(path, params={"n": 10}))  # warm up
    one, two = [], []
    for _ in range(20):  # a busy or stolen CPU can hide parallelism for a while
        one.append((await timed(client.get(path, params=WORK)))[1])
        two.append(
            (await run_concurrently(2, lambda: client.get(path, params=WORK)))[1]
        )
        if holds(min(two) / min(one)):
            break
    return min(two) / min(one)


# --8<-- [start:threads-vs-processes]
async def test_threads_give_no_speed_up(client):
    ratio = await two_at_once_vs_one(
        client, "/threads/sum-of-squares", lambda r: r > 1.6
    )

    assert ratio > 1.6  # the GIL runs one thread's Python code at a time


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPU cores")
async def test_processes_run_in_parallel(client):
    ratio = await two_at_once_vs_one(
        client, "/processes/sum-of-squares", lambda r: r < 1.7
    )

    assert ratio < 1.7  # two cores, two processes: about one call's time


# --8<-- [end:threads-vs-processes]
# --8<-- [start:one-pool]
async def test_one_pool_for_all_requests_and_closed_at_shutdown():
    async with app_client(snippet.app) as client:
        responses, _ = await run_concurrently(
            8, lambda: client.get("/processes/sum-of-squares", params={"n": 1000})
        )
        assert {r.status_code for r in responses} == {200}
        assert 1 <= len(multiprocessing.active_children()) <= snippet.WORKERS

    assert multiprocessing.active_children() == []  # the lifespan shut it down


# --8<-- [end:one-pool]
@pytest.mark.parametrize("path", ROUTES)
async def test_result(client, path):
    response = await client.get(path, params={"n": 10})
    assert response.json() == {"n": 10, "result": 285}


# --8<-- [start:bounded]
@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("n", [snippet.MAX_N + 1, 10**12, -1, "abc", ""])
async def test_out_of_range_n_is_rejected_before_any_work(client, path, n):
    response = await client.get(path, params={"n": n})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "n"]


# --8<-- [end:bounded]
@pytest.mark.parametrize("path", ROUTES)
async def test_missing_n_is_422(client, path):
    response = await client.get(path)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "missing"
