# --8<-- [start:setup]
import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, func, select
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///dashboard.db")
POOL_SIZE = 15  # (1)!
POOL_TIMEOUT = 5.0  # seconds a query may wait for a free connection
LIMIT = 10
T = TypeVar("T")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    password_hash: Mapped[str]


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    total_cents: Mapped[int]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    user_id: int
    total_cents: int


class Counts(BaseModel):
    users: int
    orders: int


class Dashboard(BaseModel):
    users: list[UserOut]
    orders: list[OrderOut]
    counts: Counts


class State(TypedDict):
    sessions: async_sessionmaker[AsyncSession]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    engine = create_async_engine(
        DATABASE_URL, pool_size=POOL_SIZE, max_overflow=0, pool_timeout=POOL_TIMEOUT
    )
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield {"sessions": async_sessionmaker(engine)}  # (2)!
    finally:
        await engine.dispose()


async def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.state.sessions


Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
app = FastAPI(title="Parallel queries", lifespan=lifespan)


# --8<-- [end:setup]
# --8<-- [start:queries]
async def read_users(session: AsyncSession) -> list[UserOut]:
    query = select(User.id, User.name).order_by(User.id).limit(LIMIT)  # (1)!
    return [UserOut.model_validate(row) for row in await session.execute(query)]


async def read_orders(session: AsyncSession) -> list[OrderOut]:
    orders = await session.scalars(select(Order).order_by(Order.id).limit(LIMIT))
    return [OrderOut.model_validate(order) for order in orders]


COUNTS = select(  # (2)!
    select(func.count()).select_from(User).scalar_subquery().label("users"),
    select(func.count()).select_from(Order).scalar_subquery().label("orders"),
)


async def read_counts(session: AsyncSession) -> Counts:
    row = (await session.execute(COUNTS)).one()
    return Counts(users=row.users, orders=row.orders)


@app.get("/dashboard")
async def dashboard(sessions: Sessions) -> Dashboard:
    async def in_own_session(query: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with sessions() as session:  # (3)!
            return await query(session)

    try:
        async with asyncio.TaskGroup() as group:  # (4)!
            users = group.create_task(in_own_session(read_users))
            orders = group.create_task(in_own_session(read_orders))
            counts = group.create_task(in_own_session(read_counts))
    except* PoolTimeout:  # (5)!
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "Database busy, try again"
        ) from None
    return Dashboard(
        users=users.result(), orders=orders.result(), counts=counts.result()
    )


# --8<-- [end:queries]
