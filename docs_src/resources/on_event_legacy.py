from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

events: list[str] = []  # what ran, in order; the tests read it

# --8<-- [start:old-way]
app = FastAPI(title="on_event, the deprecated way")


@app.on_event("startup")  # (1)!
async def connect() -> None:
    events.append("startup handler")


@app.on_event("shutdown")
async def disconnect() -> None:
    events.append("shutdown handler")


# --8<-- [end:old-way]
# --8<-- [start:ignored]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    events.append("lifespan startup")
    yield
    events.append("lifespan shutdown")


mixed = FastAPI(title="on_event next to a lifespan", lifespan=lifespan)


@mixed.on_event("startup")  # (1)!
async def never_runs() -> None:
    events.append("mixed startup handler")


# --8<-- [end:ignored]
