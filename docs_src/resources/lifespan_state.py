import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypedDict

import httpx
from fastapi import FastAPI, Request, Response, status

POOL_SIZE = 10
UPSTREAM_URL = "http://localhost:8001"
TIMEOUT = 2.0


class ConnectionPool:
    """A stand-in for a database pool such as asyncpg's: open once, close once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.is_open = False

    async def open(self) -> None:
        await asyncio.sleep(0)  # a real pool connects here
        self.is_open = True

    async def close(self) -> None:
        await asyncio.sleep(0)
        self.is_open = False


class State(TypedDict):
    pool: ConnectionPool
    http: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    async with AsyncExitStack() as stack:  # (1)!
        pool = ConnectionPool(POOL_SIZE)
        await pool.open()
        stack.push_async_callback(pool.close)  # (2)!
        http = await stack.enter_async_context(  # (3)!
            httpx.AsyncClient(
                base_url=UPSTREAM_URL,
                limits=httpx.Limits(max_connections=POOL_SIZE),
                timeout=httpx.Timeout(TIMEOUT),
            )
        )
        yield {"pool": pool, "http": http}  # (4)!


app = FastAPI(title="Lifespan and lifespan state", lifespan=lifespan)


@app.get("/health")
async def health(request: Request, response: Response) -> dict[str, bool]:
    pool: ConnectionPool = request.state.pool  # (5)!
    http: httpx.AsyncClient = request.state.http
    try:
        upstream = (await http.get("/health")).is_success
    except httpx.HTTPError:
        upstream = False
    checks = {"database": pool.is_open, "upstream": upstream}
    if not all(checks.values()):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return checks
