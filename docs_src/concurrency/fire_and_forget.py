import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

import httpx
from fastapi import FastAPI, Path, Request, status

UPSTREAM_URL = "http://localhost:8001"  # the mailer service
TIMEOUT = 5.0
SHUTDOWN_GRACE = 10.0  # seconds the tasks still running at shutdown get to finish
logger = logging.getLogger(__name__)
Tasks = set[asyncio.Task[None]]


def spawn(tasks: Tasks, work: Coroutine[Any, Any, None], name: str) -> None:
    task = asyncio.create_task(work, name=name)
    tasks.add(task)  # (1)!
    task.add_done_callback(lambda done: finished(tasks, done))


def finished(tasks: Tasks, task: asyncio.Task[None]) -> None:
    tasks.discard(task)  # (2)!
    if task.cancelled():
        logger.warning("%s was cancelled", task.get_name())
    elif (error := task.exception()) is not None:  # (3)!
        logger.error("%s failed", task.get_name(), exc_info=error)


class State(TypedDict):
    http: httpx.AsyncClient
    tasks: Tasks


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    tasks: Tasks = set()
    async with httpx.AsyncClient(
        base_url=UPSTREAM_URL,
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=5),
        timeout=httpx.Timeout(TIMEOUT),
    ) as http:
        yield {"http": http, "tasks": tasks}
        if tasks:  # (4)!
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)  # (5)!


app = FastAPI(title="Fire-and-forget tasks", lifespan=lifespan)


async def send_receipt(http: httpx.AsyncClient, order_id: int) -> None:
    response = await http.post("/receipts", json={"order_id": order_id})
    response.raise_for_status()
    logger.info("receipt for order %d sent", order_id)


@app.post("/orders/{order_id}/confirm", status_code=status.HTTP_202_ACCEPTED)
async def confirm(
    order_id: Annotated[int, Path(ge=1)], request: Request
) -> dict[str, int | str]:
    work = send_receipt(request.state.http, order_id)
    spawn(request.state.tasks, work, name=f"receipt-{order_id}")  # (6)!
    return {"order_id": order_id, "receipt": "on its way"}
