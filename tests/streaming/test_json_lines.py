import asyncio
import gc
import json
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.exceptions import ResponseValidationError
from fastapi.responses import StreamingResponse

from docs_src.streaming import json_lines as snippet
from tests.harness import open_stream, running
from tests.streaming.helpers import hang_up_while_sending, served

pytestmark = pytest.mark.anyio


@pytest.fixture
def subscriptions(monkeypatch: pytest.MonkeyPatch) -> list[snippet.Subscription]:
    """Every subscription the app opens, in order."""
    opened: list[snippet.Subscription] = []

    class Recorded(snippet.Subscription):
        def __init__(self, symbol: str) -> None:
            super().__init__(symbol)
            opened.append(self)

    monkeypatch.setattr(snippet, "Subscription", Recorded)
    return opened


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, subscriptions):
    monkeypatch.setattr(snippet, "DELAY", 0)
    return snippet.app


# --8<-- [start:lines]
async def test_each_quote_is_one_json_line(client, subscriptions):
    response = await client.get("/quotes/ACME?count=3")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jsonl"
    assert response.text == (
        '{"symbol":"ACME","seq":1,"price":100.25}\n'
        '{"symbol":"ACME","seq":2,"price":100.5}\n'
        '{"symbol":"ACME","seq":3,"price":100.75}\n'
    )  # the feed's internal venue_id is not in them
    assert [json.loads(line)["seq"] for line in response.text.splitlines()] == [1, 2, 3]
    assert subscriptions[0].closed


# --8<-- [end:lines]
# --8<-- [start:leave]
async def test_a_client_that_leaves_ends_the_subscription(running_app, subscriptions):
    path = "/quotes/ACME?count=100"
    sent = await hang_up_while_sending(running_app, path, chunks=3)

    (subscription,) = subscriptions
    assert [json.loads(line)["seq"] for line in sent] == [1, 2, 3]  # 3 never left
    assert subscription.closed  # the dependency's cleanup ran
    assert subscription.ticks == 3  # and nothing went on reading the feed


# --8<-- [end:leave]
# --8<-- [start:bad-input]
BAD_INPUT = {  # path -> subscriptions opened before the 422
    "/quotes/acme": 0,  # the symbol is checked before `subscribe` runs
    "/quotes/TOOLONG": 0,
    "/quotes/ACME?count=0": 1,  # the route's own parameters are checked after it
    "/quotes/ACME?count=x": 1,
}


@pytest.mark.parametrize(("path", "opened"), BAD_INPUT.items())
async def test_bad_input_is_a_422_before_streaming(client, subscriptions, path, opened):
    response = await client.get(path)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert len(subscriptions) == opened
    assert all(subscription.closed for subscription in subscriptions)


# --8<-- [end:bad-input]
# --8<-- [start:validated]
@pytest.fixture
def third_tick_invalid(monkeypatch: pytest.MonkeyPatch):
    """The feed's third tick comes back as a dict with a negative price."""
    next_tick = snippet.Subscription.next_tick

    async def broken_third(self):
        tick = await next_tick(self)
        return {**tick.model_dump(), "price": -1.0} if tick.seq == 3 else tick

    monkeypatch.setattr(snippet.Subscription, "next_tick", broken_third)


async def test_an_item_that_fails_validation_ends_the_stream(
    running_app, subscriptions, third_tick_invalid
):
    with pytest.raises(ResponseValidationError):  # raised by the app
        async with open_stream(running_app, "/quotes/ACME") as stream:
            lines = [line async for line in stream.aiter_lines()]

    assert [json.loads(line)["seq"] for line in lines] == [1, 2]  # then the cut
    assert subscriptions[0].closed


async def test_a_server_logs_it_and_cuts_the_transfer(
    app, subscriptions, third_tick_invalid, caplog
):
    async with (
        served(app, caplog) as url,
        httpx.AsyncClient(base_url=url) as client,
        client.stream("GET", "/quotes/ACME") as response,
    ):
        lines = response.aiter_lines()
        first_two = [json.loads(await anext(lines)) for _ in range(2)]
        with pytest.raises(httpx.RemoteProtocolError):  # no proper end of the body
            await anext(lines)

    assert response.status_code == 200  # sent with the first line
    assert [quote["seq"] for quote in first_two] == [1, 2]
    assert [(r.name, r.message) for r in caplog.records] == [
        ("uvicorn.error", "Exception in ASGI application\n"),
    ]
    assert caplog.records[0].exc_info[0] is ResponseValidationError
    assert subscriptions[0].closed


# --8<-- [end:validated]
async def test_a_model_instance_is_trusted_as_it_is(client, monkeypatch):
    async def unchecked(self):
        return snippet.Tick.model_construct(symbol="ACME", seq=1, price=-1.0)

    monkeypatch.setattr(snippet.Subscription, "next_tick", unchecked)

    response = await client.get("/quotes/ACME?count=1")

    assert response.text == '{"symbol":"ACME","seq":1,"price":-1.0}\n'


def test_the_schema_declares_json_lines_of_quotes():
    schema = snippet.app.openapi()
    ok = schema["paths"]["/quotes/{symbol}"]["get"]["responses"]["200"]

    assert ok["content"] == {
        "application/jsonl": {"itemSchema": {"$ref": "#/components/schemas/Quote"}}
    }
    assert set(schema["components"]["schemas"]["Quote"]["properties"]) == {
        "symbol",
        "seq",
        "price",
    }


# --8<-- [start:finally]
async def test_a_finally_in_the_generator_waits_for_the_garbage_collector():
    cleaned_up: list[str] = []

    async def resource() -> AsyncIterator[None]:
        yield
        cleaned_up.append("dependency")

    demo = FastAPI()

    @demo.get("/numbers")
    async def numbers(
        _: Annotated[None, Depends(resource)],
    ) -> AsyncIterator[int]:
        try:
            for number in range(1_000_000):
                yield number  # never awaits: faster than any client
        finally:
            cleaned_up.append("generator")

    gc.disable()  # so that the test decides when the collector runs
    try:
        async with running(demo) as started:
            async with open_stream(started, "/numbers") as stream:
                await anext(stream.aiter_lines())
            await asyncio.sleep(0.01)
            assert cleaned_up == ["dependency"]  # the generator is still open

            gc.collect()
            await asyncio.sleep(0.01)
            assert cleaned_up == ["dependency", "generator"]
    finally:
        gc.enable()


# --8<-- [end:finally]
# --8<-- [start:seed]
async def test_what_the_tutorial_stream_sends():
    tutorial = FastAPI()

    async def generate_data_stream():  # as widely copied, without the 0.5 s sleeps
        for i in range(5):
            yield f"data: {i}\n\n"

    @tutorial.get("/stream-data")
    async def stream_data():
        return StreamingResponse(generate_data_stream(), media_type="text/plain")

    async with (
        running(tutorial) as started,
        open_stream(started, "/stream-data") as stream,
    ):
        body = b"".join([chunk async for chunk in stream.aiter_bytes()])

    assert stream.headers["content-type"] == "text/plain; charset=utf-8"
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    for line in body.splitlines():  # no line of it is JSON
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


# --8<-- [end:seed]
