# --8<-- [start:gather]
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

import httpx
from fastapi import FastAPI, HTTPException, Path, Request, status

UPSTREAM_URL = "http://localhost:8001"
TIMEOUT = 2.0
PARTS = ("profile", "posts", "comments")
UPSTREAM_ERRORS = (httpx.HTTPError, ValueError)  # ValueError: a body that is not JSON
logger = logging.getLogger(__name__)


class State(TypedDict):
    client: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    async with httpx.AsyncClient(
        base_url=UPSTREAM_URL,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        timeout=httpx.Timeout(TIMEOUT),
    ) as client:  # (1)!
        yield {"client": client}


app = FastAPI(title="Fan-out", lifespan=lifespan)
UserId = Annotated[int, Path(ge=1)]


async def fetch(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    response.raise_for_status()  # (2)!
    return response.json()


def upstream_failed(error: BaseException) -> HTTPException:
    logger.error("an upstream call failed", exc_info=error)  # (3)!
    if isinstance(error, httpx.TimeoutException):
        return HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, "Upstream timed out")
    return HTTPException(status.HTTP_502_BAD_GATEWAY, "Upstream failed")


@app.get("/gather/users/{user_id}")
async def with_gather(user_id: UserId, request: Request) -> dict[str, Any]:
    calls = [fetch(request.state.client, f"/users/{user_id}/{p}") for p in PARTS]
    try:
        results = await asyncio.gather(*calls)  # (4)!
    except UPSTREAM_ERRORS as error:
        raise upstream_failed(error) from None
    return dict(zip(PARTS, results, strict=True))


# --8<-- [end:gather]
# --8<-- [start:taskgroup]
@app.get("/taskgroup/users/{user_id}")
async def with_task_group(user_id: UserId, request: Request) -> dict[str, Any]:
    client = request.state.client
    try:
        async with asyncio.TaskGroup() as group:  # (1)!
            tasks = [
                group.create_task(fetch(client, f"/users/{user_id}/{p}")) for p in PARTS
            ]
    except* UPSTREAM_ERRORS as failed:  # (2)!
        raise upstream_failed(failed.exceptions[0]) from None
    return {part: task.result() for part, task in zip(PARTS, tasks, strict=True)}


# --8<-- [end:taskgroup]
