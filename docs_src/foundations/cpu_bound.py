import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict

from fastapi import FastAPI, Query, Request

WORKERS = 2
MAX_N = 10_000_000  # bounds the work one request may ask for


def sum_of_squares(n: int) -> int:
    return sum(i * i for i in range(n))


class State(TypedDict):
    pool: ProcessPoolExecutor


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    spawn = multiprocessing.get_context("spawn")  # (1)!
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=spawn) as pool:
        yield {"pool": pool}  # (2)!


app = FastAPI(title="CPU-bound work", lifespan=lifespan)
N = Annotated[int, Query(ge=0, le=MAX_N)]


@app.get("/threads/sum-of-squares")
def in_a_thread(n: N) -> dict[str, int]:
    return {"n": n, "result": sum_of_squares(n)}  # (3)!


@app.get("/processes/sum-of-squares")
async def in_a_process(n: N, request: Request) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(request.state.pool, sum_of_squares, n)
    return {"n": n, "result": result}
