import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, TypedDict

import anyio
import anyio.lowlevel
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy import Row, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from docs_src.streaming.csv_export import csv_chunks

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///users.db")
BATCH_SIZE = 500  # rows per query, and rows per chunk sent
DATABASE_ERRORS = (SQLAlchemyError, OSError)  # asyncpg: OSError when refused
logger = logging.getLogger(__name__)
Batch = Sequence[Row[int, str, str]]  # id, name, email


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    email: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str | None]  # never exported


class State(TypedDict):
    sessions: async_sessionmaker[AsyncSession]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    engine = create_async_engine(DATABASE_URL)
    try:
        async with engine.begin() as connection:  # use migrations in production
            await connection.run_sync(Base.metadata.create_all)
        yield {"sessions": async_sessionmaker(engine)}
    finally:
        await engine.dispose()


async def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.state.sessions


Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
app = FastAPI(title="CSV from a database", lifespan=lifespan)


async def read_batch(sessions: async_sessionmaker[AsyncSession], after: int) -> Batch:
    query = (
        select(User.id, User.name, User.email)
        .where(User.id > after)  # (1)!
        .order_by(User.id)
        .limit(BATCH_SIZE)
    )
    await anyio.lowlevel.checkpoint()  # (2)!
    with anyio.CancelScope(shield=True):  # (3)!
        async with sessions() as session:  # (4)!
            return (await session.execute(query)).all()


async def batches(
    sessions: async_sessionmaker[AsyncSession], batch: Batch
) -> AsyncIterator[Batch]:
    while batch:
        yield batch
        if len(batch) < BATCH_SIZE:
            return  # (5)!
        try:
            batch = await read_batch(sessions, after=batch[-1].id)
        except DATABASE_ERRORS:
            logger.exception("export failed after id %d", batch[-1].id)
            raise  # (6)!


@app.get("/users.csv")
async def export_users(sessions: Sessions) -> StreamingResponse:
    try:
        first = await read_batch(sessions, after=0)  # (7)!
    except DATABASE_ERRORS:
        logger.exception("export failed before the first byte")
        detail = "Database unavailable"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail) from None
    return StreamingResponse(
        csv_chunks(batches(sessions, first)),  # (8)!
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="users.csv"'},
    )
