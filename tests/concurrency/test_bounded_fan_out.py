import asyncio

import httpx
import pytest

from docs_src.concurrency import bounded_fan_out as snippet
from tests.harness import logged_exceptions, timed

DELAY = 0.05
POOL_TIMEOUT = 0.2  # time enough, even on a busy machine, to reach the upstream
pytestmark = pytest.mark.anyio
IDS = list(range(1, 21))


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, upstream):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    monkeypatch.setattr(snippet, "POOL_TIMEOUT", POOL_TIMEOUT)
    return snippet.app


def price_list(upstream, ids: list[int], delay: float) -> list[dict]:
    """Make the upstream price each id after `delay`; return what the app should say."""
    prices = [{"id": i, "price": i * 1.5} for i in ids]
    for price in prices:
        upstream.reply(f"/prices/{price['id']}", json=price, delay=delay)
    return prices


# --8<-- [start:bounded]
async def test_the_upstream_never_sees_more_calls_than_the_limit(client, upstream):
    expected = price_list(upstream, IDS, delay=DELAY)

    (first, second), seconds = await timed(
        asyncio.gather(
            client.get("/prices", params={"ids": IDS}),
            client.get("/prices", params={"ids": IDS}),
        )
    )

    assert first.json() == second.json() == expected  # every price, in order
    assert upstream.max_in_flight == snippet.CONCURRENCY  # 5, for both requests
    assert seconds >= 8 * DELAY  # 40 calls, 5 at a time: 8 rounds, 2 * POOL_TIMEOUT


# --8<-- [end:bounded]
# --8<-- [start:unbounded]
async def test_unbounded_the_pool_caps_the_calls_and_the_rest_time_out(
    client, upstream, caplog
):
    price_list(upstream, IDS, delay=4 * POOL_TIMEOUT)

    response = await client.get("/prices/unbounded", params={"ids": IDS})

    assert response.status_code == 502
    assert response.json() == {"detail": "Price lookup failed"}
    assert snippet.CONCURRENCY < upstream.max_in_flight <= snippet.MAX_CONNECTIONS
    assert logged_exceptions(caplog, snippet.logger) == [
        httpx.PoolTimeout
    ]  # waited for a connection


# --8<-- [end:unbounded]
# --8<-- [start:bad-input]
BAD_QUERIES = {
    "List should have at most 50 items": [("ids", i) for i in range(1, 52)],
    "Input should be a valid integer": [("ids", "1"), ("ids", "abc")],
    "Input should be greater than or equal to 1": [("ids", "0")],
    "Field required": [],
}


async def test_bad_ids_are_a_422_before_any_call(client, upstream):
    for message, query in BAD_QUERIES.items():
        response = await client.get("/prices", params=query)

        assert response.status_code == 422
        assert response.json()["detail"][0]["msg"].startswith(message)
    comma_separated = await client.get("/prices", params={"ids": "1,2"})
    assert comma_separated.status_code == 422  # repeat the key: ?ids=1&ids=2
    assert upstream.calls == {}


# --8<-- [end:bad-input]
async def test_a_failed_or_malformed_price_is_a_logged_502(client, upstream, caplog):
    upstream.reply("/prices/1", json={"id": 1, "price": 1.5})
    upstream.reply("/prices/2", status=500, text="<h1>down</h1>")
    upstream.reply("/prices/3", json={"id": 3, "price": "free"})
    upstream.reply("/prices/4", text='{"id": 4, "price": NaN}')
    failures = [
        ([1, 2], httpx.HTTPStatusError),
        ([1, 3], ValueError),
        ([1, 4], ValueError),  # NaN is not a price
    ]

    for ids, error in failures:
        for route in ["/prices", "/prices/unbounded"]:
            caplog.clear()
            response = await client.get(route, params={"ids": ids})

            assert response.status_code == 502
            assert response.json() == {"detail": "Price lookup failed"}
            (logged,) = logged_exceptions(caplog, snippet.logger)
            assert issubclass(logged, error)
