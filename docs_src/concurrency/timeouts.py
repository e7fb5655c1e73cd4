import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import httpx
from fastapi import FastAPI, HTTPException, Request, status

# --8<-- [start:client]
UPSTREAM_URL = "http://localhost:8001"
DEADLINE = 2.0  # seconds for the whole route, retries included
CLIENT_TIMEOUT = 1.0  # seconds for each connect, read, write or pool wait
ATTEMPTS = 2
logger = logging.getLogger(__name__)


class State(TypedDict):
    http: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    async with httpx.AsyncClient(
        base_url=UPSTREAM_URL,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        timeout=httpx.Timeout(CLIENT_TIMEOUT),  # (1)!
    ) as http:
        yield {"http": http}


app = FastAPI(title="Timeouts and cancellation", lifespan=lifespan)
# --8<-- [end:client]


# --8<-- [start:deadline]
async def get_with_retries(http: httpx.AsyncClient, path: str) -> httpx.Response:
    attempt = 1
    while True:
        try:
            return await http.get(path)
        except httpx.TransportError:  # (1)!
            if attempt == ATTEMPTS:
                raise
            logger.warning("%s: attempt %d failed, retrying", path, attempt)
            attempt += 1
        except asyncio.CancelledError:
            logger.info("%s: cancelled during attempt %d", path, attempt)
            raise  # (2)!


@app.get("/quote")
async def quote(request: Request) -> Any:
    try:
        async with asyncio.timeout(DEADLINE):  # (3)!
            response = await get_with_retries(request.state.http, "/quote")
            response.raise_for_status()
            return response.json()
    except (TimeoutError, httpx.TimeoutException):
        detail = "The quote service did not answer in time"
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, detail) from None
    except (httpx.HTTPError, ValueError):  # (4)!
        detail = "The quote service failed"
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail) from None


# --8<-- [end:deadline]
# --8<-- [start:swallowed]
async def get_swallowing(http: httpx.AsyncClient, path: str) -> httpx.Response:
    attempt = 1
    while True:
        try:
            return await http.get(path)
        except BaseException:  # (1)!
            if attempt == ATTEMPTS:
                raise
            logger.warning("%s: attempt %d failed, retrying", path, attempt)
            attempt += 1


# --8<-- [end:swallowed]
