import asyncio
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.sse import EventSourceResponse, ServerSentEvent

STEPS = 5
DELAY = 0.5  # seconds of work per step
logger = logging.getLogger(__name__)

app = FastAPI(title="A first Server-Sent Events stream")


@app.get("/progress", response_class=EventSourceResponse)  # (1)!
async def progress() -> AsyncIterator[ServerSentEvent]:  # (2)!
    try:
        for step in range(1, STEPS + 1):
            await asyncio.sleep(DELAY)  # stands in for real work
            data = {"step": step, "of": STEPS}
            yield ServerSentEvent(event="progress", data=data)  # (3)!
        yield ServerSentEvent(event="done", raw_data="finished")  # (4)!
    finally:
        logger.info("progress stream closed")  # (5)!
