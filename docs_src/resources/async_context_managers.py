import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Self, TypedDict

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

QUERY_DELAY = 0.05  # one database round trip
TIMEOUT = 1.0


# --8<-- [start:class]
class Database:
    """A stand-in for a database and its pool, with a log of what happened."""

    def __init__(self) -> None:
        self.prices = {"pen": 2, "book": 12}
        self.order_lines: list[tuple[str, int]] = []
        self.in_use = 0  # connections lent and not yet returned
        self.log: list[str] = []


class Connection:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.pending: list[tuple[str, int]] = []  # written, not committed

    async def __aenter__(self) -> Self:  # (1)!
        await asyncio.sleep(0)  # a real pool may wait for a free connection here
        self.db.in_use += 1
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.db.in_use -= 1  # (2)!
        outcome = exc_type.__name__ if exc_type else "success"
        self.db.log.append(f"released after {outcome}")

    async def price(self, product: str) -> int | None:
        await asyncio.sleep(QUERY_DELAY)
        return self.db.prices.get(product)

    async def insert_line(self, product: str, price: int) -> None:
        await asyncio.sleep(QUERY_DELAY)
        self.pending.append((product, price))


# --8<-- [end:class]
# --8<-- [start:function]
@asynccontextmanager
async def transaction(db: Database) -> AsyncIterator[Connection]:
    async with Connection(db) as connection:  # (1)!
        try:
            yield connection  # (2)!
        except BaseException:  # (3)!
            db.log.append("rollback")
            raise
        db.order_lines.extend(connection.pending)
        db.log.append("commit")


# --8<-- [end:function]
class State(TypedDict):
    db: Database


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    yield {"db": Database()}


async def get_db(request: Request) -> Database:
    return request.state.db


async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


Db = Annotated[Database, Depends(get_db)]
app = FastAPI(
    title="Async context managers",
    lifespan=lifespan,
    exception_handlers={RequestValidationError: invalid_input},  # no 500 for NaN
)


Product = Annotated[str, StringConstraints(max_length=32)]


class Order(BaseModel):
    products: list[Product] = Field(min_length=1, max_length=20)


# --8<-- [start:routes]
@app.get("/products/{product}")
async def read_price(product: Product, db: Db) -> dict[str, int]:
    async with Connection(db) as connection:  # (1)!
        price = await connection.price(product)
        if price is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Unknown product")
    return {"price": price}


@app.post("/orders", status_code=status.HTTP_201_CREATED)
async def create_order(order: Order, db: Db) -> dict[str, int]:
    total = 0
    try:
        async with asyncio.timeout(TIMEOUT), transaction(db) as connection:  # (2)!
            for product in order.products:
                price = await connection.price(product)
                if price is None:
                    raise HTTPException(
                        status.HTTP_422_UNPROCESSABLE_CONTENT,
                        f"Unknown product: {product}",
                    )
                await connection.insert_line(product, price)
                total += price
    except TimeoutError:  # (3)!
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT, "Database timeout"
        ) from None
    return {"total": total}


# --8<-- [end:routes]
