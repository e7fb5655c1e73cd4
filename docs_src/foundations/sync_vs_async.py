import asyncio
import time

from fastapi import FastAPI

DELAY = 1.0  # seconds of simulated I/O; the tests shrink it

app = FastAPI(title="def vs async def")


@app.get("/sync")
def sync_endpoint() -> dict[str, str]:
    time.sleep(DELAY)  # (1)!
    return {"message": "sync completed"}


@app.get("/async")
async def async_endpoint() -> dict[str, str]:
    await asyncio.sleep(DELAY)  # (2)!
    return {"message": "async completed"}


@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"ping": "pong"}
