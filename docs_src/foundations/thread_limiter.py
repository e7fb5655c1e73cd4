import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

THREAD_TOKENS = 100  # AnyIO's default is 40
DELAY = 1.0


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    limiter = anyio.to_thread.current_default_thread_limiter()  # (1)!
    default, limiter.total_tokens = limiter.total_tokens, THREAD_TOKENS
    yield
    limiter.total_tokens = default


app = FastAPI(title="Sizing the thread pool", lifespan=lifespan)


@app.get("/sync")
def sync_endpoint() -> dict[str, str]:
    time.sleep(DELAY)
    return {"message": "sync completed"}


@app.get("/threadpool")
async def threadpool() -> dict[str, float]:
    limiter = anyio.to_thread.current_default_thread_limiter()
    return {"total": limiter.total_tokens, "in_use": limiter.borrowed_tokens}  # (2)!
