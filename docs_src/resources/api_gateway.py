import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict, TypeVar

import httpx
from fastapi import Depends, FastAPI, HTTPException, Path, Request, status
from pydantic import BaseModel, FiniteFloat, TypeAdapter, ValidationError

USERS_URL = "http://localhost:8001"
ORDERS_URL = "http://localhost:8002"
RECOMMENDATIONS_URL = "http://localhost:8003"
TIMEOUT = 2.0
MAX_CONNECTIONS = 50
T = TypeVar("T")
logger = logging.getLogger(__name__)


# --8<-- [start:shape]
class User(BaseModel):
    id: int
    name: str


class Order(BaseModel):
    id: int
    total: FiniteFloat  # NaN and Infinity are not totals


class Dashboard(BaseModel):
    user: User
    orders: list[Order] | None  # None when the orders service failed
    recommendations: list[str] | None
    failed: list[str]  # the optional services that failed, by name


USER = TypeAdapter(User)
ORDERS = TypeAdapter(list[Order])
RECOMMENDATIONS = TypeAdapter(list[str])


# --8<-- [end:shape]
# --8<-- [start:fetch]
class UpstreamError(Exception):
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


async def fetch(http: httpx.AsyncClient, url: str, shape: TypeAdapter[T]) -> T:
    try:
        response = await http.get(url)
        if response.status_code == status.HTTP_404_NOT_FOUND:
            raise UpstreamError(status.HTTP_404_NOT_FOUND)
        response.raise_for_status()
        return shape.validate_json(response.content)  # (1)!
    except httpx.TimeoutException:
        logger.warning("%s timed out", url)
        raise UpstreamError(status.HTTP_504_GATEWAY_TIMEOUT) from None
    except (httpx.HTTPError, ValidationError):
        logger.warning("%s failed", url, exc_info=True)  # (2)!
        raise UpstreamError(status.HTTP_502_BAD_GATEWAY) from None


async def optional(
    http: httpx.AsyncClient, url: str, shape: TypeAdapter[T]
) -> T | None:
    try:
        return await fetch(http, url, shape)
    except UpstreamError:
        return None  # (3)!


# --8<-- [end:fetch]
class State(TypedDict):
    http: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    async with httpx.AsyncClient(
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
        timeout=httpx.Timeout(TIMEOUT),
    ) as http:
        yield {"http": http}


async def get_http(request: Request) -> httpx.AsyncClient:
    return request.state.http


HttpClient = Annotated[httpx.AsyncClient, Depends(get_http)]
app = FastAPI(title="API gateway", lifespan=lifespan)
USER_ERRORS = {
    status.HTTP_404_NOT_FOUND: "User not found",
    status.HTTP_502_BAD_GATEWAY: "The user service failed",
    status.HTTP_504_GATEWAY_TIMEOUT: "The user service timed out",
}


# --8<-- [start:route]
@app.get("/users/{user_id}/dashboard")
async def dashboard(user_id: Annotated[int, Path(ge=1)], http: HttpClient) -> Dashboard:
    user_url = f"{USERS_URL}/users/{user_id}"
    orders_url = f"{ORDERS_URL}/users/{user_id}/orders"
    recommendations_url = f"{RECOMMENDATIONS_URL}/users/{user_id}/recommendations"
    try:
        async with asyncio.TaskGroup() as group:  # (1)!
            user = group.create_task(fetch(http, user_url, USER))
            orders = group.create_task(optional(http, orders_url, ORDERS))
            recommendations = group.create_task(
                optional(http, recommendations_url, RECOMMENDATIONS)
            )
    except* UpstreamError as errors:  # (2)!
        status_code = errors.exceptions[0].status_code
        raise HTTPException(status_code, USER_ERRORS[status_code]) from None
    extras = {"orders": orders, "recommendations": recommendations}
    return Dashboard(
        user=user.result(),
        orders=orders.result(),
        recommendations=recommendations.result(),
        failed=[name for name, task in extras.items() if task.result() is None],
    )


# --8<-- [end:route]
