import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Self, TypedDict

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

# --8<-- [start:config]
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://localhost/app")
MIN_SIZE = 2  # connections opened at startup
MAX_SIZE = 10  # connections this process may hold; see "Pool sizing"
ACQUIRE_TIMEOUT = 2.0  # seconds to wait for a free connection
COMMAND_TIMEOUT = 5.0  # seconds one query may run
logger = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    password_hash text NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    balance integer NOT NULL
);
"""


# --8<-- [end:config]
# --8<-- [start:pool]
class State(TypedDict):
    pool: asyncpg.Pool


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    async with asyncpg.create_pool(  # (1)!
        DATABASE_URL,
        min_size=MIN_SIZE,
        max_size=MAX_SIZE,
        command_timeout=COMMAND_TIMEOUT,
    ) as pool:
        await pool.execute(SCHEMA)  # (2)!
        yield {"pool": pool}


async def get_connection(request: Request) -> AsyncIterator[PoolConnectionProxy]:
    pool: asyncpg.Pool = request.state.pool
    try:
        connection = await pool.acquire(timeout=ACQUIRE_TIMEOUT)  # (3)!
    except TimeoutError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "No free database connection"
        ) from None
    except (OSError, asyncpg.PostgresError):  # (4)!
        logger.warning("cannot open a database connection", exc_info=True)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "Database unavailable"
        ) from None
    try:
        yield connection
    except TimeoutError:  # (5)!
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "Database timeout"
        ) from None
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):  # (6)!
        logger.warning("lost the database connection", exc_info=True)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "Database unavailable"
        ) from None
    finally:
        await pool.release(connection)  # (7)!


Connection = Annotated[
    PoolConnectionProxy, Depends(get_connection, scope="function")  # (8)!
]
# --8<-- [end:pool]


async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


app = FastAPI(
    title="An asyncpg pool",
    lifespan=lifespan,
    exception_handlers={RequestValidationError: invalid_input},
)


# --8<-- [start:reads]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]  # (1)!


class User(BaseModel):
    id: int
    email: str
    name: str


@app.get("/users")
async def list_users(
    connection: Connection, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[User]:
    rows = await connection.fetch(  # (2)!
        "SELECT id, email, name FROM users ORDER BY id LIMIT $1", limit
    )
    return [User(**row) for row in rows]


@app.get("/users/{user_id}")
async def read_user(user_id: Annotated[Id, Path()], connection: Connection) -> User:
    row = await connection.fetchrow(
        "SELECT id, email, name FROM users WHERE id = $1", user_id
    )
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "User not found")  # (3)!
    return User(**row)


# --8<-- [end:reads]
# --8<-- [start:transfer]
class Transfer(BaseModel):
    source: Id
    target: Id
    amount: int = Field(gt=0, le=1_000_000)

    @model_validator(mode="after")
    def two_accounts(self) -> Self:  # (1)!
        if self.source == self.target:
            raise ValueError("source and target must differ")
        return self


class Account(BaseModel):
    id: int
    balance: int


LOCK = "SELECT id FROM accounts WHERE id = ANY($1::integer[]) ORDER BY id FOR UPDATE"
MOVE = "UPDATE accounts SET balance = balance + $2 WHERE id = $1 RETURNING id, balance"


@app.post("/transfers", status_code=status.HTTP_201_CREATED)
async def transfer(move: Transfer, connection: Connection) -> list[Account]:
    async with connection.transaction():  # (2)!
        await connection.execute(LOCK, [move.source, move.target])  # (3)!
        source = await connection.fetchrow(MOVE, move.source, -move.amount)
        if source is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Account not found")
        if source["balance"] < 0:
            raise HTTPException(status.HTTP_409_CONFLICT, "Insufficient funds")
        target = await connection.fetchrow(MOVE, move.target, move.amount)
        if target is None:  # (4)!
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Account not found")
    return [Account(**source), Account(**target)]


# --8<-- [end:transfer]
