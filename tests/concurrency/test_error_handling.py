import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from docs_src.concurrency import error_handling as snippet
from tests.harness import app_client, client_for

pytestmark = pytest.mark.anyio
APPLES = {"sku": "apple", "quantity": 2}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, upstream):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    return snippet.app


# --8<-- [start:client]
@pytest.fixture
async def client(running_app) -> AsyncIterator[httpx.AsyncClient]:
    """Like a real server: answer with the 500 the app sent, do not re-raise."""
    async with client_for(running_app, raise_app_exceptions=False) as client:
        yield client


# --8<-- [end:client]
def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_order_in_stock_is_priced(client, upstream, caplog):
    upstream.reply("/prices/apple", json={"amount": 0.5})

    response = await client.post("/orders", json=APPLES)

    assert response.status_code == 201
    assert response.json() == {"sku": "apple", "quantity": 2, "total": 1.0}
    assert error_records(caplog) == []


# --8<-- [start:domain]
async def test_a_domain_error_is_a_409_with_a_useful_detail(client, caplog):
    response = await client.post("/orders", json={"sku": "apple", "quantity": 5})

    assert response.status_code == 409
    assert response.json() == {"detail": "Only 3 of 'apple' left in stock"}
    assert error_records(caplog) == []  # the client's mistake, not an incident


# --8<-- [end:domain]
@pytest.mark.parametrize(
    "order",
    [
        {"sku": "apple", "quantity": 0},
        {"sku": "apple", "quantity": -1},
        {"sku": "apple", "quantity": "many"},
        {"sku": "../admin", "quantity": 1},
        {"sku": "a" * 33, "quantity": 1},
        {"quantity": 1},
    ],
)
async def test_an_invalid_order_is_422(client, order):
    response = await client.post("/orders", json=order)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert "error_id" not in response.json()  # a 4xx is not an incident


async def test_an_unknown_product_is_404(client):
    response = await client.post("/orders", json={"sku": "kiwi", "quantity": 1})

    assert response.status_code == 404
    assert response.json() == {"detail": "Unknown product"}


# --8<-- [start:upstream]
BROKEN_PRICES = {  # what the price service sends -> what only the log may show
    "a 500": (
        {"status": 500, "text": "password=hunter2", "content_type": "text/plain"},
        "Server error '500 Internal Server Error' for url",
    ),
    "not a Price": (
        {"json": {"price": "internal-field"}},
        "input_value={'price': 'internal-field'}",
    ),
    "not a number": (
        {"text": '{"amount": Infinity}'},
        "Input should be a finite number",
    ),
}


@pytest.mark.parametrize(("reply", "logged"), BROKEN_PRICES.values(), ids=BROKEN_PRICES)
async def test_an_upstream_failure_is_a_502_that_leaks_nothing(
    client, upstream, caplog, reply, logged
):
    upstream.reply("/prices/apple", **reply)

    response = await client.post("/orders", json=APPLES)

    error_id = response.json()["error_id"]
    assert response.status_code == 502
    assert response.json() == {
        "detail": "A service we depend on failed; try again later",
        "error_id": error_id,
    }
    (record,) = error_records(caplog)
    assert record.getMessage() == f"error {error_id} on POST /orders"
    assert "UpstreamError: the price service failed" in caplog.text
    assert logged in caplog.text  # the cause is in the log, chained


# --8<-- [end:upstream]
async def test_an_unreachable_upstream_is_a_502(monkeypatch, caplog, unreachable_url):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", unreachable_url)

    async with app_client(snippet.app) as client:
        response = await client.post("/orders", json=APPLES)

    assert response.status_code == 502
    assert "ConnectError" in caplog.text


# --8<-- [start:unexpected]
async def test_a_bug_is_a_generic_500_with_an_id_and_a_logged_traceback(client, caplog):
    response = await client.get("/orders/average")

    assert response.status_code == 500
    error_id = response.json()["error_id"]
    assert response.json() == {"detail": "Internal server error", "error_id": error_id}
    assert "division" not in response.text  # no exception text for the client
    (record,) = error_records(caplog)
    assert f"error {error_id} on GET /orders/average" == record.getMessage()
    assert "Traceback (most recent call last)" in caplog.text  # all of it in the log
    assert "ZeroDivisionError: division by zero" in caplog.text


# --8<-- [end:unexpected]
async def test_every_500_and_502_gets_its_own_id(client, upstream):
    upstream.reply("/prices/apple", status=500, text="down")
    first = await client.get("/orders/average")
    second = await client.get("/orders/average")
    third = await client.post("/orders", json=APPLES)

    assert [r.status_code for r in (first, second, third)] == [500, 500, 502]
    assert len({r.json()["error_id"] for r in (first, second, third)}) == 3


# --8<-- [start:reraised]
async def test_starlette_reraises_after_the_500_handler_answered(running_app):
    async with client_for(running_app) as default_client:  # raise_app_exceptions=True
        with pytest.raises(ZeroDivisionError):
            await default_client.get("/orders/average")


# --8<-- [end:reraised]
# --8<-- [start:non-finite]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e309"]  # Python's json reads them all


def order_with(quantity: str) -> dict:
    body = '{"sku": "apple", "quantity": ' + quantity + "}"
    return {"content": body, "headers": {"Content-Type": "application/json"}}


def client_for_orders(handlers: dict) -> httpx.AsyncClient:
    """A client for a bare app with one route that takes an `Order`."""
    app = FastAPI(exception_handlers=handlers)

    @app.post("/orders")
    async def place_order(order: snippet.Order) -> None: ...

    return client_for(app, raise_app_exceptions=False)


@pytest.mark.parametrize("number", NON_FINITE)
async def test_the_default_422_handler_fails_on_a_non_finite_number(number):
    fix = {RequestValidationError: snippet.invalid_input}
    async with client_for_orders({}) as default, client_for_orders(fix) as fixed:
        echoed = await default.post("/orders", **order_with("-1"))
        broken = await default.post("/orders", **order_with(number))
        response = await fixed.post("/orders", **order_with(number))

    assert echoed.json()["detail"][0]["input"] == -1  # the default echoes the input
    assert broken.status_code == 500  # so a NaN input breaks the 422 itself
    assert response.status_code == 422  # the snippet's handler echoes nothing


def test_starlette_will_not_send_nan_or_infinity():
    for number in [float("nan"), float("inf")]:
        with pytest.raises(ValueError, match="Out of range float values"):
            JSONResponse({"input": number})


@pytest.mark.parametrize("number", NON_FINITE)
async def test_a_non_finite_number_is_a_422_that_echoes_nothing(client, number):
    response = await client.post("/orders", **order_with(number))

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "finite_number",
                "loc": ["body", "quantity"],
                "msg": "Input should be a finite number",
            }
        ]
    }


# --8<-- [end:non-finite]
# --8<-- [start:seed]
async def test_the_tutorial_pattern_leaks_the_text_and_logs_nothing(caplog):
    seed = FastAPI()

    @seed.get("/async-with-error")
    async def async_with_error():
        try:
            raise ValueError("connect to db://admin:hunter2@10.0.0.5 failed")
        except Exception as e:
            raise HTTPException(status_code=500, detail=str(e)) from e

    async with app_client(seed) as client:
        response = await client.get("/async-with-error")

    assert response.status_code == 500
    assert "hunter2" in response.json()["detail"]  # sent to whoever asked
    assert caplog.records == []  # and nothing in the server's log


# --8<-- [end:seed]
