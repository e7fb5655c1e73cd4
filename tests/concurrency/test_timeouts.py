import asyncio
import logging

import httpx
import pytest

from docs_src.concurrency import timeouts as snippet
from tests.harness import app_client, timed, wait_until

pytestmark = pytest.mark.anyio
DEADLINE = 0.1
SLOW = 1.0  # an upstream delay far beyond every deadline in this file
QUOTE = {"symbol": "ACME", "price": 42.5}


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=snippet.__name__)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, upstream):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    monkeypatch.setattr(snippet, "DEADLINE", SLOW)  # generous, unless a test says
    return snippet.app


async def test_a_quote_from_a_healthy_upstream(client, upstream):
    upstream.reply("/quote", json=QUOTE)

    response = await client.get("/quote")

    assert response.status_code == 200
    assert response.json() == QUOTE


# --8<-- [start:deadline]
async def test_the_deadline_answers_504_and_cancels_the_upstream_call(
    client, upstream, caplog, monkeypatch
):
    monkeypatch.setattr(snippet, "DEADLINE", DEADLINE)
    upstream.reply("/quote", json=QUOTE, delay=SLOW)

    response, seconds = await timed(client.get("/quote"))

    assert response.status_code == 504
    assert response.json() == {"detail": "The quote service did not answer in time"}
    assert DEADLINE <= seconds < SLOW / 2  # at the deadline, not the upstream's time
    await wait_until(lambda: upstream.abandoned == ["/quote"])  # really cancelled
    assert upstream.calls["/quote"] == 1
    assert "/quote: cancelled during attempt 1" in caplog.messages


async def test_the_client_timeout_bounds_each_attempt(monkeypatch, upstream, caplog):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    monkeypatch.setattr(snippet, "DEADLINE", SLOW)  # the route's deadline is generous
    monkeypatch.setattr(snippet, "CLIENT_TIMEOUT", DEADLINE)
    upstream.reply("/quote", json=QUOTE, delay=SLOW)

    async with app_client(snippet.app) as client:
        response = await client.get("/quote")

    assert response.status_code == 504
    assert "/quote: attempt 1 failed, retrying" in caplog.messages
    assert upstream.calls["/quote"] == snippet.ATTEMPTS == 2
    await wait_until(lambda: upstream.abandoned == ["/quote", "/quote"])


# --8<-- [end:deadline]
BROKEN = [
    {"status": 500, "text": "Traceback: db password=hunter2"},
    {"status": 200, "text": "<html>Down for maintenance</html>"},  # 200, not JSON
]


async def test_a_broken_upstream_is_a_502_that_leaks_nothing(client, upstream):
    for reply in BROKEN:
        upstream.reply("/quote", content_type="text/html", **reply)
        upstream.calls.clear()

        response = await client.get("/quote")

        assert response.status_code == 502
        assert response.json() == {"detail": "The quote service failed"}
        assert upstream.calls == {"/quote": 1}  # an answer, even a bad one: no retry


async def test_an_unreachable_upstream_is_retried_then_502(
    monkeypatch, caplog, unreachable_url
):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", unreachable_url)

    async with app_client(snippet.app) as client:
        response = await client.get("/quote")

    assert response.status_code == 502
    assert response.json() == {"detail": "The quote service failed"}
    assert "/quote: attempt 1 failed, retrying" in caplog.messages


# --8<-- [start:swallowed]
async def test_a_swallowed_cancellation_defeats_the_deadline(upstream):
    upstream.reply("/swallowing", json=QUOTE, delay=3 * DEADLINE)
    upstream.reply("/reraising", json=QUOTE, delay=3 * DEADLINE)

    async with httpx.AsyncClient(base_url=upstream.url) as http:
        async with asyncio.timeout(DEADLINE):
            response = await snippet.get_swallowing(http, "/swallowing")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(DEADLINE):
                await snippet.get_with_retries(http, "/reraising")

    assert response.status_code == 200  # no TimeoutError: a late answer instead,
    assert upstream.calls["/swallowing"] == 2  # from a retry after the deadline
    assert upstream.calls["/reraising"] == 1  # re-raised: no attempt after it
    await wait_until(lambda: upstream.abandoned == ["/swallowing", "/reraising"])


# --8<-- [end:swallowed]
