import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict

import httpx
from fastapi import Depends, FastAPI, HTTPException, Path, Request, status
from pydantic import BaseModel, ValidationError

UPSTREAM_URL = "http://localhost:8001"
TIMEOUT = 2.0  # seconds, for connecting, each read, each write, waiting for the pool
MAX_CONNECTIONS = 20
logger = logging.getLogger(__name__)


class Item(BaseModel):
    id: int
    name: str


class State(TypedDict):
    http: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    async with httpx.AsyncClient(  # (1)!
        base_url=UPSTREAM_URL,
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS),  # (2)!
        timeout=httpx.Timeout(TIMEOUT),  # (3)!
    ) as http:
        yield {"http": http}


async def get_http(request: Request) -> httpx.AsyncClient:
    return request.state.http


HttpClient = Annotated[httpx.AsyncClient, Depends(get_http)]  # (4)!
app = FastAPI(title="One shared HTTP client", lifespan=lifespan)


@app.get("/items/{item_id}")
async def read_item(item_id: Annotated[int, Path(ge=1)], http: HttpClient) -> Item:
    try:
        response = await http.get(f"/items/{item_id}")
        if response.status_code == status.HTTP_404_NOT_FOUND:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Item not found")
        response.raise_for_status()  # (5)!
        return Item.model_validate_json(response.content)  # (6)!
    except httpx.TimeoutException:
        logger.warning("upstream timed out for item %s", item_id)
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT, "Upstream timed out"
        ) from None
    except (httpx.HTTPError, ValidationError):  # (7)!
        logger.warning("upstream failed for item %s", item_id, exc_info=True)
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, "Upstream failed") from None
