import asyncio
import time

import anyio.to_thread
from fastapi import FastAPI

DELAY = 1.0

app = FastAPI(title="Blocking calls inside async def")


def blocking_io() -> str:
    """Stands for any blocking call: requests.get, a sync SDK, time.sleep ..."""
    time.sleep(DELAY)
    return "done"


# --8<-- [start:blocking]
@app.get("/blocking")
async def blocking() -> dict[str, str]:
    return {"result": blocking_io()}  # (1)!


# --8<-- [end:blocking]
# --8<-- [start:offloaded]
@app.get("/offloaded")
async def offloaded() -> dict[str, str]:
    result = await anyio.to_thread.run_sync(blocking_io)  # (1)!
    return {"result": result}


@app.get("/executor")
async def executor() -> dict[str, str]:
    loop = asyncio.get_running_loop()  # (2)!
    result = await loop.run_in_executor(None, blocking_io)  # (3)!
    return {"result": result}


# --8<-- [end:offloaded]
@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"ping": "pong"}
