import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import httpx
from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, FiniteFloat

UPSTREAM_URL = "http://localhost:8001"
TIMEOUT = 2.0
STOCK = {"apple": 3}  # stands for your database
logger = logging.getLogger(__name__)


class Order(BaseModel):
    sku: str = Field(pattern=r"^[a-z0-9-]{1,32}$")
    quantity: int = Field(gt=0, le=1000)


class Price(BaseModel):
    amount: FiniteFloat  # NaN and Infinity are not prices


# --8<-- [start:errors]
class OutOfStock(Exception):  # (1)!
    def __init__(self, sku: str, available: int) -> None:
        super().__init__(sku, available)
        self.sku, self.available = sku, available


class UpstreamError(Exception):
    """A service we call failed. Its details belong in the log, not in a response."""


async def out_of_stock(request: Request, exc: OutOfStock) -> JSONResponse:
    detail = f"Only {exc.available} of {exc.sku!r} left in stock"
    return JSONResponse({"detail": detail}, status.HTTP_409_CONFLICT)  # (2)!


def logged_response(
    request: Request, exc: Exception, code: int, detail: str
) -> JSONResponse:
    error_id = uuid.uuid4().hex  # (3)!
    logger.error(
        "error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc
    )
    return JSONResponse({"detail": detail, "error_id": error_id}, code)


async def upstream_failed(request: Request, exc: UpstreamError) -> JSONResponse:
    detail = "A service we depend on failed; try again later"
    return logged_response(request, exc, status.HTTP_502_BAD_GATEWAY, detail)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    detail = "Internal server error"  # (4)!
    return logged_response(request, exc, status.HTTP_500_INTERNAL_SERVER_ERROR, detail)


async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]  # (5)!
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


# --8<-- [end:errors]
class State(TypedDict):
    http: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    async with httpx.AsyncClient(
        base_url=UPSTREAM_URL,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        timeout=httpx.Timeout(TIMEOUT),
    ) as http:
        yield {"http": http}


# --8<-- [start:routes]
app = FastAPI(
    title="Error handling",
    lifespan=lifespan,
    exception_handlers={
        OutOfStock: out_of_stock,
        UpstreamError: upstream_failed,
        RequestValidationError: invalid_input,
        Exception: unexpected,  # (1)!
    },
)


async def fetch_price(http: httpx.AsyncClient, sku: str) -> Price:
    try:
        response = await http.get(f"/prices/{sku}")
        response.raise_for_status()
        return Price.model_validate_json(response.content)
    except (httpx.HTTPError, ValueError) as exc:  # (2)!
        raise UpstreamError("the price service failed") from exc


@app.post("/orders", status_code=status.HTTP_201_CREATED)
async def place_order(order: Order, request: Request) -> dict[str, Any]:
    if order.sku not in STOCK:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Unknown product")
    if order.quantity > STOCK[order.sku]:
        raise OutOfStock(order.sku, STOCK[order.sku])  # (3)!
    price = await fetch_price(request.state.http, order.sku)
    total = price.amount * order.quantity
    return {"sku": order.sku, "quantity": order.quantity, "total": total}


@app.get("/orders/average")
async def average_order() -> dict[str, float]:
    quantities: list[int] = []  # no orders yet today
    return {"average": sum(quantities) / len(quantities)}  # (4)!


# --8<-- [end:routes]
