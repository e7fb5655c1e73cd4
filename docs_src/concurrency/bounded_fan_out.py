import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

import httpx
from fastapi import FastAPI, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, FiniteFloat

UPSTREAM_URL = "http://localhost:8001"
TIMEOUT = 2.0
POOL_TIMEOUT = 1.0  # how long a call may wait for a free connection
MAX_CONNECTIONS = 10
CONCURRENCY = 5  # upstream calls in flight at once, for the whole app
MAX_IDS = 50
logger = logging.getLogger(__name__)


class Price(BaseModel):
    id: int
    price: FiniteFloat  # NaN and Infinity are not prices


class State(TypedDict):
    client: httpx.AsyncClient
    limit: asyncio.Semaphore


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    async with httpx.AsyncClient(
        base_url=UPSTREAM_URL,
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS),  # (1)!
        timeout=httpx.Timeout(TIMEOUT, pool=POOL_TIMEOUT),
    ) as client:
        yield {"client": client, "limit": asyncio.Semaphore(CONCURRENCY)}  # (2)!


app = FastAPI(title="Bounded fan-out", lifespan=lifespan)
ItemId = Annotated[int, Field(ge=1)]
Ids = Annotated[list[ItemId], Query(min_length=1, max_length=MAX_IDS)]  # (3)!


async def fetch_price(client: httpx.AsyncClient, item_id: int) -> Price:
    response = await client.get(f"/prices/{item_id}")
    response.raise_for_status()
    return Price.model_validate_json(response.content)


async def bounded_price(
    limit: asyncio.Semaphore, client: httpx.AsyncClient, item_id: int
) -> Price:
    async with limit:  # (4)!
        return await fetch_price(client, item_id)


async def all_prices(calls: Iterable[Coroutine[Any, Any, Price]]) -> list[Price]:
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except* (httpx.HTTPError, ValueError) as failed:
        logger.error("a price lookup failed", exc_info=failed.exceptions[0])
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, "Price lookup failed"
        ) from None
    return [task.result() for task in tasks]


@app.get("/prices")
async def prices(ids: Ids, request: Request) -> list[Price]:
    state = request.state
    return await all_prices(bounded_price(state.limit, state.client, i) for i in ids)


@app.get("/prices/unbounded")
async def prices_unbounded(ids: Ids, request: Request) -> list[Price]:
    return await all_prices(fetch_price(request.state.client, i) for i in ids)
