import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict, TypeVar

import aiohttp
from fastapi import Depends, FastAPI, HTTPException, Path, Request, status
from pydantic import TypeAdapter, ValidationError

from docs_src.resources.api_gateway import (  # the same models and errors
    ORDERS,
    RECOMMENDATIONS,
    USER,
    USER_ERRORS,
    Dashboard,
    UpstreamError,
)

USERS_URL = "http://localhost:8001"
ORDERS_URL = "http://localhost:8002"
RECOMMENDATIONS_URL = "http://localhost:8003"
TIMEOUT = 2.0
MAX_CONNECTIONS = 50
T = TypeVar("T")
logger = logging.getLogger(__name__)


class State(TypedDict):
    session: aiohttp.ClientSession


# --8<-- [start:session]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=TIMEOUT),  # (1)!
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
    ) as session:
        yield {"session": session}  # (2)!


async def fetch(session: aiohttp.ClientSession, url: str, shape: TypeAdapter[T]) -> T:
    try:
        async with session.get(url) as response:
            if response.status == status.HTTP_404_NOT_FOUND:
                raise UpstreamError(status.HTTP_404_NOT_FOUND)
            response.raise_for_status()
            return shape.validate_json(await response.read())  # (3)!
    except TimeoutError:  # (4)!
        logger.warning("%s timed out", url)
        raise UpstreamError(status.HTTP_504_GATEWAY_TIMEOUT) from None
    except (aiohttp.ClientError, ValidationError):
        logger.warning("%s failed", url, exc_info=True)
        raise UpstreamError(status.HTTP_502_BAD_GATEWAY) from None


# --8<-- [end:session]
async def optional(
    session: aiohttp.ClientSession, url: str, shape: TypeAdapter[T]
) -> T | None:
    try:
        return await fetch(session, url, shape)
    except UpstreamError:
        return None


async def get_session(request: Request) -> aiohttp.ClientSession:
    return request.state.session


Session = Annotated[aiohttp.ClientSession, Depends(get_session)]
app = FastAPI(title="API gateway on aiohttp", lifespan=lifespan)


@app.get("/users/{user_id}/dashboard")
async def dashboard(user_id: Annotated[int, Path(ge=1)], session: Session) -> Dashboard:
    user_url = f"{USERS_URL}/users/{user_id}"
    orders_url = f"{ORDERS_URL}/users/{user_id}/orders"
    recommendations_url = f"{RECOMMENDATIONS_URL}/users/{user_id}/recommendations"
    try:
        async with asyncio.TaskGroup() as group:
            user = group.create_task(fetch(session, user_url, USER))
            orders = group.create_task(optional(session, orders_url, ORDERS))
            recommendations = group.create_task(
                optional(session, recommendations_url, RECOMMENDATIONS)
            )
    except* UpstreamError as errors:
        status_code = errors.exceptions[0].status_code
        raise HTTPException(status_code, USER_ERRORS[status_code]) from None
    extras = {"orders": orders, "recommendations": recommendations}
    return Dashboard(
        user=user.result(),
        orders=orders.result(),
        recommendations=recommendations.result(),
        failed=[name for name, task in extras.items() if task.result() is None],
    )
