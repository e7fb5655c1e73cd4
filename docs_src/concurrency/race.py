import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

import httpx
from fastapi import FastAPI, HTTPException, Path, Request, status
from pydantic import BaseModel, Field, FiniteFloat

STORES = {
    "store1": "https://store1.example",
    "store2": "https://store2.example",
    "store3": "https://store3.example",
}
TIMEOUT = 5.0  # one call to one store
DEADLINE = 1.0  # the whole race
logger = logging.getLogger(__name__)


class Quote(BaseModel):
    price: FiniteFloat = Field(gt=0)  # gt=0 alone lets Infinity through


class Offer(BaseModel):
    store: str
    price: float


class State(TypedDict):
    client: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    async with httpx.AsyncClient(
        limits=httpx.Limits(max_connections=100), timeout=httpx.Timeout(TIMEOUT)
    ) as client:
        yield {"client": client}


app = FastAPI(title="Racing", lifespan=lifespan)
ProductId = Annotated[int, Path(ge=1)]


async def ask(client: httpx.AsyncClient, store: str, product_id: int) -> Offer:
    response = await client.get(f"{STORES[store]}/prices/{product_id}")
    response.raise_for_status()
    return Offer(store=store, price=Quote.model_validate_json(response.content).price)


async def first_success(calls: Iterable[Coroutine[Any, Any, Offer]]) -> Offer:
    tasks = [asyncio.create_task(call) for call in calls]  # (1)!
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(
                pending, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task.exception() is None:  # (2)!
                    return task.result()
                logger.warning("a store failed", exc_info=task.exception())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # (3)!
    raise HTTPException(status.HTTP_502_BAD_GATEWAY, "No store could give a price")


@app.get("/prices/{product_id}")
async def fastest_price(product_id: ProductId, request: Request) -> Offer:
    client = request.state.client
    try:
        async with asyncio.timeout(DEADLINE):  # (4)!
            return await first_success(ask(client, s, product_id) for s in STORES)
    except TimeoutError:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT, "No store answered in time"
        ) from None
