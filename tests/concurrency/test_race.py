import asyncio

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field, ValidationError

from docs_src.concurrency import race as snippet
from tests.harness import client_for, logged_exceptions, timed, wait_until

FAST = 0.05  # a store that answers well within the deadline
DEADLINE = 0.25
SLOW = 1.0  # a store that would answer long after the race is over
pytestmark = pytest.mark.anyio


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, upstream):
    stores = {name: f"{upstream.url}/{name}" for name in snippet.STORES}
    monkeypatch.setattr(snippet, "STORES", stores)
    monkeypatch.setattr(snippet, "DEADLINE", DEADLINE)
    return snippet.app


def asks_running() -> list[asyncio.Task]:
    """The snippet's `ask` calls that are still running, as tasks."""
    return [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "ask"]


# --8<-- [start:seed]
async def test_asyncio_wait_refuses_coroutines():
    call = asyncio.sleep(0)  # a coroutine, like `client.get(...)` before an await

    with pytest.raises(TypeError, match="Passing coroutines is forbidden"):
        await asyncio.wait([call], return_when=asyncio.FIRST_COMPLETED)
    call.close()  # never started: close it, or Python warns it was never awaited


# --8<-- [end:seed]
# --8<-- [start:seed-tasks]
async def test_with_tasks_the_tutorial_passes_a_store_error_on(upstream):
    tutorial = FastAPI()

    @tutorial.get("/fastest-price/{product_id}")
    async def get_fastest_price(product_id: str):  # as copied, with tasks
        async with httpx.AsyncClient() as client:
            tasks = [
                asyncio.create_task(client.get(f"{upstream.url}/{store}/{product_id}"))
                for store in ("store1", "store2", "store3")
            ]
            done, pending = await asyncio.wait(
                tasks, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            result = done.pop().result()
            return result.json()

    upstream.reply("/store1/42", json={"price": 12.0}, delay=SLOW)
    upstream.reply("/store2/42", json={"price": 10.5}, delay=SLOW)
    upstream.reply("/store3/42", status=500, json={"error": "store3 is down"})
    async with client_for(tutorial) as client:
        response = await client.get("/fastest-price/42")

    assert response.status_code == 200
    assert response.json() == {"error": "store3 is down"}  # the first to finish


# --8<-- [end:seed-tasks]
# --8<-- [start:race]
async def test_the_fastest_good_answer_wins_and_the_losers_are_hung_up_on(
    client, upstream, caplog
):
    upstream.reply("/store1/prices/42", json={"price": 12.0}, delay=SLOW)
    upstream.reply("/store2/prices/42", json={"price": 10.5}, delay=FAST)
    upstream.reply("/store3/prices/42", status=500, text="<h1>down</h1>")  # first

    response, seconds = await timed(client.get("/prices/42"))

    assert response.json() == {"store": "store2", "price": 10.5}
    assert upstream.calls == {f"/{s}/prices/42": 1 for s in snippet.STORES}
    assert seconds < SLOW / 2  # did not wait for store1
    assert logged_exceptions(caplog, snippet.logger) == [
        httpx.HTTPStatusError
    ]  # store3, skipped
    assert asks_running() == []  # store1's call was cancelled and awaited
    await wait_until(lambda: upstream.abandoned == ["/store1/prices/42"])


# --8<-- [end:race]
# --8<-- [start:cleanup]
async def call(name: str, delay: float, cleaned_up: list[str]) -> str:
    try:
        await asyncio.sleep(delay)
        return name
    finally:
        await asyncio.sleep(0.01)  # cleanup that itself awaits, like closing a socket
        cleaned_up.append(name)


async def test_cancel_only_asks_a_task_to_stop():
    cleaned_up = []
    task = asyncio.create_task(call("slow", 1, cleaned_up))
    await asyncio.sleep(0)  # let it start

    task.cancel()
    assert cleaned_up == []  # not stopped yet: it has only been asked to
    await asyncio.gather(task, return_exceptions=True)
    assert cleaned_up == ["slow"]  # awaiting it let the cleanup finish
    assert task.cancelled()


async def test_the_losers_clean_up_before_the_winner_is_returned():
    cleaned_up = []

    winner = await snippet.first_success(
        [call("slow", 1, cleaned_up), call("fast", 0, cleaned_up)]
    )

    assert winner == "fast"
    assert sorted(cleaned_up) == ["fast", "slow"]


# --8<-- [end:cleanup]
# --8<-- [start:failures]
async def test_when_every_store_fails_the_answer_is_502(client, upstream, caplog):
    upstream.reply("/store1/prices/42", status=503, text="<h1>busy</h1>")
    upstream.reply("/store2/prices/42", json={"price": -1})  # not a price
    upstream.reply("/store3/prices/42", text="<html>oops</html>")  # not JSON

    response = await client.get("/prices/42")

    assert response.status_code == 502
    assert response.json() == {"detail": "No store could give a price"}
    assert (
        len(logged_exceptions(caplog, snippet.logger)) == 3
    )  # each cause is in the server log


async def test_when_no_store_answers_in_time_the_answer_is_504(client, upstream):
    for store in snippet.STORES:
        upstream.reply(f"/{store}/prices/42", json={"price": 1.0}, delay=SLOW)

    response, seconds = await timed(client.get("/prices/42"))

    assert response.status_code == 504
    assert response.json() == {"detail": "No store answered in time"}
    assert DEADLINE <= seconds < SLOW / 2  # the deadline, not the slowest store
    assert asks_running() == []
    await wait_until(lambda: len(upstream.abandoned) == 3)


# --8<-- [end:failures]
async def test_nan_and_infinity_are_not_prices(client, upstream, caplog, monkeypatch):
    upstream.reply("/store1/prices/42", text='{"price": Infinity}')
    upstream.reply("/store2/prices/42", text='{"price": NaN}')
    upstream.reply("/store3/prices/42", text='{"price": 1e309}')

    response = await client.get("/prices/42")

    assert response.status_code == 502
    assert logged_exceptions(caplog, snippet.logger) == [ValidationError] * 3

    class Loose(BaseModel):  # the same check without FiniteFloat
        price: float = Field(gt=0)

    monkeypatch.setattr(snippet, "Quote", Loose)
    loose = await client.get("/prices/42")

    assert loose.status_code == 200
    assert loose.json()["price"] is None  # Infinity got through, sent on as null


async def test_a_bad_product_id_is_a_422_and_asks_no_store(client, upstream):
    for product_id in ["0", "-3", "abc", "4.2"]:
        response = await client.get(f"/prices/{product_id}")

        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["path", "product_id"]
    assert upstream.calls == {}
